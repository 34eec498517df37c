#!/usr/bin/env python3
"""Independent live viewer (aioquic) for h3live's tests: prft -> last byte.

Over one HTTP/3 connection, reads the media segments of each track in turn
(GET of segment N+1 as soon as N ended; the origin holds a request for a
segment whose upload has not started), parses the CMAF boxes as they arrive
and, per fragment (prft + moof + mdat), takes the time from the prft wall
clock to the arrival of the mdat's last byte: the measure `h3live load`
reports, taken by another QUIC and HTTP/3 implementation. The first segment
of each track is not measured (it may be joined late). Prints one JSON line:
  {"fragments": N, "p50_ms": .., "p95_ms": .., "p99_ms": .., "max_ms": ..,
   "bytes": N, "segments": N, "errors": [...]}
"""
import argparse
import asyncio
import json
import struct
import sys
import time
from urllib.parse import urlparse

from aioquic.asyncio import connect

from h3client import Client, config

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_UNIX = 2208988800


class Fragments:
    """Incremental ISO-BMFF box reader: calls `done(prft_unix_seconds)` when
    the last byte of an mdat that followed a prft has arrived."""

    def __init__(self, done):
        self.buf = b""
        self.skip = 0  # bytes of the current mdat still to come
        self.prft = None
        self.done = done

    def feed(self, data):
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                self.buf = self.buf[n:]
                self.skip -= n
                if self.skip:
                    return
                if self.prft is not None:
                    self.done(self.prft)
                    self.prft = None
            if len(self.buf) < 8:
                return
            size, kind = struct.unpack(">I4s", self.buf[:8])
            if kind == b"mdat":
                self.buf = self.buf[8:]
                self.skip = size - 8
                if self.skip == 0 and self.prft is not None:
                    self.done(self.prft)
                    self.prft = None
                continue
            if len(self.buf) < size:
                return
            if kind == b"prft":
                # version(1) flags(3) reference_track_ID(4) ntp_timestamp(8)
                secs, frac = struct.unpack(">II", self.buf[16:24])
                self.prft = secs - NTP_UNIX + frac / 2**32
            self.buf = self.buf[size:]


async def track(client, authority, template, first, until, lat, totals, errors):
    n = first
    while time.time() < until:
        measure = n > first
        frag = Fragments(lambda prft: lat.append(time.time() - prft) if measure else None)

        def on_data(d):
            totals["bytes"] += len(d)
            frag.feed(d)

        status = await client.get(authority, template % n, on_data, "aioquic-h3live-probe")
        if status != 200:
            errors.append(f"{template % n}: {status}")
            return
        totals["segments"] += 1
        n += 1


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else None


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="https://HOST:PORT/live/STREAM/ (the stream's directory)")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--server-name", default="localhost", help="TLS server name (SNI, certificate check)")
    ap.add_argument("--tracks", default="0,1", help="representation ids (chunk-stream<ID>-NNNNN.m4s)")
    ap.add_argument("--first", type=int, default=1, help="first segment number")
    ap.add_argument("--duration", type=float, default=10, help="seconds to read")
    args = ap.parse_args()
    u = urlparse(args.base)
    cfg = config(ca=args.ca, server_name=args.server_name, idle_timeout=30)
    lat, totals, errors = [], {"bytes": 0, "segments": 0}, []
    until = time.time() + args.duration
    async with connect(u.hostname, u.port or 443, configuration=cfg, create_protocol=Client) as client:
        authority = f"{args.server_name}:{u.port or 443}"
        await asyncio.gather(*(
            track(client, authority, u.path.rstrip("/") + f"/chunk-stream{t}-%05d.m4s", args.first, until, lat,
                  totals, errors)
            for t in args.tracks.split(",")))
    lat.sort()
    print(json.dumps({"fragments": len(lat), "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95),
                      "p99_ms": pct(lat, 0.99), "max_ms": lat[-1] * 1000 if lat else None, **totals,
                      "errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    asyncio.run(main())
