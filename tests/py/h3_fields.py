#!/usr/bin/env python3
"""Send HTTP/3 requests with exact field sections (malformed ones included:
aioquic encodes what it is given) and report how each was answered.

  h3_fields.py https://HOST:PORT --ca cert.pem SECTIONS_JSON

SECTIONS_JSON is a list of field sections, each a list of [name, value] in
the order they are sent ("{authority}" is filled in). Each goes on its own
request stream of one connection, one after the other; one JSON line each:
  {"i": 0, "status": 200}   or   {"i": 1, "reset": 270}   or   {"i": 2, "timeout": true}
"""
import argparse
import asyncio
import json
import ssl
from urllib.parse import urlparse

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}

    def _answer(self, sid, result):
        fut = self.waiting.pop(sid, None)
        if fut and not fut.done():
            fut.set_result(result)

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            self._answer(event.stream_id, {"reset": event.error_code})
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                h = dict(ev.headers)
                self._answer(ev.stream_id, {"status": int(h.get(b":status", b"0"))})

    async def send(self, fields):
        sid = self._quic.get_next_available_stream_id()
        fut = asyncio.get_event_loop().create_future()
        self.waiting[sid] = fut
        self.h3.send_headers(stream_id=sid, headers=fields, end_stream=True)
        self.transmit()
        try:
            return await asyncio.wait_for(fut, 5)
        except asyncio.TimeoutError:
            return {"timeout": True}


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("sections")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost")
    args = ap.parse_args()
    u = urlparse(args.url)
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.server_name)
    cfg.load_verify_locations(args.ca)
    cfg.verify_mode = ssl.CERT_REQUIRED
    authority = f"{args.server_name}:{u.port}"
    async with connect(u.hostname, u.port, configuration=cfg, create_protocol=Client) as client:
        for i, section in enumerate(json.loads(args.sections)):
            fields = [(n.encode(), v.replace("{authority}", authority).encode()) for n, v in section]
            print(json.dumps({"i": i, **await client.send(fields)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
