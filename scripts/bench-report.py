#!/usr/bin/env python3
"""Turn a scripts/bench.sh output folder into results.json, table.md and plot.svg.

Usage: scripts/bench-report.py OUT_DIR
Reads OUT_DIR/runs.jsonl (one line per run, written by bench.sh) and, per run,
raw/TAG.json (the load tool's report) and raw/TAG.m0 / raw/TAG.m1 (the
origin's /metrics before and after). A run made with `bench.sh --against`
has each h3live cell twice (variant "new" and "against"); the tables show
the new binary and a last table the ratios new / against per cell.
"""
import json
import math
import os
import platform
import re
import sys
import time

TRANSPORTS = ["h3", "h2", "h1-tls", "h1-clear", "moq"]
COLORS = {"h3": "#d62728", "h2": "#1f77b4", "h1-tls": "#2ca02c", "h1-clear": "#7f7f7f"}


def metric_lines(path, pattern):
    """The matches of `pattern` on the lines of a /metrics dump (none if it is missing)."""
    if not os.path.exists(path):
        return
    pat = re.compile(pattern)
    with open(path) as f:
        for line in f:
            m = pat.match(line.strip())
            if m:
                yield m


def histogram(path, transport):
    """Cumulative buckets {le: count} of h3live_origin_delay_seconds for a transport."""
    out = {}
    for m in metric_lines(path, r'^h3live_origin_delay_seconds_bucket\{transport="([^"]+)",le="([^"]+)"\} (\d+)'):
        if m.group(1) == transport:
            le = math.inf if m.group(2) == "+Inf" else float(m.group(2))
            out[le] = int(m.group(3))
    return out


def quantile(q, buckets):
    """Prometheus histogram_quantile over cumulative buckets (linear inside a bucket)."""
    items = sorted(buckets.items())
    if not items or items[-1][1] == 0:
        return None
    total = items[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0
    for le, c in items:
        if c >= rank:
            if le == math.inf:
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return items[-1][0]


def quic_counters(path):
    """{(name, dir): value} of the origin's h3live_quic_* series in a /metrics dump."""
    pat = r'^h3live_quic_([a-z_]+?)(?:_total)?(?:\{dir="(tx|rx)"\})? (\d+)$'
    return {(m.group(1), m.group(2) or ""): int(m.group(3)) for m in metric_lines(path, pat)}


def syscalls(path):
    """{syscall: count} from a perf stat -x, file with syscalls:sys_enter_* events.
    read/write are counted with --filter 'count != 8' (socket I/O, not eventfd wake-ups)."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                name = parts[2][len("syscalls:sys_enter_"):]
                out[name] = int(parts[0]) if parts[0].isdigit() else 0
    return out


def tcp_sockets(path):
    """Summed kernel counters of the origin's TCP sockets from `ss -tinH` (None if absent)."""
    if not os.path.exists(path):
        return None
    keys = ["segs_out", "segs_in", "data_segs_out", "data_segs_in", "bytes_sent", "bytes_acked", "bytes_received"]
    out = {k: 0 for k in keys}
    out["sockets"] = 0
    with open(path) as f:
        text = f.read()
    out["sockets"] = len(re.findall(r"\bsegs_out:", text))
    for k in keys:
        out[k] = sum(int(v) for v in re.findall(r"\b" + k + r":(\d+)", text))
    return out


def budget(out, r, rep):
    """Packets and syscalls of the origin per delivered MB (runs made with --budget)."""
    tag = r["tag"]
    sc = syscalls(os.path.join(out, "raw", tag + ".perf"))
    if not sc:
        return None
    mb = rep.get("bytes", 0) / 1e6
    frags = rep.get("fragments", 0)
    if mb <= 0:
        return None
    b = {"mb": mb, "fragments": frags}
    b["send_calls"] = sum(sc.get(k, 0) for k in ("sendmsg", "sendmmsg", "sendto", "write", "writev"))
    b["recv_calls"] = sum(sc.get(k, 0) for k in ("recvmsg", "recvmmsg", "recvfrom", "read", "readv"))
    b["epoll_waits"] = sum(sc.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))
    b["futex"] = sc.get("futex", 0)
    b["syscalls"] = sc
    if r["transport"] == "h3":
        q0 = quic_counters(os.path.join(out, "raw", tag + ".m0"))
        q1 = quic_counters(os.path.join(out, "raw", tag + ".m1"))
        d = lambda name, dr="": q1.get((name, dr), 0) - q0.get((name, dr), 0)
        b.update({
            "pkts_out": d("udp_datagrams", "tx"), "bytes_out": d("udp_bytes", "tx"), "send_ops": d("udp_ios", "tx"),
            "pkts_in": d("udp_datagrams", "rx"), "acks_in": d("ack_frames", "rx"),
            "ack_freq_out": d("ack_frequency_frames", "tx"), "stream_frames_out": d("stream_frames", "tx"),
            "lost": d("lost_packets"), "congestion": d("congestion_events"),
        })
        mtu = [q1.get(("path_mtu_bytes", "")), None]
        for m in metric_lines(os.path.join(out, "raw", tag + ".m1"), r'^h3live_quic_path_mtu_bytes\{stat="(min|max)"\} (\d+)'):
            mtu[0 if m.group(1) == "min" else 1] = int(m.group(2))
        b["mtu"] = mtu
        cq = rep.get("quic") or {}
        b["client_acks_out"] = cq.get("tx_acks")
        b["client_ack_freq_in"] = cq.get("rx_ack_frequency")
        wire_mb = b["bytes_out"] / 1e6
    else:
        ss = tcp_sockets(os.path.join(out, "raw", tag + ".ss"))
        if not ss or not ss["bytes_sent"]:
            return b
        wire_mb = ss["bytes_sent"] / 1e6
        b.update({"pkts_out": ss["segs_out"], "bytes_out": ss["bytes_sent"], "pkts_in": ss["segs_in"],
                  "acks_in": ss["segs_in"] - ss["data_segs_in"], "data_pkts_out": ss["data_segs_out"],
                  "sockets": ss["sockets"]})
    b["wire_mb"] = wire_mb
    return b


def load_runs(out):
    runs = []
    with open(os.path.join(out, "runs.jsonl")) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            rep_path = os.path.join(out, "raw", r["tag"] + ".json")
            rep = json.load(open(rep_path)) if os.path.exists(rep_path) else {}
            # perf's task-clock (ns resolution) when bench.sh had perf, else /proc ticks.
            task_ms = r.get("task_clock_ms")
            cpu_s = task_ms / 1000 if task_ms is not None else r["cpu_ticks"] / r["clk_tck"]
            dur = rep.get("duration_s") or 0
            gb = rep.get("bytes", 0) / 1e9
            h0 = histogram(os.path.join(out, "raw", r["tag"] + ".m0"), r["transport"])
            h1 = histogram(os.path.join(out, "raw", r["tag"] + ".m1"), r["transport"])
            delta = {le: h1.get(le, 0) - h0.get(le, 0) for le in h1}
            q = lambda p: (lambda v: None if v is None else v * 1000)(quantile(p, delta))
            n = r["viewers"]
            lat = rep.get("latency", {})
            runs.append({
                **r,
                "variant": r.get("variant", "new"),
                "duration_s": dur,
                "bytes": rep.get("bytes", 0),
                "mbit_per_s": rep.get("mbit_per_s", 0),
                "cpu_s": cpu_s,
                "cpu_pct_of_core": 100 * cpu_s / dur if dur else None,
                "load_cpu_pct_of_core": 100 * r.get("load_ticks", 0) / r["clk_tck"] / dur if dur else None,
                "cpu_s_per_gb": cpu_s / gb if gb > 0 else None,
                "rss_peak_mb": r["rss_peak_kb"] / 1024,
                "kib_per_viewer": (r["rss_peak_kb"] - r["rss0_kb"]) / n if n else None,
                "machine_busy_pct": 100 * r["sys_busy"] / r["sys_total"] if r["sys_total"] else None,
                "origin_delay_samples": delta.get(math.inf, 0),
                "origin_delay_p50_ms": q(0.5),
                "origin_delay_p99_ms": q(0.99),
                "prft_p50_ms": lat.get("p50_ms"),
                "prft_p99_ms": lat.get("p99_ms"),
                "prft_max_ms": lat.get("max_ms"),
                "errors": rep.get("errors"),
                "stalls": rep.get("stalls"),
                "connected": rep.get("connected"),
                "error_kinds": rep.get("error_kinds", {}),
                "budget": budget(out, r, rep) if r["mode"] == "live" else None,
            })
    return runs


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(new, old):
    """new / old, or None when either is missing or old is zero."""
    if new is None or old is None or old == 0:
        return None
    return new / old


def against_table(all_runs):
    """Rows comparing the two origin binaries of a --against run, cell by cell."""
    key = lambda r: (r["server"], r["transport"], r["viewers"], r["mode"])
    old = {key(r): r for r in all_runs if r["variant"] == "against"}
    pairs = [(r, old[key(r)]) for r in all_runs if r["variant"] == "new" and key(r) in old]
    if not pairs:
        return []
    measures = [("origin CPU s/GB", "cpu_s_per_gb", 2), ("prft p50 ms", "prft_p50_ms", 1),
                ("prft p99 ms", "prft_p99_ms", 1), ("origin delay p99 ms", "origin_delay_p99_ms", 2),
                ("origin RSS peak MB", "rss_peak_mb", 1)]
    lines = ["\n### New binary against the other one (`bench.sh --against`), same run, cells interleaved\n",
             "Each entry: new / against (ratio new ÷ against; below 1 means the new binary is better).\n",
             "| transport | viewers | mode | " + " | ".join(m[0] for m in measures) + " | errors new / against |",
             "|---|---:|---|" + "---:|" * len(measures) + "---:|"]
    order = lambda p: (TRANSPORTS.index(p[0]["transport"]), p[0]["mode"], p[0]["viewers"])
    for n, o in sorted(pairs, key=order):
        cells = [f"{fmt(n[k], d)} / {fmt(o[k], d)} ({fmt(ratio(n[k], o[k]), 2)}×)" for _, k, d in measures]
        lines.append(f"| {n['transport']} | {n['viewers']} | {n['mode']} | " + " | ".join(cells)
                     + f" | {fmt(n['errors'])} / {fmt(o['errors'])} |")
    return lines


def per(v, d):
    return None if v is None or not d else v / d


def budget_table(all_runs):
    """The packet and syscall budget of each live cell counted with --budget."""
    rows = [r for r in all_runs if r.get("budget") and r["server"] == "h3live"]
    if not rows:
        return []
    lines = ["\n### Packet and syscall budget of the origin (`bench.sh --budget`)\n",
             "Packets: h3 from quinn's counters (UDP datagrams, all connections), TCP from the kernel's per-socket "
             "counters (`ss -ti`, two seconds before the end); per MB sent on the wire (QUIC packets / TLS records). "
             "Syscalls of the origin process (perf, syscall tracepoints; reads and writes of 8 bytes, eventfd "
             "wake-ups, left out), per MB of body delivered to the viewers; they include the ingest of the "
             "replayed stream (one upload, a few hundred calls per second). ACKs in: h3 ACK frames, TCP segments "
             "without data. Packets per send call: h3 datagrams per `sendmsg` (GSO), TCP segments per write. "
             "moq: syscalls only (the MoQ endpoint's QUIC connections are not in the h3live_quic_* counters).\n",
             "| transport | viewers | build | MB delivered | packets out / MB | bytes per packet out | packets out per fragment | "
             "packets in / MB | ACKs in / MB | send calls / MB | send calls per fragment | packets per send call | "
             "recv calls / MB | packets in per recv call | epoll waits / MB | futex / MB | lost packets | path MTU |",
             "|---|---:|---|---:|" + "---:|" * 13 + "---|"]
    order = lambda r: (TRANSPORTS.index(r["transport"]), r["viewers"], r["variant"])
    for r in sorted(rows, key=order):
        b = r["budget"]
        mtu = b.get("mtu")
        mtu_s = "–" if not mtu or mtu[0] is None else (f"{mtu[0]}" if mtu[0] == mtu[1] else f"{mtu[0]}–{mtu[1]}")
        out_mb = per(b.get("pkts_out"), b.get("wire_mb"))  # packets per MB on the wire
        in_mb = per(b.get("pkts_in"), b.get("wire_mb"))
        send_mb, recv_mb = per(b["send_calls"], b["mb"]), per(b["recv_calls"], b["mb"])
        mb_per_fragment = per(b["mb"], b["fragments"])
        cells = [
            fmt(b["mb"], 0), fmt(out_mb, 0), fmt(per(b.get("bytes_out"), b.get("pkts_out")), 0),
            fmt(out_mb * mb_per_fragment if out_mb and mb_per_fragment else None, 2),
            fmt(in_mb, 0), fmt(per(b.get("acks_in"), b.get("wire_mb")), 0),
            fmt(send_mb, 0), fmt(per(b["send_calls"], b["fragments"]), 2), fmt(per(out_mb, send_mb), 2),
            fmt(recv_mb, 0), fmt(per(in_mb, recv_mb), 2),
            fmt(per(b["epoll_waits"], b["mb"]), 0), fmt(per(b["futex"], b["mb"]), 0),
            fmt(b.get("lost")), mtu_s,
        ]
        lines.append(f"| {r['transport']} | {r['viewers']} | {r['variant']} | " + " | ".join(cells) + " |")
    h3 = [r for r in rows if r["transport"] == "h3" and r["budget"].get("ack_freq_out") is not None]
    if h3:
        lines.append("\nh3 ACK traffic: ACK frames the origin received per datagram it sent; ACK_FREQUENCY frames it "
                     "sent; the load tool's own count of the ACK frames its clients sent and of ACK_FREQUENCY frames "
                     "they received.\n")
        lines.append("| viewers | build | ACK frames in per datagram out | ACK_FREQUENCY out | client ACKs out | "
                     "client ACK_FREQUENCY in | stream frames per datagram | congestion events |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in sorted(h3, key=order):
            b = r["budget"]
            lines.append(f"| {r['viewers']} | {r['variant']} | {fmt(per(b['acks_in'], b['pkts_out']), 3)} | "
                         f"{fmt(b['ack_freq_out'])} | {fmt(b.get('client_acks_out'))} | {fmt(b.get('client_ack_freq_in'))} | "
                         f"{fmt(per(b['stream_frames_out'], b['pkts_out']), 2)} | {fmt(b['congestion'])} |")
    return lines


def table(out, all_runs):
    runs = [r for r in all_runs if r["variant"] == "new"]
    lines = []
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines.append(f"Benchmark {now} on {platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
                 "origin, replay and load tool on the same machine.\n")
    measured = os.path.join(out, "measured.txt")
    if os.path.exists(measured):
        lines.append("Measured process: " + open(measured).read().strip() + ".\n")
    live = [r for r in runs if r["server"] == "h3live" and r["mode"] == "live"]
    lines.append("### Live viewers (h3live, LL-DASH replay, next segment requested early and held)\n")
    lines.append("| transport | viewers | delivered Mbit/s | origin CPU s/GB | origin CPU % of a core | load tool CPU % | machine busy % (all cores) | origin RSS MB | KiB/viewer | origin delay p50 / p99 ms | prft→last byte p50 / p99 / max ms | errors | stalls |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(live, key=lambda r: (TRANSPORTS.index(r["transport"]), r["viewers"])):
        lines.append(f"| {r['transport']} | {r['viewers']} | {fmt(r['mbit_per_s'])} | {fmt(r['cpu_s_per_gb'], 2)} | {fmt(r['cpu_pct_of_core'])} | {fmt(r['load_cpu_pct_of_core'], 0)} | "
                     f"{fmt(r['machine_busy_pct'], 0)} | {fmt(r['rss_peak_mb'])} | {fmt(r['kib_per_viewer'], 0)} | "
                     f"{fmt(r['origin_delay_p50_ms'], 2)} / {fmt(r['origin_delay_p99_ms'], 2)} | "
                     f"{fmt(r['prft_p50_ms'])} / {fmt(r['prft_p99_ms'])} / {fmt(r['prft_max_ms'])} | {fmt(r['errors'])} | {fmt(r['stalls'])} |")
    idle = [r for r in runs if r["mode"] == "idle"]
    if idle:
        lines.append("\n### Idle viewers (connection open, manifest read, nothing streaming)\n")
        lines.append("| transport | idle viewers | connected | origin RSS before → peak MB | KiB per idle viewer |")
        lines.append("|---|---:|---:|---:|---:|")
        for r in sorted(idle, key=lambda r: TRANSPORTS.index(r["transport"])):
            lines.append(f"| {r['transport']} | {r['viewers']} | {fmt(r['connected'])} | {r['rss0_kb']/1024:.1f} → {r['rss_peak_mb']:.1f} | {fmt(r['kib_per_viewer'], 0)} |")
    cmp_rows = []
    for t in TRANSPORTS:
        ours = [r for r in runs if r["server"] == "h3live" and r["mode"] == "segment" and r["transport"] == t]
        theirs = [r for r in runs if r["server"] == "caddy" and r["transport"] == t]
        if ours and theirs:
            o, c = ours[-1], theirs[-1]
            ratio = o["cpu_s_per_gb"] / c["cpu_s_per_gb"] if o["cpu_s_per_gb"] and c["cpu_s_per_gb"] else None
            cmp_rows.append((t, o, c, ratio))
    if cmp_rows:
        lines.append("\n### Side by side with caddy (same bytes; viewers fetch each segment once complete)\n")
        lines.append("caddy serves cleartext HTTP/1.1 with sendfile(2) (no copy through user space); h3live copies every chunk through its HTTP stack.\n")
        lines.append("| transport | viewers | h3live CPU s/GB | caddy CPU s/GB | h3live / caddy | h3live RSS MB | caddy RSS MB | errors h3live / caddy |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t, o, c, ratio in cmp_rows:
            lines.append(f"| {t} | {o['viewers']} | {fmt(o['cpu_s_per_gb'], 2)} | {fmt(c['cpu_s_per_gb'], 2)} | {fmt(ratio, 2)} | "
                         f"{fmt(o['rss_peak_mb'])} | {fmt(c['rss_peak_mb'])} | {fmt(o['errors'])} / {fmt(c['errors'])} |")
    # The targets set for the benchmark (docs/results/2026-11-24-benchmark.md).
    lines.append("\n### Targets\n")
    for t in TRANSPORTS:
        r500 = [r for r in live if r["transport"] == t and r["viewers"] == 500]
        if r500:
            p99 = r500[0]["origin_delay_p99_ms"]
            lines.append(f"- {t}: origin delay p99 at 500 viewers {fmt(p99, 2)} ms (target < 5): {'met' if p99 is not None and p99 < 5 else 'MISSED'}")
    for n in sorted({r["viewers"] for r in live}):
        h3 = [r for r in live if r["transport"] == "h3" and r["viewers"] == n]
        h1 = [r for r in live if r["transport"] == "h1-tls" and r["viewers"] == n]
        if h3 and h1 and h3[0]["cpu_s_per_gb"] and h1[0]["cpu_s_per_gb"]:
            ratio = h3[0]["cpu_s_per_gb"] / h1[0]["cpu_s_per_gb"]
            lines.append(f"- {n} viewers: h3 CPU/GB = {ratio:.2f}× h1-tls (target ≤ 2): {'met' if ratio <= 2 else 'MISSED'}")
    for r in sorted(idle, key=lambda r: TRANSPORTS.index(r["transport"])):
        limit = 300 if r["transport"] in ("h3", "moq") else 100
        k = r["kib_per_viewer"]
        lines.append(f"- {r['transport']}: {fmt(k, 0)} KiB per idle viewer (target < {limit}): {'met' if k is not None and k < limit else 'MISSED'}")
    errs = sum((r["errors"] or 0) for r in runs)
    lines.append(f"- errors over all runs: {errs} (target 0): {'met' if errs == 0 else 'MISSED'}")
    lines += against_table(all_runs)
    lines += budget_table(all_runs)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    return text


def plot(out, runs):
    """Two panels against viewers (log x): origin CPU s/GB, and p99 latencies (new binary only)."""
    live = [r for r in runs if r["server"] == "h3live" and r["mode"] == "live" and r["variant"] == "new"]
    counts = sorted({r["viewers"] for r in live})
    if not counts:
        return
    W, H, M = 980, 420, 60
    pw = (W - 3 * M) / 2
    ph = H - 2 * M
    xs = [math.log10(max(c, 1)) for c in counts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']

    def panel(ox, title, series, ylabel, logy=False, legend_left=False):
        vals = [v for _, pts, _ in series for _, v in pts if v is not None and (v > 0 or not logy)]
        ymax = max(vals) * 1.1 if vals else 1
        ymax = ymax or 1
        X = lambda c: ox + (math.log10(max(c, 1)) - x0) / (x1 - x0) * pw
        if logy:
            lo = math.floor(math.log10(min(vals))) if vals else -1
            hi = math.ceil(math.log10(ymax)) if vals else 0
            hi = hi if hi > lo else lo + 1
            Y = lambda v: M + ph - (math.log10(max(v, 10 ** lo)) - lo) / (hi - lo) * ph
            ticks = [10 ** e for e in range(lo, hi + 1)]
        else:
            Y = lambda v: M + ph - v / ymax * ph
            ticks = [ymax * i / 4 for i in range(5)]
        svg.append(f'<text x="{ox + pw/2}" y="{M - 25}" text-anchor="middle" font-weight="bold">{title}</text>')
        svg.append(f'<line x1="{ox}" y1="{M+ph}" x2="{ox+pw}" y2="{M+ph}" stroke="black"/>')
        svg.append(f'<line x1="{ox}" y1="{M}" x2="{ox}" y2="{M+ph}" stroke="black"/>')
        for v in ticks:
            svg.append(f'<text x="{ox-5}" y="{Y(v)+4:.1f}" text-anchor="end">{(f"{v:g}" if logy else f"{v:.3g}")}</text>')
            svg.append(f'<line x1="{ox}" y1="{Y(v):.1f}" x2="{ox+pw}" y2="{Y(v):.1f}" stroke="#eee"/>')
        for c in counts:
            svg.append(f'<text x="{X(c)}" y="{M+ph+16}" text-anchor="middle">{c}</text>')
        svg.append(f'<text x="{ox+pw/2}" y="{M+ph+34}" text-anchor="middle">viewers (log)</text>')
        svg.append(f'<text x="{ox-45}" y="{M+ph/2}" transform="rotate(-90 {ox-45} {M+ph/2})" text-anchor="middle">{ylabel}</text>')
        for j, (name, pts, dash) in enumerate(series):
            pts = [(c, v) for c, v in pts if v is not None]
            if not pts:
                continue
            color = COLORS.get(name.split()[0], "black")
            dash_attr = ' stroke-dasharray="5,4"' if dash else ""
            d = " ".join(f"{X(c):.1f},{Y(v):.1f}" for c, v in pts)
            svg.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>')
            for c, v in pts:
                svg.append(f'<circle cx="{X(c):.1f}" cy="{Y(v):.1f}" r="3" fill="{color}"/>')
            ly = M + 14 * j
            lx = ox + 10 if legend_left else ox + pw - 120
            svg.append(f'<line x1="{lx}" y1="{ly}" x2="{lx+20}" y2="{ly}" stroke="{color}" stroke-width="2"{dash_attr}/>')
            svg.append(f'<text x="{lx+25}" y="{ly+4}">{name}</text>')

    def pts(t, key):
        return [(r["viewers"], r[key]) for r in sorted(live, key=lambda r: r["viewers"]) if r["transport"] == t]

    present = [t for t in TRANSPORTS if any(r["transport"] == t for r in live)]
    panel(M, "origin CPU seconds per delivered GB", [(t, pts(t, "cpu_s_per_gb"), False) for t in present], "CPU s / GB")
    series = [(f"{t} origin", pts(t, "origin_delay_p99_ms"), False) for t in present]
    series += [(f"{t} prft", pts(t, "prft_p99_ms"), True) for t in present]
    panel(2 * M + pw, "p99 latency: origin delay (solid), prft→last byte (dashed)", series, "ms (log)", logy=True, legend_left=True)
    svg.append("</svg>")
    with open(os.path.join(out, "plot.svg"), "w") as f:
        f.write("\n".join(svg) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    runs = load_runs(out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print(table(out, runs))
    plot(out, runs)


if __name__ == "__main__":
    main()
