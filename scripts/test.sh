#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian/Ubuntu
# machine (ffmpeg, fonts, Chromium, Firefox ESR with NSS's certutil, Node.js,
# varnish, a Python venv with aioquic, web/'s npm packages), then runs every test suite:
#   0. the docs check (scripts/check-docs.sh): every relative link and heading anchor in
#      README.md and docs/ resolves, and README.md has at most 400 lines;
#   1. cargo fmt --check, cargo clippy (warnings are errors) and cargo test: unit tests, the
#      origin over real sockets on all four transports, real ffmpeg ingest,
#      aioquic as an independent HTTP/3 client, the edge tier with a real
#      varnishd (tests/edge.rs);
#   2. the QUIC interop matrix (interop/run.sh --quick) against aioquic,
#      ngtcp2's client, headless Chromium, headless Firefox and curl;
#   3. the timecode decoder's unit tests on frames from the real encoder (node --test);
#      the encoder's inputs and video encoders without a browser (scripts/test-sources.sh:
#      every hardware encoder's and camera's command checked against ffmpeg's own option
#      lists, a clear failure without the device, a looped file's continuous timestamps);
#   4. headless Chromium with the QUIC flags playing the real stream over h3 and
#      HTTP/1.1-over-TLS (web/e2e/e2e.js) with dash.js and with hls.js; the same player
#      surviving kill -9 of ffmpeg and of the origin, and a new viewer starting after
#      each, no segment missing on the origin through the encoder relay, and its stall
#      against ffmpeg pushing directly (web/e2e/restart.js); the compare page's verdict unit tests and screenshot
#      test at four window sizes (web/e2e/compare-shots.js, ~45 s),
#      the same player (h3, HTTP/1.1 over TLS), LL-HLS over h3 and compare page in
#      headless Firefox, whose HTTP/3 is another QUIC stack (neqo; ~2.5 min),
#      and the ABR ladder (encoder.sh --ladder) switching down under a rate limit
#      (Chromium's network throttling) and under a bitrate cap (web/e2e/abr.js);
#      real sources (web/e2e/sources.js): a looped media file played across its loop
#      points with the timecode decoded, the Streamline preview's ffmpeg command pushing
#      to /ldash/1234/ and its /ldashplay/1234/manifest.mpd URL playing, the clock page;
#      the MoQ endpoint's certificate paths for WebTransport (web/e2e/moq-cert.js);
#      the MoQ player page over WebTransport (timecode, arrival, no WebSocket fallback),
#      its recovery from encoder and origin restarts, and the moq arm of the compare page;
#   5. the transport A/B harness, short: the path emulator's self-check (jitter,
#      bursty loss, rate), then origin and browsers (Chromium, Firefox) in two network
#      namespaces over a 50 ms RTT, 1 % loss path, h3 and HTTP/1.1, and the ABR ladder through a
#      kernel rate step (700 kbit/s for 15 s) on h3, h2 and h1, each of which must
#      switch down (scripts/test-ab.sh; root).
# Usage: scripts/test.sh [--no-install] [--no-e2e]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX="test"

INSTALL=1
E2E=1
for a in "$@"; do
  case "$a" in
    --no-install) INSTALL=0 ;;
    --no-e2e) E2E=0 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#'; exit 0 ;;
    *) say "unknown option $a (--help)"; exit 2 ;;
  esac
done

if [ "$INSTALL" = 1 ]; then
  step "installing test dependencies"
  need=()
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
  command -v firefox-esr >/dev/null || command -v firefox >/dev/null || need+=(firefox-esr)
  command -v certutil >/dev/null || need+=(libnss3-tools)
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v jq >/dev/null || need+=(jq)
  command -v gtlsclient >/dev/null || need+=(ngtcp2-client)
  command -v nft >/dev/null || need+=(nftables)
  [ -x /usr/sbin/varnishd ] || need+=(varnish)
  command -v iptables >/dev/null || need+=(iptables)
  { command -v ip && command -v tc; } >/dev/null || need+=(iproute2)
  python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; else say "system packages: all present"; fi
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import aioquic' 2>/dev/null; then
    say "creating .venv with aioquic"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/py/requirements.txt
  fi
  say "npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi

step "docs check: links and anchors in README.md and docs/, README.md <= 400 lines"
scripts/check-docs.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo build --release"
cargo build --release --locked

step "cargo test"
H3LIVE_PYTHON="$PWD/.venv/bin/python" cargo test --locked

step "QUIC interop matrix (quick subset: aioquic, ngtcp2, Chromium, Firefox, curl)"
interop/run.sh --quick --no-install --bin target/release/h3live --out out/interop

step "timecode decoder tests (node --test)"
(cd web && npm test)

step "encoder sources: hardware encoders' and cameras' commands against ffmpeg's option lists, missing devices, a looped file"
scripts/test-sources.sh

if [ "$E2E" = 1 ]; then
  step "headless Chromium end-to-end (h3 and HTTP/1.1 over TLS)"
  node web/e2e/e2e.js --bin target/release/h3live

  step "headless Chromium end-to-end, LL-HLS with hls.js (h3 and HTTP/1.1 over TLS)"
  node web/e2e/e2e.js --bin target/release/h3live --format hls --duration 20 --max-latency 5000 --agree 500

  step "MoQ endpoint: which certificate paths open a WebTransport session in headless Chromium (~15 s)"
  node web/e2e/moq-cert.js --bin target/release/h3live

  step "headless Chromium end-to-end, Media over QUIC: the MoQ player over WebTransport, latency under 1 s, no WebSocket fallback (~40 s)"
  node web/e2e/e2e.js --bin target/release/h3live --format moq --max-latency 1000

  step "restarts: kill -9 of the encoder and of the origin (through the encoder relay, then direct) under a playing headless Chromium (LL-DASH over h3, then the MoQ player)"
  # --bound 4: a sanity bound on recovery (8 s with 2 s segments) on a shared 2-core machine,
  # where 3.4-4.2 s have been seen under load; the recovery time itself is measured in
  # docs/results (restart-recovery), not asserted here.
  node web/e2e/restart.js --bin target/release/h3live --bound 4
  node web/e2e/restart.js --bin target/release/h3live --arm moq --bound 4 --encoder-args='--size 640x360'

  step "ABR ladder in headless Chromium over h3: down-switch under a 700 kbit/s limit and under a cap, timecode at 234p (~90 s)"
  node web/e2e/abr.js --bin target/release/h3live

  step "real sources in headless Chromium: a looped file, the preview's ffmpeg and /ldashplay URL, the clock page (~40 s)"
  node web/e2e/sources.js --bin target/release/h3live

  step "compare page: verdict unit tests, screenshots at 1280x800, 390x844, 1920x1080, 3840x2160"
  node --test web/test/verdict.test.js
  node web/e2e/compare-shots.js --bin target/release/h3live
  node web/e2e/compare-shots.js --bin target/release/h3live --arms h3,moq,h1 --no-highlight

  step "headless Firefox (HTTP/3 by neqo): player over h3 and HTTP/1.1 over TLS, LL-HLS over h3, compare page"
  node web/e2e/e2e.js --browser firefox --bin target/release/h3live --agree 400
  node web/e2e/e2e.js --browser firefox --bin target/release/h3live --arms h3 --format hls --duration 20 --max-latency 5000 --agree 500
  node web/e2e/compare-shots.js --browser firefox --bin target/release/h3live --no-highlight

  step "transport A/B harness: path emulator self-check + short run (netns, rtt50-loss1, h3 + h1, Chromium + Firefox)"
  scripts/test-ab.sh
fi
echo
echo "all test suites passed"
