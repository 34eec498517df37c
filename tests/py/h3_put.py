#!/usr/bin/env python3
"""Independent HTTP/3 uploader (aioquic) for h3live's tests.

PUTs one URL over HTTP/3 with a body sent in pieces (piece i is `--size`
bytes of the value i % 256, one every `--interval` ms), the way an encoder
pushes a live segment, and prints one JSON line per event with the wall clock:
  {"event": "piece", "t": ..., "i": 0, "n": 3000}
  {"event": "response", "t": ..., "status": 201, "bytes": N, "sha256": "..."}
or {"event": "reset", ...} / {"event": "error", ...}.
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
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


def emit(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.status = asyncio.get_event_loop().create_future()

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            emit(event="reset", code=event.error_code)
            if not self.status.done():
                self.status.set_result(None)
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived) and not self.status.done():
                h = {k.decode(): v.decode() for k, v in ev.headers}
                self.status.set_result(int(h.get(":status", "0")))

    async def put(self, authority, path, headers, pieces, size, interval):
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(
            stream_id=sid,
            headers=[
                (b":method", b"PUT"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"aioquic-h3live-test"),
            ]
            + headers,
            end_stream=False,
        )
        self.transmit()
        digest = hashlib.sha256()
        total = 0
        for i in range(pieces):
            if i:
                await asyncio.sleep(interval / 1000)
            data = bytes([i % 256]) * size
            digest.update(data)
            total += len(data)
            self.h3.send_data(stream_id=sid, data=data, end_stream=False)
            self.transmit()
            emit(event="piece", i=i, n=len(data))
        self.h3.send_data(stream_id=sid, data=b"", end_stream=True)
        self.transmit()
        status = await self.status
        emit(event="response", status=status, bytes=total, sha256=digest.hexdigest())
        return status


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost", help="TLS server name (SNI, certificate check)")
    ap.add_argument("--pieces", type=int, default=10)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=150, help="ms between pieces")
    ap.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    u = urlparse(args.url)
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.server_name)
    cfg.load_verify_locations(args.ca)
    cfg.verify_mode = ssl.CERT_REQUIRED
    headers = []
    for h in args.header:
        k, v = h.split(":", 1)
        headers.append((k.strip().lower().encode(), v.strip().encode()))
    async with connect(u.hostname, u.port or 443, configuration=cfg, create_protocol=Client) as client:
        authority = f"{args.server_name}:{u.port or 443}"
        status = await asyncio.wait_for(
            client.put(authority, u.path, headers, args.pieces, args.size, args.interval), args.timeout
        )
    sys.exit(0 if status else 3)


if __name__ == "__main__":
    asyncio.run(main())
