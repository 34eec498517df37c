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
import sys
import time
from urllib.parse import urlparse

from aioquic.asyncio import connect

from h3client import Client, config


def emit(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)


async def get(client, authority, path):
    """Emit the response's events; True if it ended cleanly."""
    s = client.request(authority, path, "aioquic-h3live-test")
    emit(event="sent")
    sha, total = hashlib.sha256(), 0
    async for ev in s.events():
        if ev[0] == "headers":
            emit(event="headers", status=ev[1], headers=ev[2])
        elif ev[0] == "data":
            sha.update(ev[1])
            total += len(ev[1])
            emit(event="data", n=len(ev[1]))
        elif ev[0] == "end":
            emit(event="end", bytes=total, sha256=sha.hexdigest())
            return True
        else:
            emit(event="reset", code=ev[1], bytes=total)
    return False


async def put(client, authority, path, headers, pieces, size, interval):
    """PUT a body of `pieces` pieces, one every `interval` ms, emitting each,
    then the response's events and what was sent; True if the response ended
    cleanly."""
    s = client.request(authority, path, "aioquic-h3live-test", method="PUT", headers=headers, end_stream=False)
    emit(event="sent")
    sent, total = hashlib.sha256(), 0
    for i in range(pieces):
        if i:
            await asyncio.sleep(interval / 1000)
        data = bytes([i % 256]) * size
        sent.update(data)
        total += len(data)
        client.send_data(s, data)
        emit(event="piece", i=i, n=len(data))
    client.send_data(s, b"", end_stream=True)
    status, ok = 0, False
    async for ev in s.events():
        if ev[0] == "headers":
            status = ev[1]
            emit(event="headers", status=ev[1], headers=ev[2])
        elif ev[0] == "data":
            emit(event="data", n=len(ev[1]))
        elif ev[0] == "end":
            emit(event="end", bytes=0)
            ok = True
        else:
            emit(event="reset", code=ev[1], bytes=0)
    emit(event="response", status=status, bytes=total, sha256=sent.hexdigest())
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
    port = u.port or 443
    path = u.path + ("?" + u.query if u.query else "")
    authority = f"{args.server_name}:{port}"
    cfg = config(ca=args.ca, server_name=args.server_name)
    async with connect(u.hostname, port, configuration=cfg, create_protocol=Client) as client:
        if args.put:
            headers = []
            for h in args.header:
                name, value = h.split(":", 1)
                headers.append((name.strip().lower().encode(), value.strip().encode()))
            job = put(client, authority, path, headers, args.pieces, args.size, args.interval)
        else:
            job = get(client, authority, path)
        ok = await asyncio.wait_for(job, args.timeout)
    sys.exit(0 if ok else 3)


if __name__ == "__main__":
    asyncio.run(main())
