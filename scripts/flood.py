#!/usr/bin/env python3
"""Connection floods against a running origin (slowloris, idle h2/QUIC, stalled static
reads, PUTs, lifetime), with probes of what a normal client gets meanwhile.

  .venv/bin/python scripts/flood.py --host 127.0.0.1 --http 21400 --https 21401 --h3 21402 --scale 0.25

--sources 127.0.0.10-26 spreads the slowloris, idle-h2 and static floods over those
addresses (the per-address limit then does not stop them). During slowloris and
idle-h2, a viewer's GET /healthz (h1 on --http for slowloris, h2 on --https for
idle-h2) and an encoder's PUT on --http are sent from --probe-ip every half
second for the whole flood; each reports the number of probes, the slowest, and
how many took longer than 2 s or failed. --log FILE (the origin's log) reports
how many lines each flood added to it.

- idle-h2:   N TLS connections that speak the h2 preface and answer nothing but
             send a PING every 5 s.
- idle-quic: N QUIC (aioquic, ALPN h3) connections that handshake and idle;
             probe: a new QUIC handshake (aioquic cannot choose its source
             address: the probe shares the flood's).
- slowloris: N h1 connections that send a request head one byte every 2 s.
- static:    --static-conns h2 connections (12) with --static-streams stalled GETs
             each (256) of --static-path; with --pid, the origin's RSS before,
             at its peak, and 15 s after the connections closed (the origin hands
             freed memory back to the kernel every 10 s).
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
import itertools
import os
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events

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


def parse_sources(spec):
    """127.0.0.10-26 -> ["127.0.0.10", ..., "127.0.0.26"]; none -> [None] (any address)."""
    if not spec:
        return [None]
    base, _, last = spec.rpartition(".")
    first, _, end = last.partition("-")
    return [f"{base}.{i}" for i in range(int(first), int(end or first) + 1)]


def local(ip):
    return {"local_addr": (ip, 0)} if ip else {}


async def get_healthz(host, port, ip=PROBE_IP):
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, **local(ip)), 30)
    w.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    w.close()
    return time.monotonic() - t0, head.split(b" ")[1].decode()


async def put_probe(host, port, n, ip=PROBE_IP):
    """An encoder's PUT of a 5-byte segment on a fresh connection."""
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, **local(ip)), 30)
    w.write(f"PUT /live/flood-probe/seg-{n}.m4s HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
            f"Connection: close\r\n\r\nhello".encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    w.close()
    return time.monotonic() - t0, head.split(b" ")[1].decode()


async def h2_get(host, port, path, ip=PROBE_IP):
    """GET over a fresh h2 TLS connection (the h2 library frames it)."""
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls_ctx("h2"), **local(ip)), 30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", host), (":path", path)],
                      end_stream=True)
    w.write(conn.data_to_send())
    status = None
    while status is None:
        data = await asyncio.wait_for(r.read(65536), 30)
        if not data:
            raise ConnectionError("closed")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[b":status"].decode()
        w.write(conn.data_to_send())
    w.close()
    return time.monotonic() - t0, status


async def probe_process(args, kind):
    """The probes of a flood, in a process of their own (this one is busy with
    the flood's connections): `kind` h1 (GET /healthz on --http) or h2 (on
    --https), plus the encoder's PUT on --http, until it is told to stop."""
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--only", "probe", "--probe-kind", kind, "--host", args.host,
        "--http", str(args.http), "--https", str(args.https), "--h3", str(args.h3), "--probe-ip", args.probe_ip,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def probe_report(proc):
    out, _ = await proc.communicate(b"stop\n")
    return out.decode().strip()


async def probe(args):
    """--only probe: probe until a line arrives on stdin, then report."""
    get = {
        "h1": ("GET /healthz", lambda i: get_healthz(args.host, args.http, args.probe_ip)),
        "h2": ("h2 GET /healthz", lambda i: h2_get(args.host, args.https, "/healthz", args.probe_ip)),
    }[args.probe_kind]
    stop = asyncio.Event()
    loop = asyncio.get_event_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    return await prober([get, ("PUT", lambda i: put_probe(args.host, args.http, i, args.probe_ip))], stop)


async def prober(probes, stop):
    """Run each (name, probe) every half second until `stop`; report per name."""
    out = {name: [] for name, _ in probes}
    n = 0
    while not stop.is_set():
        for name, probe in probes:
            n += 1
            try:
                t, code = await asyncio.wait_for(probe(n), 30)
                out[name].append((t, code))
            except Exception as e:  # noqa: BLE001
                out[name].append((float("inf"), type(e).__name__))
        await asyncio.sleep(0.5)
    lines = []
    for name, res in out.items():
        slow = sum(1 for t, c in res if t > 2 or c not in ("200", "201", "204"))
        worst = max((t for t, _ in res), default=0) * 1e3
        codes = sorted({c for _, c in res})
        lines.append(f"{name}: {len(res)} probes, slowest {worst:.0f} ms, over 2 s or failed: {slow}, answers {codes}")
    return "; ".join(lines)


async def idle_h2(args, n):
    conns, stop = [], asyncio.Event()
    sources = itertools.cycle(parse_sources(args.sources))
    probes = await probe_process(args, "h2")

    async def one(ip):
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.https, ssl=tls_ctx("h2"), **local(ip)), 60)
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

    ok = sum(await asyncio.gather(*[one(next(sources)) for _ in range(n)]))
    await asyncio.sleep(args.hold)
    closed = sum(1 for w in conns if w.is_closing() or w.transport.is_closing())
    report = await probe_report(probes)
    stop.set()
    for w in conns:
        w.close()
    return (f"idle-h2: {ok}/{n} connected from {len(parse_sources(args.sources))} address(es); "
            f"closed (by our side's view) after {args.hold:.0f} s: {closed}; probes meanwhile: {report}")


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
    sources = itertools.cycle(parse_sources(args.sources))
    probes = await probe_process(args, "h1")

    async def one(ip):
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(args.host, args.http, **local(ip)), 60)
            writers.append(w)
        except Exception:
            return

    await asyncio.gather(*[one(next(sources)) for _ in range(n)])
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < args.hold:
        for w in writers:
            if not w.is_closing():
                w.write(head[i % len(head) : i % len(head) + 1])
        i += 1
        await asyncio.sleep(2)
    open_ = sum(1 for w in writers if not w.is_closing())
    report = await probe_report(probes)
    for w in writers:
        w.close()
    return (
        f"slowloris: {len(writers)}/{n} connected from {len(parse_sources(args.sources))} address(es); "
        f"still open after {args.hold:.0f} s: {open_} (by our side's view); probes meanwhile: {report}"
    )


async def static(args, conns, streams):
    """Stalled h2 readers of one static file: they never acknowledge data."""
    sources = itertools.cycle(parse_sources(args.sources))
    before = rss_kib(args.pid)
    peak = before or 0
    held = []

    async def one(ip):
        r, w = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.https, ssl=tls_ctx("h2"), **local(ip)), 60)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for k in range(streams):
            conn.send_headers(1 + 2 * k, [(":method", "GET"), (":scheme", "https"), (":authority", args.host),
                                          (":path", args.static_path)], end_stream=True)
            w.write(conn.data_to_send())
        held.append((r, w, conn))

    async def drain(r, w, conn):
        # Read what arrives (so the kernel buffers do not hide the origin's),
        # never acknowledge it: the flow-control windows stay shut.
        try:
            while data := await r.read(1 << 16):
                conn.receive_data(data)
                w.write(conn.data_to_send())
        except Exception:  # noqa: BLE001
            pass

    await asyncio.gather(*[one(next(sources)) for _ in range(conns)])
    readers = [asyncio.ensure_future(drain(*h)) for h in held]
    start = time.monotonic()
    while time.monotonic() - start < args.hold:
        peak = max(peak, rss_kib(args.pid) or 0)
        await asyncio.sleep(0.5)
    for _, w, _ in held:
        w.close()
    for t in readers:
        t.cancel()
    await asyncio.sleep(15)
    after = rss_kib(args.pid)
    return (f"static: {conns} h2 connections x {streams} stalled GETs of {args.static_path}; "
            f"origin RSS {before} KiB before, peak {peak} KiB, {after} KiB 15 s after they closed")


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
    p.add_argument("--pid", type=int, help="the origin's pid, for its RSS (lifetime, static)")
    p.add_argument("--sources", help="flood source addresses, e.g. 127.0.0.10-26 (default: any)")
    p.add_argument("--probe-ip", default=PROBE_IP, help="source address of the probes")
    p.add_argument("--static-path", default="/dash.all.min.js.map", help="static file of the static flood")
    p.add_argument("--static-conns", type=int, default=12)
    p.add_argument("--static-streams", type=int, default=256)
    p.add_argument("--log", help="the origin's log file: report the lines each flood added")
    p.add_argument("--probe-kind", default="h1", help=argparse.SUPPRESS)
    args = p.parse_args()
    s = args.scale
    runs = {
        "idle-h2": lambda: idle_h2(args, int(4096 * s)),
        "idle-quic": lambda: idle_quic(args, int(4096 * s)),
        "slowloris": lambda: slowloris(args, int(4200 * s)),
        "static": lambda: static(args, args.static_conns, args.static_streams),
        "probe": lambda: probe(args),
        "puts": lambda: puts(args, int(60000 * s)),
        "lifetime": lambda: lifetime(args, int(100000 * s)),
    }
    for name in args.only:
        lines = log_lines(args.log)
        print(await runs[name](), flush=True)
        if args.log:
            print(f"  {name}: {log_lines(args.log) - lines} lines added to {args.log}", flush=True)
        await asyncio.sleep(2)


def log_lines(path):
    if not path or not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    asyncio.run(main())
