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
import sys
import time

from aioquic import tls
from aioquic.asyncio import connect
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from h3client import Client, config  # noqa: E402  (the shared client, tests/py/h3client.py)


def report(c, requests):
    """What the matrix checks about the connection: Retry, resumption, 0-RTT, cipher, key phase."""
    q = c._quic
    crypto = q._cryptos.get(tls.Epoch.ONE_RTT)
    ks = q.tls.key_schedule
    return dict(
        retry=q._retry_count > 0,
        resumed=bool(q.tls.session_resumed),
        early_data_accepted=bool(q.tls.early_data_accepted),
        cipher=CipherSuite(ks.cipher_suite).name if ks else None,
        key_phase=dict(send=crypto.send.key_phase, recv=crypto.recv.key_phase) if crypto else None,
        requests=requests,
    )


async def download(c, authority, path, out_dir):
    """GET `path`, saving the body under out_dir; its size, SHA-256, status and times."""
    f = open(os.path.join(out_dir, os.path.basename(path) or "index.html"), "wb") if out_dir else None
    r = dict(bytes=0, status=None, error=None, first=None, end=None)
    sha = hashlib.sha256()
    try:
        async for ev in c.request(authority, path, "aioquic-h3live-interop").events():
            if ev[0] == "headers":
                r["status"] = ev[1]
            elif ev[0] == "data":
                if r["first"] is None:
                    r["first"] = time.time()
                sha.update(ev[1])
                r["bytes"] += len(ev[1])
                if f:
                    f.write(ev[1])
            elif ev[0] == "end":
                r["end"] = time.time()
            else:
                r["error"] = f"stream reset, code {ev[1]}"
    finally:
        if f:
            f.close()
    r["sha256"] = sha.hexdigest()
    return path, r


async def one_connection(args, paths, ticket=None, tickets=None, early=False):
    extra = dict(max_data=64 << 20, max_stream_data=32 << 20)
    if args.chacha20:
        extra["cipher_suites"] = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if ticket is not None:
        extra["session_ticket"] = ticket
    if args.qlog_dir:
        extra["quic_logger"] = QuicFileLogger(args.qlog_dir)
    if os.environ.get("SSLKEYLOGFILE"):
        extra["secrets_log_file"] = open(os.environ["SSLKEYLOGFILE"], "a")
    cfg = config(ca=args.ca, server_name=args.server_name, alpn=args.alpn, **extra)
    handler = (lambda t: tickets.append(t)) if tickets is not None else None
    async with connect(args.host, args.port, configuration=cfg, create_protocol=Client,
                       session_ticket_handler=handler, wait_connected=not early) as c:
        if args.key_update:
            await c.handshake_done.wait()
            # Deferred by aioquic until the handshake is confirmed (HANDSHAKE_DONE).
            c._quic.request_key_update()
            c.transmit()
        authority = f"{args.server_name}:{args.port}"
        done = await asyncio.wait_for(asyncio.gather(*(download(c, authority, p, args.out) for p in paths)),
                                      args.timeout)
        if early:
            await asyncio.wait_for(c.handshake_done.wait(), args.timeout)
        if tickets is not None and not tickets:
            # The server sends its tickets right after the handshake; give them a moment.
            for _ in range(50):
                if tickets:
                    break
                await asyncio.sleep(0.02)
        rep = report(c, len(paths))
        c.close()
    files = dict(done)
    return all(f["end"] is not None and f["error"] is None for f in files.values()), rep, files


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
