#!/usr/bin/env bash
# scripts/test-ab.sh — test of the transport A/B harness (scripts/ab.sh): a
# short real run (real ffmpeg, origin, headless Chromium in two network
# namespaces) of 20 s per arm in the clean and loss1 profiles, HTTP/3 and
# HTTP/1.1-over-TLS, then scripts/ab/check.mjs on the output folder: every arm
# produced samples, used its protocol, latencies plausible (0 < x < 10 s), loss
# really dropped packets, report files exist and parse.  Nothing is asserted
# about which transport wins.  Takes about 2 minutes.  Needs root.
# Usage: scripts/test-ab.sh [--keep] [extra scripts/ab.sh options]
#   --keep   keep the output folder (printed) instead of deleting it
# Environment: H3LIVE_BIN (binary, default target/release/h3live).
set -u
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = --keep ] && { KEEP=1; shift; }
if [ "$(id -u)" != 0 ]; then
  echo "test-ab: needs root (network namespaces, nftables): run it as root or with sudo" >&2
  exit 1
fi
command -v nft >/dev/null || { echo "test-ab: nft not found (apt-get install nftables)" >&2; exit 1; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/h3live-ab-test.XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$OUT"' EXIT
START=$(date +%s)
scripts/ab.sh --bin "${H3LIVE_BIN:-target/release/h3live}" --out "$OUT" \
  --profiles clean,loss1 --arms h3,h1 --duration 20 --warmup 5 "$@"
rc=$?
[ "$rc" = 0 ] || echo "test-ab: scripts/ab.sh exited with $rc"
node scripts/ab/check.mjs "$OUT" --profiles clean,loss1 --arms h3,h1 --min-samples 100
crc=$?
echo "test-ab: $(( $(date +%s) - START )) s$([ "$KEEP" = 1 ] && echo ", output in $OUT")"
[ "$rc" = 0 ] && [ "$crc" = 0 ]
