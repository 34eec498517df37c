#!/usr/bin/env bash
# scripts/firefox.sh [options] [URL] — open the h3live player in Firefox over
# HTTP/3 (neqo, Firefox's own QUIC stack).
#
# Firefox uses h3 to an origin with a locally made certificate when the
# certificate is trusted in the profile's NSS store *and*
# network.http.http3.disable_when_third_party_roots_found is false (by default
# Firefox stays on HTTP/2, silently, for a chain that does not end at a built-in
# root). It finds the h3 listener through the Alt-Svc header of the origin's TCP
# listener on the same port: the first document comes over h2, the page's own
# requests over h3 once the QUIC connection is up (reload if the page's
# transport line still says h2). This script makes a fresh temporary profile
# with both (certutil from libnss3-tools, or Homebrew's nss on macOS), starts
# Firefox (Linux or macOS) on it and prints what it did; docs/firefox.md has the
# same steps for your own profile.
#
# Options:
#   --cert FILE      certificate the origin serves (default certs/cert.pem)
#   --h3-port PORT   port of the origin's h3 listener, for the default URL (default 4433)
#   --               pass the remaining arguments to Firefox (e.g. --headless --screenshot F)
# Environment: FIREFOX=/path/to/firefox overrides the browser.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
SAY_PREFIX=firefox
CERT="${H3LIVE_CERT:-$root/certs/cert.pem}"
H3PORT="${H3LIVE_H3_PORT:-$DEFAULT_H3_PORT}"
URL=""
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cert) CERT="$2"; shift 2 ;;
    --h3-port) H3PORT="$2"; shift 2 ;;
    --) shift; EXTRA+=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) say "unknown option $1 (--help)"; exit 2 ;;
    *) URL="$1"; shift ;;
  esac
done
[ -n "$URL" ] || URL="https://localhost:${H3PORT}/?stream=test"
[ -f "$CERT" ] || die "$CERT not found (start the origin once, or run: target/release/h3live cert)"
command -v certutil >/dev/null || die "certutil not found (apt-get install libnss3-tools; macOS: brew install nss)"

BROWSER="${FIREFOX:-}"
if [ -z "$BROWSER" ]; then
  for c in firefox firefox-esr "/Applications/Firefox.app/Contents/MacOS/firefox"; do
    if command -v "$c" >/dev/null 2>&1; then BROWSER="$(command -v "$c")"; break; fi
    if [ -x "$c" ]; then BROWSER="$c"; break; fi
  done
fi
[ -n "$BROWSER" ] || die "no Firefox found (apt-get install firefox-esr, or set FIREFOX=/path)"

PROFILE=$(mktemp -d "${TMPDIR:-/tmp}/h3live-firefox.XXXXXX")
trap 'rm -rf "$PROFILE"' EXIT
say "+ certutil -N -d sql:$PROFILE --empty-password"
certutil -N -d "sql:$PROFILE" --empty-password
say "+ certutil -A -d sql:$PROFILE -n h3live -t C,, -i $CERT"
certutil -A -d "sql:$PROFILE" -n h3live -t C,, -i "$CERT"
cat > "$PROFILE/user.js" <<'EOF'
// HTTP/3 to an origin whose certificate is trusted only in this profile.
user_pref("network.http.http3.disable_when_third_party_roots_found", false);
// A throwaway profile: no first-run pages, no default-browser question.
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
EOF
say "+ user.js: network.http.http3.disable_when_third_party_roots_found = false"
echo "+ $BROWSER --no-remote --profile $PROFILE ${EXTRA[*]+${EXTRA[*]}} $URL"
"$BROWSER" --no-remote --profile "$PROFILE" ${EXTRA[@]+"${EXTRA[@]}"} "$URL"
