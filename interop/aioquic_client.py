#!/usr/bin/env python3
"""aioquic as an independent interop client for h3live's interop matrix.

Downloads PATHS from HOST:PORT over hq-interop (HTTP/0.9) or h3, all requests
in parallel on one connection, saves each body under --out and prints one JSON
summary line on stdout:
  {"ok": true, "connections": [{"retry": false, "resumed": false,
    "early_data_accepted": false, "cipher": "AES_128_GCM_SHA256",
    "key_phase": {"send": 0, "recv": 0}, "requests": 3}], "files": {...}}

--resumption / --zero-rtt: a first connection fetches the first path and keeps
the server's session ticket; a second connection resumes with it and fetches
the rest (sent as 0-RTT data with --zero-rtt).  --key-update: the client
updates its keys once the handshake is confirmed, before the downloads.
--chacha20: offer only TLS_CHACHA20_POLY1305_SHA256.
"""
import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
import time

from aioquic import tls
from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h0.connection import H0_ALPN, H0Connection
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, StreamReset
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = None
        self.streams = {}  # stream id -> dict(path, hash, bytes, done future, status)
        self.authority = ""
        # aioquic's wait_connected() hangs when the handshake completed before
        # it is called (it only records completion for a waiting caller).
        self.handshake_done = asyncio.Event()

    def use(self, alpn):
        self.http = H0Connection(self._quic) if alpn == "hq" else H3Connection(self._quic)

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.handshake_done.set()
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            s = self.streams[event.stream_id]
            s["error"] = f"stream reset, code {event.error_code}"
            if not s["done"].done():
                s["done"].set_result(False)
            return
        if self.http is None:
            return
        for ev in self.http.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived):
                h = {k.decode(): v.decode() for k, v in ev.headers}
                s["status"] = int(h.get(":status", "200"))  # HTTP/0.9 has no status
                ended = ev.stream_ended
            elif isinstance(ev, DataReceived):
                if ev.data:
                    if s["first"] is None:
                        s["first"] = time.time()
                    s["hash"].update(ev.data)
                    s["bytes"] += len(ev.data)
                    if s["file"]:
                        s["file"].write(ev.data)
                ended = ev.stream_ended
            else:
                ended = False
            if ended and not s["done"].done():
                s["end"] = time.time()
                s["done"].set_result(True)

    def request(self, path, out_dir):
        sid = self._quic.get_next_available_stream_id()
        f = None
        if out_dir:
            f = open(os.path.join(out_dir, os.path.basename(path) or "index.html"), "wb")
        self.streams[sid] = dict(path=path, hash=hashlib.sha256(), bytes=0, status=None,
                                 first=None, end=None, file=f, error=None,
                                 done=asyncio.get_event_loop().create_future())
        self.http.send_headers(
            stream_id=sid,
            headers=[(b":method", b"GET"), (b":scheme", b"https"),
                     (b":authority", self.authority.encode()), (b":path", path.encode()),
                     (b"user-agent", b"aioquic-h3live-interop")],
            end_stream=True,
        )
        self.transmit()
        return self.streams[sid]["done"]

    def report(self):
        q = self._quic
        crypto = q._cryptos.get(tls.Epoch.ONE_RTT)
        ks = q.tls.key_schedule
        return dict(
            retry=q._retry_count > 0,
            resumed=bool(q.tls.session_resumed),
            early_data_accepted=bool(q.tls.early_data_accepted),
            cipher=CipherSuite(ks.cipher_suite).name if ks else None,
            key_phase=dict(send=crypto.send.key_phase, recv=crypto.recv.key_phase) if crypto else None,
            requests=len(self.streams),
        )


async def one_connection(args, paths, ticket=None, tickets=None, early=False):
    cfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=H0_ALPN if args.alpn == "hq" else H3_ALPN,
        server_name=args.server_name,
        max_data=64 << 20,
        max_stream_data=32 << 20,
    )
    cfg.load_verify_locations(args.ca)
    cfg.verify_mode = ssl.CERT_REQUIRED
    if args.chacha20:
        cfg.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if ticket is not None:
        cfg.session_ticket = ticket
    if args.qlog_dir:
        cfg.quic_logger = QuicFileLogger(args.qlog_dir)
    if os.environ.get("SSLKEYLOGFILE"):
        cfg.secrets_log_file = open(os.environ["SSLKEYLOGFILE"], "a")
    handler = (lambda t: tickets.append(t)) if tickets is not None else None
    async with connect(args.host, args.port, configuration=cfg, create_protocol=Client,
                       session_ticket_handler=handler, wait_connected=not early) as c:
        c.use(args.alpn)
        c.authority = f"{args.server_name}:{args.port}"
        if args.key_update:
            await c.handshake_done.wait()
            # Deferred by aioquic until the handshake is confirmed (HANDSHAKE_DONE).
            c._quic.request_key_update()
            c.transmit()
        futs = [c.request(p, args.out) for p in paths]
        results = await asyncio.wait_for(asyncio.gather(*futs), args.timeout)
        if early:
            await asyncio.wait_for(c.handshake_done.wait(), args.timeout)
        if tickets is not None and not tickets:
            # The server sends its tickets right after the handshake; give them a moment.
            for _ in range(50):
                if tickets:
                    break
                await asyncio.sleep(0.02)
        rep = c.report()
        files = {}
        for s in c.streams.values():
            if s["file"]:
                s["file"].close()
            files[s["path"]] = dict(bytes=s["bytes"], sha256=s["hash"].hexdigest(), status=s["status"],
                                    error=s["error"], first=s["first"], end=s["end"])
        c.close()
    return all(results), rep, files


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--alpn", choices=["hq", "h3"], default="hq")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost")
    ap.add_argument("--out", help="save bodies into this directory")
    ap.add_argument("--resumption", action="store_true")
    ap.add_argument("--zero-rtt", action="store_true")
    ap.add_argument("--chacha20", action="store_true")
    ap.add_argument("--key-update", action="store_true")
    ap.add_argument("--qlog-dir")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.qlog_dir:
        os.makedirs(args.qlog_dir, exist_ok=True)
    conns, files, ok = [], {}, True
    try:
        if args.resumption or args.zero_rtt:
            tickets = []
            ok1, rep, f = await one_connection(args, args.paths[:1], tickets=tickets)
            conns.append(rep)
            files.update(f)
            if not tickets:
                raise RuntimeError("no session ticket received on the first connection")
            ok2, rep, f = await one_connection(args, args.paths[1:] or args.paths[:1], ticket=tickets[-1],
                                               early=args.zero_rtt)
            conns.append(rep)
            files.update(f)
            ok = ok1 and ok2
        else:
            ok, rep, f = await one_connection(args, args.paths)
            conns.append(rep)
            files.update(f)
    except Exception as e:  # reported, not raised: the matrix wants a reason
        print(json.dumps(dict(ok=False, error=f"{type(e).__name__}: {e}", connections=conns, files=files)))
        sys.exit(1)
    print(json.dumps(dict(ok=ok, connections=conns, files=files)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    asyncio.run(main())
