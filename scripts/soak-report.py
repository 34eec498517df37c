#!/usr/bin/env python3
"""Report of a soak run (scripts/soak.sh): reads DIR/samples.csv, DIR/restarts.json
and DIR/load-*.json, writes DIR/table.md and DIR/plot.svg. Standard library only.

Usage: scripts/soak-report.py DIR
"""
import csv
import json
import os
import statistics
import sys
from datetime import datetime
from html import escape


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main(d):
    with open(os.path.join(d, "samples.csv")) as f:
        samples = list(csv.DictReader(f))
    with open(os.path.join(d, "restarts.json")) as f:
        rj = json.load(f)
    restarts = rj.get("measured", [])
    results = rj.get("results", [])
    loads = {}
    for t in ("h3", "h2", "h1-tls", "h1-clear", "moq"):
        p = os.path.join(d, f"load-{t}.json")
        if os.path.exists(p):
            with open(p) as f:
                loads[t] = json.load(f)

    t0 = ts(samples[0]["t"]) - float(samples[0]["elapsed_s"]) if samples else 0
    # Error responses per origin process: counters restart with the process, so add up deltas.
    err_series, prev = [], {}
    for s in samples:
        pid, e = s["origin_pid"], num(s["origin_responses_err"])
        if e is None:
            err_series.append(None)
            continue
        base = prev.get(pid, 0.0)
        err_series.append(max(0.0, e - base))
        prev[pid] = e
    # RSS per origin process: first and last sample, max.
    per_pid = {}
    for s in samples:
        rss = num(s["origin_rss_kb"])
        if rss is None:
            continue
        per_pid.setdefault(s["origin_pid"], []).append((float(s["elapsed_s"]), rss / 1024))

    def checks_for(i, scenario):
        # results are in order; group the i-th scenario's checks
        seen, out = -1, []
        for r in results:
            if r["scenario"] != scenario:
                continue
            if r["name"] == "video advances again":
                seen += 1
            if seen == i:
                out.append(r)
        return out

    counts = {}
    rows = []
    for m in restarts:
        k = m["scenario"]
        i = counts.get(k, 0)
        counts[k] = i + 1
        cs = {c["name"]: c for c in checks_for(i, k)}
        bound = next((c for n, c in cs.items() if n.startswith("within")), None)
        newv = cs.get("a new viewer starts")
        lat = cs.get("latency back under 3 s")
        rows.append({
            "n": len(rows) + 1,
            "at": m.get("at", ""),
            "kind": k,
            "down": m.get("downMs"),
            "rec": m.get("recoveryMs"),
            "ok": bool(bound and bound["ok"]),
            "reloads": m.get("reloads"),
            "newv": bool(newv and newv["ok"]),
            "lat": lat["detail"] if lat else "",
        })

    bound_ms = None
    for r in results:
        if r["name"].startswith("within"):
            bound_ms = r["name"].split("(")[-1].rstrip(")")
            break
    lines = ["# Soak report", ""]
    dur = float(samples[-1]["elapsed_s"]) if samples else 0
    lines.append(f"Duration {dur / 60:.1f} min, {len(samples)} samples (every 10 s), {len(rows)} restarts "
                 f"({counts.get('encoder', 0)} encoder, {counts.get('origin', 0)} origin); bound {bound_ms}.")
    lines.append("")
    lines.append("| # | at (UTC) | restarted | down ms | back → video advancing ms | within bound | source reloads | new viewer starts | latency after |")
    lines.append("|---:|---|---|---:|---:|---|---:|---|---|")
    for r in rows:
        lines.append(f"| {r['n']} | {r['at'][11:19]} | {r['kind']} | {r['down']} | {r['rec']} | {'yes' if r['ok'] else '**no**'} | "
                     f"{r['reloads']} | {'yes' if r['newv'] else '**no**'} | {r['lat']} |")
    recs = [r["rec"] for r in rows if r["rec"] is not None]
    lines.append("")
    if recs:
        for k in ("encoder", "origin"):
            ks = [r["rec"] for r in rows if r["kind"] == k and r["rec"] is not None]
            if ks:
                lines.append(f"- {k} restarts: {sum(1 for r in rows if r['kind'] == k and r['ok'])}/{counts.get(k, 0)} within the bound; "
                             f"back → video advancing median {statistics.median(ks):.0f} ms, max {max(ks)} ms")
    lines.append(f"- checks: {sum(1 for r in results if r['ok'])} passed, {sum(1 for r in results if not r['ok'])} failed")
    lines.append("")
    lines.append("Origin memory (RSS) per origin process (each origin restart starts a new one):")
    lines.append("")
    lines.append("| process | from s | to s | RSS first MB | RSS last MB | RSS max MB |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for pid, v in per_pid.items():
        lines.append(f"| {pid} | {v[0][0]:.0f} | {v[-1][0]:.0f} | {v[0][1]:.1f} | {v[-1][1]:.1f} | {max(x[1] for x in v):.1f} |")
    lines.append("")
    errs = [e for e in err_series if e is not None]
    lines.append(f"Origin error responses (4xx/5xx, all processes): {int(sum(errs)) if errs else 0} in total; "
                 f"10-s samples with any: {sum(1 for e in errs if e > 0)} of {len(errs)}.")
    if samples:
        last = samples[-1]
        lines.append(f"Browser page: {last['page_reloads']} source reloads, {last['page_stalls']} stalls, "
                     f"{last['page_errors']} player errors (dash.js errors while a side was down count here).")
    lines.append("")
    if loads:
        lines.append("Load viewers (`h3live load`, reconnecting after each error):")
        lines.append("")
        lines.append("| transport | viewers | connected at end | Mbit/s | segments | errors | stalls | prft p50 / p99 ms |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t, L in loads.items():
            lat = L.get("latency") or {}
            lines.append(f"| {t} | {L.get('viewers', '')} | {L.get('connected', '')} | {L.get('mbit_per_s', 0):.0f} | {L.get('segments', '')} | "
                         f"{L.get('errors', '')} | {L.get('stalls', '')} | {lat.get('p50_ms', 0):.0f} / {lat.get('p99_ms', 0):.0f} |")
        kinds = {}
        for L in loads.values():
            for k, v in (L.get("error_kinds") or {}).items():
                kinds[k] = kinds.get(k, 0) + v
        if kinds:
            lines.append("")
            lines.append("Load errors by cause: " + "; ".join(f"{k}: {v}" for k, v in sorted(kinds.items(), key=lambda x: -x[1])[:6]))
    with open(os.path.join(d, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # ------------------------------------------------------------------ plot
    W, H, L, R = 900, 520, 60, 20
    panels = [("origin RSS (MB)", [(float(s["elapsed_s"]), num(s["origin_rss_kb"]) / 1024 if num(s["origin_rss_kb"]) else None) for s in samples]),
              ("page latency, timecode (ms)", [(float(s["elapsed_s"]), num(s["page_latency_ms"])) for s in samples]),
              ("origin error responses per 10 s", [(float(s["elapsed_s"]), e) for s, e in zip(samples, err_series)])]
    ph = (H - 40) / len(panels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    xmax = max(dur, 1)
    x = lambda t: L + (W - L - R) * t / xmax
    for i, (title, pts) in enumerate(panels):
        top = 20 + i * ph
        bot = top + ph - 25
        vals = [v for _, v in pts if v is not None]
        vmax = max(vals + [1]) * 1.15
        y = lambda v: bot - (bot - top) * v / vmax
        out.append(f'<text x="{L}" y="{top - 4}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<line x1="{L}" y1="{bot}" x2="{W - R}" y2="{bot}" stroke="#999"/>')
        out.append(f'<line x1="{L}" y1="{top}" x2="{L}" y2="{bot}" stroke="#999"/>')
        out.append(f'<text x="{L - 4}" y="{top + 8}" text-anchor="end">{vmax:.0f}</text><text x="{L - 4}" y="{bot}" text-anchor="end">0</text>')
        for m in rows:
            if not m["at"]:
                continue
            tx = x(ts(m["at"]) - t0)
            color = "#d33" if m["kind"] == "origin" else "#36c"
            out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bot}" stroke="{color}" stroke-dasharray="3,3"/>')
        path, pen = [], False
        for t, v in pts:
            if v is None:
                pen = False
                continue
            path.append(f'{"L" if pen else "M"}{x(t):.1f},{y(v):.1f}')
            pen = True
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="#222" stroke-width="1.3"/>')
        out.append(f'<text x="{W - R}" y="{bot + 14}" text-anchor="end">{xmax / 60:.0f} min</text><text x="{L}" y="{bot + 14}">0</text>')
    out.append(f'<text x="{W - R}" y="12" text-anchor="end"><tspan fill="#36c">- - encoder restart</tspan>  <tspan fill="#d33">- - origin restart</tspan></text>')
    out.append("</svg>")
    with open(os.path.join(d, "plot.svg"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(open(os.path.join(d, "table.md")).read())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
