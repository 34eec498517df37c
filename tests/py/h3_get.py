#!/usr/bin/env python3
"""Independent HTTP/3 client (aioquic) for h3live's tests.

GETs one URL over HTTP/3 and prints one JSON line per event, with the wall
clock, so the caller can check that the body arrived progressively:
  {"event": "sent", "t": ...}            (request on the wire)
  {"event": "headers", "t": ..., "status": 200, "headers": {...}}
  {"event": "data", "t": ..., "n": 1234}
  {"event": "end", "t": ..., "bytes": N, "sha256": "..."}
or {"event": "reset", "t": ..., "code": C} / {"event": "error", ...}.
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


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost", help="TLS server name (SNI, certificate check)")
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    u = urlparse(args.url)
    port = u.port or 443
    path = u.path + ("?" + u.query if u.query else "")
    cfg = config(ca=args.ca, server_name=args.server_name)
    async with connect(u.hostname, port, configuration=cfg, create_protocol=Client) as client:
        ok = await asyncio.wait_for(get(client, f"{args.server_name}:{port}", path), args.timeout)
    sys.exit(0 if ok else 3)


if __name__ == "__main__":
    asyncio.run(main())
