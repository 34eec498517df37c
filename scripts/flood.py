#!/usr/bin/env python3
"""Connection floods against a running origin (slowloris, idle h2/QUIC, PUTs, lifetime), each
followed by a probe of what a normal client gets meanwhile.

  .venv/bin/python scripts/flood.py --host 127.0.0.1 --http 21400 --https 21401 --h3 21402 --scale 0.25

- idle-h2:   N TLS connections that speak the h2 preface and answer nothing but
             send a PING every 5 s; probe: a fresh h2 TLS handshake + preface.
- idle-quic: N QUIC (aioquic, ALPN h3) connections that handshake and idle;
             probe: a new QUIC handshake.
- slowloris: N h1 connections that send a request head one byte every 2 s;
             probe: GET /healthz latency on the cleartext listener.
- puts:      M zero-byte PUTs to distinct names, one connection at a time;
             reports the time per PUT at the start and at the end, and the
             origin's answers (201 until --max-objects, then 503).
- lifetime:  M sequential GET /healthz over one connection each on h3
             (aioquic), h2 and h1 (curl, URL globbing reuses its connection);
             reports how many connections each needed and, with --pid, the
             origin's RSS before and after: does anything per finished request
             stay with a long-lived connection?
Full scale: N = 4096 (slowloris 4200), M = 60000 (lifetime: 100000).
"""
import argparse
import asyncio
import ssl
import time

import os
import sys

from aioquic.asyncio import connect

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from h3client import Client, config  # noqa: E402  (the shared client, tests/py/h3client.py)

# Probes come from another loopback address than the flood, so the
# per-client-IP limit (which the flood from one address hits) does not refuse
# them; the QUIC probe cannot choose its source address and shares the flood's.
PROBE_IP = "127.0.0.2"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"


def tls_ctx(alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx


async def get_healthz(host, port):
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(PROBE_IP, 0)), 30)
    w.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    w.close()
    return time.monotonic() - t0, head.split(b" ")[1].decode()


async def h2_probe(host, port):
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=tls_ctx("h2"), local_addr=(PROBE_IP, 0)), 30
    )
    w.write(H2_PREFACE)
    await asyncio.wait_for(r.read(9), 30)  # the server's SETTINGS frame header
    w.close()
    return time.monotonic() - t0


async def idle_h2(args, n):
    conns, stop = [], asyncio.Event()

    async def one():
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(args.host, args.https, ssl=tls_ctx("h2")), 60)
        except Exception:
            return False
        w.write(H2_PREFACE)
        conns.append(w)

        async def pinger():
            while not stop.is_set():
                await asyncio.sleep(5)
                try:
                    w.write(H2_PING)
                    await r.read(4096)
                except Exception:
                    return

        asyncio.ensure_future(pinger())
        return True

    ok = sum(await asyncio.gather(*[one() for _ in range(n)]))
    await asyncio.sleep(5)
    try:
        probe = f"{await h2_probe(args.host, args.https) * 1e3:.0f} ms"
    except Exception as e:  # noqa: BLE001
        probe = f"failed ({type(e).__name__})"
    await asyncio.sleep(args.hold)
    closed = sum(1 for w in conns if w.is_closing() or w.transport.is_closing())
    stop.set()
    for w in conns:
        w.close()
    return f"idle-h2: {ok}/{n} connected; new h2 connection during the flood: {probe}; closed by the origin after {args.hold + 5:.0f} s: {closed}"


async def idle_quic(args, n):
    cfg = config()
    stop = asyncio.Event()
    ok = 0

    async def one():
        nonlocal ok
        try:
            async with connect(args.host, args.h3, configuration=cfg, wait_connected=True) as c:
                ok += 1
                await stop.wait()
                c.close()
        except Exception:
            pass

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    await asyncio.sleep(args.hold)

    async def probe():
        t0 = time.monotonic()
        async with connect(args.host, args.h3, configuration=cfg, wait_connected=True):
            return time.monotonic() - t0

    try:
        p = f"{await asyncio.wait_for(probe(), 30) * 1e3:.0f} ms"
    except Exception as e:  # noqa: BLE001
        p = f"failed ({type(e).__name__})"
    connected = ok
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    return f"idle-quic: {connected}/{n} handshakes done; new QUIC handshake during the flood: {p}"


async def slowloris(args, n):
    writers = []

    async def one():
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(args.host, args.http), 60)
            writers.append(w)
        except Exception:
            return

    await asyncio.gather(*[one() for _ in range(n)])
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    lat = []
    for i in range(6):
        for w in writers:
            if not w.is_closing():
                w.write(head[i : i + 1])
        try:
            t, _ = await get_healthz(args.host, args.http)
            lat.append(t * 1e3)
        except Exception:
            lat.append(float("inf"))
        await asyncio.sleep(2)
    await asyncio.sleep(args.hold)
    open_ = sum(1 for w in writers if not w.is_closing())
    for w in writers:
        w.close()
    return (
        f"slowloris: {len(writers)}/{n} connected; GET /healthz meanwhile: "
        f"{min(lat):.0f}-{max(lat):.0f} ms; still open after {args.hold + 12:.0f} s: {open_} (by our side's view)"
    )


async def puts(args, m):
    codes, times = {}, []
    r = w = None
    for i in range(m):
        t0 = time.monotonic()
        if w is None:
            r, w = await asyncio.open_connection(args.host, args.http)
        w.write(f"PUT /live/flood/o-{i}.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        code = head.split(b" ")[1].decode()
        codes[code] = codes.get(code, 0) + 1
        cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
        if cl:
            await r.readexactly(int(cl[0].split(b":")[1]))
        if b"connection: close" in head.lower():
            w.close()
            w = None
        times.append(time.monotonic() - t0)
    k = max(1, m // 20)
    first = sum(times[:k]) / k * 1e3
    last = sum(times[-k:]) / k * 1e3
    return f"puts: {m} zero-byte PUTs: {codes}; mean per PUT first 5 %: {first:.2f} ms, last 5 %: {last:.2f} ms"


def rss_kib(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


async def lifetime(args, m):
    out = []
    cfg = config()
    before = rss_kib(args.pid)
    t0, done, err = time.monotonic(), 0, ""
    try:
        async with connect(args.host, args.h3, configuration=cfg, create_protocol=Client, wait_connected=True) as c:
            for _ in range(m):
                if await asyncio.wait_for(c.get(f"{args.host}:{args.h3}", "/healthz"), 10) != 200:
                    raise RuntimeError("GET /healthz failed")
                done += 1
    except Exception as e:  # noqa: BLE001
        err = f", stopped by {type(e).__name__} {e}"
    rate = done / (time.monotonic() - t0)
    out.append(f"h3: {done}/{m} requests on one connection ({rate:.0f}/s){err}; origin RSS {before} -> {rss_kib(args.pid)} KiB")
    for name, flag, port, scheme in (("h2", "--http2", args.https, "https"), ("h1", "--http1.1", args.http, "http")):
        before = rss_kib(args.pid)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sk", flag, "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n",
            f"{scheme}://{args.host}:{port}/healthz?[1-{m}]", stdout=asyncio.subprocess.PIPE)
        lines = (await proc.communicate())[0].decode().split()
        codes, conns = lines[0::2], lines[1::2]
        ok = sum(1 for c in codes if c == "200")
        rate = len(codes) / (time.monotonic() - t0)
        out.append(f"{name}: {ok}/{m} answered 200 over {1 + sum(int(x) for x in conns[1:])} connection(s) "
                   f"({rate:.0f}/s); origin RSS {before} -> {rss_kib(args.pid)} KiB")
    return "lifetime: " + "; ".join(out)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http", type=int, required=True)
    p.add_argument("--https", type=int, required=True)
    p.add_argument("--h3", type=int, required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--hold", type=float, default=40.0, help="seconds each flood is held")
    p.add_argument("--only", nargs="*", default=["idle-h2", "idle-quic", "slowloris", "puts"],
                   help="floods to run (also: lifetime)")
    p.add_argument("--pid", type=int, help="the origin's pid, for its RSS (lifetime)")
    args = p.parse_args()
    s = args.scale
    runs = {
        "idle-h2": lambda: idle_h2(args, int(4096 * s)),
        "idle-quic": lambda: idle_quic(args, int(4096 * s)),
        "slowloris": lambda: slowloris(args, int(4200 * s)),
        "puts": lambda: puts(args, int(60000 * s)),
        "lifetime": lambda: lifetime(args, int(100000 * s)),
    }
    for name in args.only:
        print(await runs[name](), flush=True)
        await asyncio.sleep(2)


if __name__ == "__main__":
    asyncio.run(main())
