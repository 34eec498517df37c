#!/usr/bin/env bash
# scripts/relay-cost.sh — what the encoder relay adds per chunk.
#
# One origin (cleartext and h3 ingest on free loopback ports) and the real
# encoder (scripts/encoder.sh, 720p30 2 Mbit/s, one fragment per frame), in
# turn: pushing directly (--direct), through the relay over HTTP/1.1, through
# the relay over HTTP/3. In each run `h3live load` viewers read the stream on
# the origin's cleartext listener and measure, per fragment, the time from its
# prft (ffmpeg's wall clock when it wrote the fragment) to its last byte at the
# viewer; the relay's own histogram (h3live_relay_delay_seconds: a chunk's
# arrival from ffmpeg to its hand-off to the origin's connection) is read from
# its /metrics at the end of the run. Modes rotate per round, so a drift of
# the machine's load spreads over all of them.
#
# Output: OUT/report.md (per run and per mode: prft p50/p95/p99, the relay's
# mean and p50/p99 per chunk; "added" = mode p50 minus direct p50), OUT/raw/
# (load JSON, relay metrics, logs).
#
# Usage: scripts/relay-cost.sh [--duration S] [--rounds N] [--modes direct,h1,h3]
#          [--viewers N] [--size WxH] [--bitrate RATE] [--out DIR] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=relay-cost SAY_CLOCK=%T

DURATION=30
ROUNDS=1
MODES=direct,h1,h3
VIEWERS=5
SIZE=1280x720
BITRATE=2M
OUT=""
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --viewers) VIEWERS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --bitrate) BITRATE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
done
IFS=, read -r -a MODE_LIST <<< "$MODES"
for m in "${MODE_LIST[@]}"; do case "$m" in direct|h1|h3) ;; *) die "--modes: direct, h1, h3" ;; esac; done

OUT=${OUT:-out/relay-cost-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
BIN=$PWD/target/release/h3live
if [ "$BUILD" = 1 ]; then cargo build --release --locked >&2; fi
[ -x "$BIN" ] || die "no $BIN (cargo build --release)"
command -v ffmpeg >/dev/null || die "ffmpeg not found"

ORIGIN_PID="" ENCODER_PID=""
cleanup() { stop_pid "$ENCODER_PID" 15 encoder; stop_pid "$ORIGIN_PID" 10 origin; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" cert --out "$OUT/certs" >/dev/null
# Port 0: the cleartext and h3 ingest get one kernel-chosen number, reported in origin.ports.
"$BIN" serve --http "127.0.0.1:0" --h3-ingest "127.0.0.1:0" --h3 off --https off --https-h1 off --https-h2 off \
  --ports-file "$OUT/origin.ports" --cert "$OUT/certs/cert.pem" --key "$OUT/certs/key.pem" > "$OUT/origin.log" 2>&1 &
ORIGIN_PID=$!
wait_ports "$OUT/origin.ports" 10 "$ORIGIN_PID" || die "the origin did not start (see $OUT/origin.log)"
PORT=$(port_of "$OUT/origin.ports" http)
wait_url "http://127.0.0.1:$PORT/healthz" 10 "$ORIGIN_PID" || die "the origin did not start (see $OUT/origin.log)"
say "origin on 127.0.0.1:$PORT (TCP and UDP); output $OUT"
say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

: > "$OUT/raw/runs.tsv"
for r in $(seq 1 "$ROUNDS"); do
  n=${#MODE_LIST[@]}
  for i in $(seq 0 $((n - 1))); do
    mode=${MODE_LIST[$(((i + r - 1) % n))]}
    stream="rc-$mode-$r"
    args=(--origin "http://127.0.0.1:$PORT" --stream "$stream" --size "$SIZE" --bitrate "$BITRATE")
    case "$mode" in
      direct) args+=(--direct) ;;
      *) args+=(--ingest-transport "$mode" --relay-arg "--ca=$OUT/certs/cert.pem") ;;
    esac
    step "round $r: $mode, ${DURATION}s, $VIEWERS viewers"
    scripts/encoder.sh "${args[@]}" > "$OUT/raw/$stream.encoder.log" 2>&1 &
    ENCODER_PID=$!
    wait_url "http://127.0.0.1:$PORT/live/$stream/manifest.mpd" 30 "$ENCODER_PID" || die "no manifest (see $OUT/raw/$stream.encoder.log)"
    "$BIN" load -q -t h1-clear --addr "127.0.0.1:$PORT" --stream "$stream" -n "$VIEWERS" -d "${DURATION}s" \
      --ramp 1s --wait 20s --json "$OUT/raw/$stream.load.json" > /dev/null 2> "$OUT/raw/$stream.load.log" \
      || die "the load tool failed (see $OUT/raw/$stream.load.log)"
    relay=$(sed -n 's/.*relay (pid [0-9]*) on \([0-9.:]*\) .*/\1/p' "$OUT/raw/$stream.encoder.log" | tail -n 1)
    if [ -n "$relay" ]; then curl -fsS "http://$relay/metrics" > "$OUT/raw/$stream.relay-metrics.txt" || true; fi
    stop_pid "$ENCODER_PID" 15 encoder
    ENCODER_PID=""
    printf '%s\t%s\t%s\t%s\n' "$r" "$mode" "$stream" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/raw/runs.tsv"
  done
done

python3 - "$OUT" <<'EOF'
import json, os, re, statistics, sys
out = sys.argv[1]
runs = [l.rstrip("\n").split("\t") for l in open(f"{out}/raw/runs.tsv") if l.strip()]

def relay_hist(path):
    """Mean and p50/p99 (bucket upper bounds) of h3live_relay_delay_seconds, in ms."""
    if not os.path.exists(path):
        return None
    buckets, total, count = [], 0.0, 0
    for l in open(path):
        m = re.match(r'h3live_relay_delay_seconds_bucket\{.*le="([^"]+)"\} (\d+)', l)
        if m:
            buckets.append((float("inf") if m[1] == "+Inf" else float(m[1]), int(m[2])))
        elif l.startswith("h3live_relay_delay_seconds_sum"):
            total = float(l.split()[-1])
        elif l.startswith("h3live_relay_delay_seconds_count"):
            count = int(l.split()[-1])
    if not count:
        return None
    def q(p):
        for le, c in buckets:
            if c >= p * count:
                return le * 1000
    return {"mean": total / count * 1000, "p50": q(0.5), "p99": q(0.99), "chunks": count}

rows, by_mode = [], {}
for r, mode, stream, load in runs:
    j = json.load(open(f"{out}/raw/{stream}.load.json"))
    lat = j["latency"]
    h = relay_hist(f"{out}/raw/{stream}.relay-metrics.txt")
    rows.append((r, mode, lat, j.get("fragments", 0), h, load))
    by_mode.setdefault(mode, []).append((lat, h))
L = ["# What the encoder relay adds per chunk", "",
     f"{len(runs)} runs; viewers read the origin's cleartext listener; latency = fragment prft -> last byte at the viewer.", "",
     "| round | mode | prft p50 / p95 / p99 ms | fragments | relay per chunk: mean / p50 / p99 ms (chunks) | load avg |",
     "|---:|---|---:|---:|---:|---:|"]
for r, mode, lat, frags, h, load in rows:
    rel = "–" if not h else f"{h['mean']:.3f} / ≤{h['p50']:.3f} / ≤{h['p99']:.3f} ({h['chunks']})"
    L.append(f"| {r} | {mode} | {lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} / {lat['p99_ms']:.1f} | {frags} | {rel} | {load} |")
L += ["", "| mode | runs | median prft p50 ms | added p50 vs direct ms | relay mean per chunk ms |", "|---|---:|---:|---:|---:|"]
base = statistics.median(l["p50_ms"] for l, _ in by_mode["direct"]) if "direct" in by_mode else None
for mode, v in by_mode.items():
    p50 = statistics.median(l["p50_ms"] for l, _ in v)
    added = "–" if base is None or mode == "direct" else f"{p50 - base:+.2f}"
    means = [h["mean"] for _, h in v if h]
    rel = f"{statistics.median(means):.3f}" if means else "–"
    L.append(f"| {mode} | {len(v)} | {p50:.2f} | {added} | {rel} |")
text = "\n".join(L) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
EOF
