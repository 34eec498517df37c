#!/usr/bin/env bash
# scripts/chrome.sh [options] [URL] — open the h3live player in Chrome/Chromium
# over HTTP/3.
#
# Chrome only uses h3 to an origin with a self-signed certificate when the
# origin is named in --origin-to-force-quic-on=HOST:PORT *and* the
# certificate's SPKI SHA-256 is in --ignore-certificate-errors-spki-list.
# This script computes the hash from the certificate, starts Chrome/Chromium
# (Linux or macOS) with a fresh temporary profile and those flags, and prints
# the command it runs.
#
# Options:
#   --cert FILE      certificate the origin serves (default certs/cert.pem)
#   --h3-port PORT   UDP port of the origin's h3 listener (default 4433)
#   --host NAME      host to force QUIC on (default: the URL's host)
#   --headless       run headless (adds the flags for a machine without network)
#   --print          only print the command, do not run it
#   --               pass the remaining arguments to Chrome
# Environment: CHROME=/path/to/chrome overrides the browser.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
SAY_PREFIX=chrome
CERT="${H3LIVE_CERT:-$root/certs/cert.pem}"
H3PORT="${H3LIVE_H3_PORT:-$DEFAULT_H3_PORT}"
HOST=""
HEADLESS=0
PRINT=0
URL=""
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cert) CERT="$2"; shift 2 ;;
    --h3-port) H3PORT="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    --headless) HEADLESS=1; shift ;;
    --print) PRINT=1; shift ;;
    --) shift; EXTRA+=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) say "unknown option $1 (--help)"; exit 2 ;;
    *) URL="$1"; shift ;;
  esac
done
[ -n "$URL" ] || URL="https://${HOST:-localhost}:${H3PORT}/?stream=test"
if [ -z "$HOST" ]; then
  HOST="${URL#*://}"; HOST="${HOST%%/*}"; HOST="${HOST%%\?*}"
  case "$HOST" in
    \[*\]*) HOST="${HOST%%]*}]" ;;   # [::1]:4433 -> [::1]
    *:*) HOST="${HOST%%:*}" ;;
  esac
fi

[ -f "$CERT" ] || die "$CERT not found (start the origin once, or run: target/release/h3live cert)"
SPKI=$(spki_of "$CERT") || die "cannot read the public key of $CERT"

BROWSER="${CHROME:-}"
if [ -z "$BROWSER" ]; then
  for c in google-chrome google-chrome-stable chromium chromium-browser \
           "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
           "/Applications/Chromium.app/Contents/MacOS/Chromium" \
           "$HOME/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"; do
    if command -v "$c" >/dev/null 2>&1; then BROWSER="$(command -v "$c")"; break; fi
    if [ -x "$c" ]; then BROWSER="$c"; break; fi
  done
fi
if [ -z "$BROWSER" ]; then
  [ "$PRINT" = 1 ] || die "no Chrome/Chromium found (apt-get install chromium, or set CHROME=/path)"
  say "no Chrome/Chromium found (apt-get install chromium, or set CHROME=/path)"
  BROWSER=chromium
fi

# shellcheck disable=SC2016  # --print shows $(mktemp -d) for the reader's shell to expand
if [ "$PRINT" = 1 ]; then PROFILE='$(mktemp -d)'; else PROFILE=$(mktemp -d "${TMPDIR:-/tmp}/h3live-chrome.XXXXXX"); fi
ARGS=(--user-data-dir="$PROFILE" --no-first-run --no-default-browser-check
      --origin-to-force-quic-on="$HOST:$H3PORT"
      --ignore-certificate-errors-spki-list="$SPKI")
if [ "$HEADLESS" = 1 ]; then
  ARGS+=(--headless=new --disable-gpu --disable-background-networking --disable-component-update --disable-sync
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]")
  [ "$(id -u)" = 0 ] && ARGS+=(--no-sandbox)
fi
ARGS+=(${EXTRA[@]+"${EXTRA[@]}"} "$URL")

# Quote an argument for a POSIX shell only when it needs it.
shq() {
  case "$1" in
    *[!A-Za-z0-9_/.:=,+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
  esac
}
CMDLINE="$(shq "$BROWSER")"
for a in "${ARGS[@]}"; do
  case "$a" in
    --user-data-dir=\$*) CMDLINE="$CMDLINE $a" ;;
    *) CMDLINE="$CMDLINE $(shq "$a")" ;;
  esac
done
if [ "$PRINT" = 1 ]; then echo "$CMDLINE"; exit 0; fi
echo "+ $CMDLINE"
trap 'rm -rf "$PROFILE"' EXIT
"$BROWSER" "${ARGS[@]}"
