#!/usr/bin/env bash
# quic-interop-runner endpoint, server role, for h3live's interop-server.
#
# Contract (https://github.com/quic-interop/quic-interop-runner): ROLE=server,
# TESTCASE names the test; serve the files of /www on port 443 with
# /certs/cert.pem + /certs/priv.key; SSLKEYLOGFILE and QLOGDIR are honoured;
# exit 127 for a test case this server does not support.
# Everything is overridable so it also runs on loopback as an ordinary user:
#   H3LIVE_BIN (default: target/release/h3live, else h3live on PATH)
#   WWW (/www)  PORT (443)  LISTEN_ADDR ([::])  CERTS (/certs)
#   CERT_FILE ($CERTS/cert.pem)  KEY_FILE ($CERTS/priv.key)
#   PORTS_FILE: write the bound port there as `quic=PORT` (for PORT=0)
# Cases other than http3 use HTTP/0.9 over ALPN hq-interop; the server offers
# both ALPNs on every connection.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
SAY_PREFIX=run_endpoint.sh   # interop/run.sh strips "[...] " to show why a case is unsupported

ROLE=${ROLE:-server}
TESTCASE=${TESTCASE:-}
if [ "$ROLE" != server ]; then
  say "only ROLE=server is implemented (got ROLE=$ROLE)"
  exit 127
fi

BIN=${H3LIVE_BIN:-}
if [ -z "$BIN" ]; then
  if [ -x "$here/target/release/h3live" ]; then BIN="$here/target/release/h3live"; else BIN=h3live; fi
fi
CERTS=${CERTS:-/certs}
args=(
  interop-server
  --listen "${LISTEN_ADDR:-[::]}:${PORT:-443}"
  --www "${WWW:-/www}"
  --cert "${CERT_FILE:-$CERTS/cert.pem}"
  --key "${KEY_FILE:-$CERTS/priv.key}"
)
[ -n "${QLOGDIR:-}" ] && args+=(--qlog-dir "$QLOGDIR")
# Not in the runner's contract: with PORT=0, where the port it got is written.
[ -n "${PORTS_FILE:-}" ] && args+=(--ports-file "$PORTS_FILE")

case "$TESTCASE" in
  handshake|transfer|multiplexing|longrtt|blackhole|http3|keyupdate|ecn|resumption) ;;
  # Network-side cases: nothing to configure on the server (quinn follows a
  # client's NAT rebinding; loss and corruption are the simulator's job).
  # Not exercised by interop/run.sh (no netem on the machine it was written on).
  handshakeloss|transferloss|handshakecorruption|transfercorruption|goodput|crosstraffic|rebind-port|rebind-addr) ;;
  # The runner's keyupdate test has the client update its keys; quinn follows
  # (and also updates on its own after 10..1000 packets of a key phase).
  retry) args+=(--retry) ;;
  chacha20) args+=(--chacha20) ;;
  zerortt) args+=(--zero-rtt) ;;
  v2)
    say "QUIC v2 (RFC 9369) is not implemented by quinn 0.11"
    exit 127 ;;
  connectionmigration)
    say "no preferred_address offered (connectionmigration)"
    exit 127 ;;
  *)
    say "unsupported test case '${TESTCASE}'"
    exit 127 ;;
esac

say "TESTCASE=$TESTCASE: $BIN ${args[*]}"
exec "$BIN" "${args[@]}"
