#!/usr/bin/env python3
"""Independent HTTP/3 client (aioquic) for h3live's tests.

GETs one URL over HTTP/3 and prints one JSON line per event, with the wall
clock, so the caller can check that the body arrived progressively:
  {"event": "sent", "t": ...}            (request on the wire)
  {"event": "headers", "t": ..., "status": 200, "headers": {...}}
  {"event": "data", "t": ..., "n": 1234}
  {"event": "end", "t": ..., "bytes": N, "sha256": "..."}
or {"event": "reset", "t": ..., "code": C} / {"event": "error", ...}.

With --put it PUTs instead, the way an encoder pushes a live segment: a body of
--pieces pieces (piece i is --size bytes of the value i % 256), one every
--interval ms, each printed as {"event": "piece", "t": ..., "i": 0, "n": 3000},
then the response's events and
  {"event": "response", "t": ..., "status": 201, "bytes": N, "sha256": "..."}
(N and the hash of what was sent).
"""
import argparse
import asyncio
import hashlib
import json
import ssl
import sys
import time
from urllib.parse import urlparse

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


def emit(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.hash = hashlib.sha256()
        self.total = 0
        self.authority = ""
        self.status = 0

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            emit(event="reset", code=event.error_code, bytes=self.total)
            if not self.done.done():
                self.done.set_result(False)
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                h = {k.decode(): v.decode() for k, v in ev.headers}
                self.status = int(h.get(":status", "0"))
                emit(event="headers", status=self.status, headers=h)
                if ev.stream_ended:
                    emit(event="end", bytes=0, sha256=self.hash.hexdigest())
                    self.done.set_result(True)
            elif isinstance(ev, DataReceived):
                if ev.data:
                    self.hash.update(ev.data)
                    self.total += len(ev.data)
                    emit(event="data", n=len(ev.data))
                if ev.stream_ended and not self.done.done():
                    emit(event="end", bytes=self.total, sha256=self.hash.hexdigest())
                    self.done.set_result(True)

    def request(self, method, url, headers=(), end_stream=True):
        u = urlparse(url)
        sid = self._quic.get_next_available_stream_id()
        path = u.path + ("?" + u.query if u.query else "")
        self.h3.send_headers(
            stream_id=sid,
            headers=[
                (b":method", method),
                (b":scheme", b"https"),
                (b":authority", self.authority.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"aioquic-h3live-test"),
            ]
            + list(headers),
            end_stream=end_stream,
        )
        self.transmit()
        emit(event="sent")
        return sid

    async def get(self, url):
        self.request(b"GET", url)
        return await self.done

    async def put(self, url, headers, pieces, size, interval):
        sid = self.request(b"PUT", url, headers, end_stream=False)
        sent = hashlib.sha256()
        total = 0
        for i in range(pieces):
            if i:
                await asyncio.sleep(interval / 1000)
            data = bytes([i % 256]) * size
            sent.update(data)
            total += len(data)
            self.h3.send_data(stream_id=sid, data=data, end_stream=False)
            self.transmit()
            emit(event="piece", i=i, n=len(data))
        self.h3.send_data(stream_id=sid, data=b"", end_stream=True)
        self.transmit()
        ok = await self.done
        emit(event="response", status=self.status, bytes=total, sha256=sent.hexdigest())
        return ok


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost", help="TLS server name (SNI, certificate check)")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--put", action="store_true", help="PUT a body in pieces instead of GET")
    ap.add_argument("--pieces", type=int, default=10)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=150, help="ms between pieces")
    ap.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable (--put)")
    args = ap.parse_args()
    u = urlparse(args.url)
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.server_name)
    cfg.load_verify_locations(args.ca)
    cfg.verify_mode = ssl.CERT_REQUIRED
    async with connect(u.hostname, u.port or 443, configuration=cfg, create_protocol=Client) as client:
        client.authority = f"{args.server_name}:{u.port or 443}"
        if args.put:
            headers = []
            for h in args.header:
                name, value = h.split(":", 1)
                headers.append((name.strip().lower().encode(), value.strip().encode()))
            ok = await asyncio.wait_for(
                client.put(args.url, headers, args.pieces, args.size, args.interval), args.timeout
            )
        else:
            ok = await asyncio.wait_for(client.get(args.url), args.timeout)
    sys.exit(0 if ok else 3)


if __name__ == "__main__":
    asyncio.run(main())
