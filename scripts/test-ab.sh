#!/usr/bin/env bash
# scripts/test-ab.sh — test of the transport A/B harness (scripts/ab.sh) and
# its path emulator (h3live pathemu):
#   1. the emulator self-check alone (--check-only) on paths that use every
#      feature: normal jitter, Gilbert-Elliott bursty loss, a rate limit with a
#      100 ms queue; each must measure as configured (RTT, one-way delay,
#      jitter, loss per direction, rate);
#   2. a short real run (real ffmpeg, origin, headless Chromium in two network
#      namespaces) of 20 s per arm in rtt50-loss1 (25 ms and 1 % loss each way),
#      HTTP/3 and HTTP/1.1-over-TLS, then scripts/ab/check.mjs on the output
#      folder: the path measured as configured (RTT, TCP connect time, loss both
#      ways), every arm produced samples and used its protocol, latencies
#      plausible, the emulator dropped packets both ways, report files parse.
# Nothing is asserted about which transport wins.  Takes about 2.5 minutes.  Needs root.
# Usage: scripts/test-ab.sh [--keep] [extra scripts/ab.sh options for step 2]
#   --keep   keep the output folders (printed) instead of deleting them
# Environment: H3LIVE_BIN (binary, default target/release/h3live).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=test-ab
KEEP=0
[ "${1:-}" = --keep ] && { KEEP=1; shift; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, iptables): run it as root or with sudo"
command -v iptables >/dev/null || die "iptables not found (apt-get install iptables)"
BIN="${H3LIVE_BIN:-target/release/h3live}"
OUT=$(mktemp -d "${TMPDIR:-/tmp}/h3live-ab-test.XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$OUT"' EXIT
START=$(date +%s)

say "1. emulator self-check (jitter, bursty loss, rate)"
src=0
scripts/ab.sh --bin "$BIN" --out "$OUT/selfcheck" --check-only --profiles rtt50-jitter20,rtt100-burst,rtt80-rate || src=$?
[ "$src" = 0 ] || say "FAIL: the emulator self-check did not pass (exit $src)"

say "2. short A/B run, rtt50-loss1, h3 + h1"
rc=0
scripts/ab.sh --bin "$BIN" --out "$OUT/ab" --profiles rtt50-loss1 --arms h3,h1 --duration 20 --warmup 5 "$@" || rc=$?
[ "$rc" = 0 ] || say "scripts/ab.sh exited with $rc"
# Samples: about 450 per arm on an idle machine; the bar only proves the arm played
# (a loaded machine makes the player stall).
crc=0
node scripts/ab/check.mjs "$OUT/ab" --profiles rtt50-loss1 --arms h3,h1 --min-samples 30 || crc=$?
say "$(( $(date +%s) - START )) s$([ "$KEEP" = 1 ] && echo ", output in $OUT")"
[ "$src" = 0 ] && [ "$rc" = 0 ] && [ "$crc" = 0 ]
