#!/usr/bin/env bash
# scripts/soak.sh — soak test of the stream lifecycle across restarts.
#
# Runs, on free ports, for --duration: the origin (with --state-dir), the real
# test-pattern encoder (scripts/encoder.sh), --viewers viewers of `h3live load`
# split over h3, h2, h1-tls and h1-clear, and a headless Chromium playing the
# player page over h3.  Every --period it restarts one side, in turn: kill -9
# of ffmpeg (encoder.sh restarts it) and kill -9 of the origin (started again
# 2 s later on the same ports and state directory).  After each restart it
# checks that the open page plays again within 2 segment durations of the
# restarted side being back, without a page reload, and that a new viewer
# starts.  Every 10 s it samples the origin's RSS, its /metrics counters and
# the page's stats.  All of this is web/e2e/restart.js --soak; this script
# builds what is missing, runs it nice'd, and writes the report.
#
# Output (--out, default out/soak-YYYYmmdd-HHMMSS/): samples.csv, restarts.json,
# load-<transport>.json, table.md (per restart and summary), plot.svg (origin
# RSS, page latency, error responses over time, restarts marked), soak.log.
#
# --arm moq: the page plays the Media over QUIC arm (origin with --moq) instead of
# LL-DASH over h3, and the load viewers include `h3live load -t moq`.
#
# Usage: scripts/soak.sh [--duration 30m] [--period 180] [--viewers 200] [--out DIR] [--arm h3|moq]
#                        [--encoder-args '--size 640x360 --fps 25 --bitrate 500k'] (the default)
#        (--duration accepts 300, 300s, 5m; the short check: --duration 4m --period 60)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=soak

DURATION=30m
PERIOD=180
VIEWERS=200
# The soak stream is lighter than the demo's 720p30 2 Mbit/s so that encoder, origin, 200 load viewers and
# Chromium fit on a shared 2-core machine (at 720p30 the load viewers alone fell behind real time there).
ENCODER_ARGS="--size 640x360 --fps 25 --bitrate 500k"
OUT=""
BIN="${H3LIVE_BIN:-target/release/h3live}"
ARM=h3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --period) PERIOD="$2"; shift 2 ;;
    --viewers) VIEWERS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --encoder-args) ENCODER_ARGS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --arm) ARM="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
done
case "$DURATION" in
  *m) SECS=$(( ${DURATION%m} * 60 )) ;;
  *s) SECS=${DURATION%s} ;;
  *) SECS=$DURATION ;;
esac
OUT="${OUT:-out/soak-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
for c in ffmpeg node python3 openssl; do command -v "$c" >/dev/null || die "$c is missing (scripts/test.sh installs the test dependencies)"; done
[ -x "$BIN" ] || nice -n 5 cargo build --release
[ -d web/node_modules/dashjs ] || (cd web && npm ci --no-audit --no-fund)

say "${SECS}s, a restart every ${PERIOD}s (encoder, origin, ...), ${VIEWERS} load viewers + 1 browser; output $OUT"
set +e
nice -n 5 node web/e2e/restart.js --bin "$BIN" --soak "$SECS" --period "$PERIOD" --load "$VIEWERS" --out "$OUT" --arm "$ARM" \
  --encoder-args="$ENCODER_ARGS" \
  --json "$OUT/restarts.json" 2>&1 | tee "$OUT/soak.log"
RC=${PIPESTATUS[0]}
set -e
python3 scripts/soak-report.py "$OUT"
say "report in $OUT/table.md and $OUT/plot.svg (restart checks exit code $RC)"
exit "$RC"
