#!/usr/bin/env bash
# scripts/test-player.sh — the player-side tests, as one command:
#   1. timecode decoder unit tests (node --test) on frames of the real encoder's output;
#   2. headless-Chromium end-to-end test (web/e2e/e2e.js): origin + real encoder on
#      free ports, the player page over HTTP/3 and over HTTP/1.1+TLS, ~20 s each.
# Installs what it needs when missing (Debian: ffmpeg, fonts-dejavu-core, chromium,
# nodejs, npm, openssl via apt-get as root; `npm ci` in web/), builds the release
# binary when target/release/h3live is missing.
# Extra arguments go to web/e2e/e2e.js (e.g. --duration 30 --arms h3,h1,h2).
# Environment: H3LIVE_BIN (binary to test), H3LIVE_NO_INSTALL=1 (never install).
# Ends with "test-player: N passed, N failed"; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
BIN="${H3LIVE_BIN:-$ROOT/target/release/h3live}"
say() { echo "[test-player] $*"; }

if [ "${H3LIVE_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
  command -v chromium >/dev/null || command -v google-chrome >/dev/null || [ -n "${CHROME:-}" ] || need+=(chromium)
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v openssl >/dev/null || need+=(openssl)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    say "installing Debian packages: ${need[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
      || { say "apt-get install failed"; exit 1; }
  fi
fi
if [ ! -d web/node_modules/dashjs ] || [ ! -d web/node_modules/ws ] || \
   [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "npm ci in web/"
  (cd web && npm ci --no-audit --no-fund) || { say "npm ci failed"; exit 1; }
fi
if [ ! -x "$BIN" ]; then
  say "building $BIN"
  cargo build --release || { say "cargo build failed"; exit 1; }
fi

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
say "timecode decoder unit tests"
(cd web && node --test test/timecode.test.js) 2>&1 | tee "$OUT"
UP=$(awk '/^# pass /{print $3}' "$OUT" | tail -1); UF=$(awk '/^# fail /{print $3}' "$OUT" | tail -1)
UP=${UP:-0}; UF=${UF:-1}

say "browser end-to-end test"
node web/e2e/e2e.js --bin "$BIN" "$@" 2>&1 | tee "$OUT"
E=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$OUT" | tail -1)
EP=$(echo "$E" | awk '{print $2}'); EF=$(echo "$E" | awk '{print $4}')
EP=${EP:-0}; EF=${EF:-1}

P=$((UP + EP)); F=$((UF + EF))
echo "test-player: $P passed, $F failed"
[ "$F" = 0 ]
