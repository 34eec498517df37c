#!/usr/bin/env bash
# ./run.sh — set up and run the h3live demo: origin + timecoded test-pattern
# encoder, then print the player URLs for each transport arm and the Chrome
# command line that makes Chrome use HTTP/3 with this origin's certificate.
#
# On a fresh Debian/Ubuntu (or macOS with Homebrew) it installs what is
# missing (ffmpeg, fonts, Node.js/npm, openssl, curl), runs `npm ci` in web/,
# builds the release binary and generates certificates.  Ctrl-C, or any
# exit (an error included), stops what it started, by PID (an EXIT trap): the
# encoder first (ffmpeg finishes its uploads cleanly), then the origin.
#
# Usage: ./run.sh [options]            (./run.sh --help)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=run

STREAM="${H3LIVE_STREAM:-test}"
SIZE="${H3LIVE_SIZE:-1280x720}"
FPS="${H3LIVE_FPS:-30}"
BITRATE="${H3LIVE_BITRATE:-2M}"
SEG="${H3LIVE_SEG_DURATION:-2}"
CHUNKING="${H3LIVE_CHUNKING:-every_frame}"
LATENCY="${H3LIVE_LATENCY:-}"
HOST="${H3LIVE_HOST:-localhost}"
HTTP_ADDR="${H3LIVE_HTTP_ADDR:-127.0.0.1}"
# The origin's default ports (defined once for the Rust code in src/conn.rs
# `ports`, for the scripts in scripts/lib.sh DEFAULT_*).
HTTP_PORT="${H3LIVE_HTTP_PORT:-$DEFAULT_HTTP_PORT}"
H3_PORT="${H3LIVE_H3_PORT:-$DEFAULT_H3_PORT}"
H1_PORT="${H3LIVE_H1_PORT:-$DEFAULT_H1_PORT}"
H2_PORT="${H3LIVE_H2_PORT:-$DEFAULT_H2_PORT}"
MOQ_PORT="${H3LIVE_MOQ_PORT:-$DEFAULT_MOQ_PORT}"
ENCODER=1
ORIGIN=1
ENCODER_ONLY=""
SETUP=1
BUILD=1
LADDER="${H3LIVE_LADDER_ON:-0}"
# Encoder source and video encoder (scripts/encoder.sh reads the same H3LIVE_* variables).
INPUT="${H3LIVE_INPUT:-testsrc}"
VENC="${H3LIVE_VIDEO_ENCODER:-libx264}"
ENC_EXTRA=()

usage() {
  cat <<EOF
Usage: ./run.sh [options]
  --stream NAME          stream name (default $STREAM)
  --size WxH             encoder picture size (default $SIZE)
  --fps N                encoder frame rate (default $FPS)
  --bitrate RATE         encoder video bitrate (default $BITRATE)
  --seg-duration S       segment duration in seconds (default $SEG)
  --chunking MODE        every_frame (default) or a fragment duration in seconds, e.g. 0.2
  --latency S            target latency (MPD and player ?latency=); default: the player's
  --host NAME            host name for the certificate and the printed URLs (default $HOST)
  --http-addr ADDR       address of the cleartext ingest/HTTP listener (default $HTTP_ADDR;
                         use 0.0.0.0 to accept an encoder on another machine)
  --http-port N          cleartext HTTP/1.1 port: ingest + playback (default $HTTP_PORT)
  --h3-port N            HTTP/3 (UDP) + HTTPS h2/h1 (TCP) port (default $H3_PORT)
  --h1-port N            HTTPS HTTP/1.1-only port (default $H1_PORT)
  --h2-port N            HTTPS h2-only port (default $H2_PORT)
  --moq-port N           Media over QUIC (WebTransport, UDP) port, and its read-only
                         cleartext HTTP twin on TCP (default $MOQ_PORT; 0: MoQ off)
  --ladder               ABR ladder: the encoder pushes 3 renditions (720p 2M, 432p 900k,
                         234p 300k) in one MPD; the player switches (?abr=throughput|l2a|lolp)
  --input SPEC           encoder picture source (default $INPUT): testsrc | FILE (looped) |
                         camera | v4l2:/dev/videoN | avfoundation:INDEX[:AUDIO] | ffmpeg:'ARGS'
  --video-encoder NAME   libx264 (default) | h264_nvenc | h264_vaapi | h264_qsv | h264_videotoolbox
  --audio MODE, --hw-device PATH, --camera-size WxH, --camera-format FMT
                         passed to scripts/encoder.sh (its --help; docs/sources.md)
  --no-encoder           run the origin only (push from elsewhere)
  --encoder-only HOST    run only the encoder, pushing to http://HOST:HTTP_PORT
                         (or give a full URL: --encoder-only http://host:8080)
  --no-setup             do not install system packages
  --no-build             do not run cargo build
Every option also has an H3LIVE_* environment variable (see the top of this script).
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --stream) STREAM="$2"; shift 2 ;;
    --size|--resolution) SIZE="$2"; shift 2 ;;
    --fps) FPS="$2"; shift 2 ;;
    --bitrate) BITRATE="$2"; shift 2 ;;
    --seg-duration) SEG="$2"; shift 2 ;;
    --chunking) CHUNKING="$2"; shift 2 ;;
    --latency|--target-latency) LATENCY="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    --http-addr) HTTP_ADDR="$2"; shift 2 ;;
    --http-port) HTTP_PORT="$2"; shift 2 ;;
    --h3-port) H3_PORT="$2"; shift 2 ;;
    --h1-port) H1_PORT="$2"; shift 2 ;;
    --h2-port) H2_PORT="$2"; shift 2 ;;
    --moq-port) MOQ_PORT="$2"; shift 2 ;;
    --ladder) LADDER=1; shift ;;
    --input) INPUT="$2"; shift 2 ;;
    --video-encoder) VENC="$2"; shift 2 ;;
    --audio|--hw-device|--camera-size|--camera-format) ENC_EXTRA+=("$1" "$2"); shift 2 ;;
    --no-encoder) ENCODER=0; shift ;;
    --encoder-only) ENCODER_ONLY="$2"; ORIGIN=0; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) say "unknown option $1"; usage >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------------ setup
install_packages() {
  local os; os="$(uname -s)"
  if [ "$os" = Darwin ]; then
    local need=()
    command -v ffmpeg >/dev/null || need+=(ffmpeg)
    if [ "$ORIGIN" = 1 ]; then
      command -v node >/dev/null || need+=(node)
      command -v openssl >/dev/null || need+=(openssl)
    fi
    [ ${#need[@]} -eq 0 ] && return 0
    command -v brew >/dev/null || die "missing ${need[*]}: install Homebrew (https://brew.sh) or install them yourself"
    say "installing with Homebrew: ${need[*]}"
    brew install "${need[@]}" || die "brew install failed"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    for c in ffmpeg curl; do command -v "$c" >/dev/null || die "$c is missing: please install it"; done
    return 0
  fi
  local pkgs=(ffmpeg fonts-dejavu-core curl ca-certificates)
  [ "$ORIGIN" = 1 ] && pkgs+=(openssl nodejs npm gcc libc6-dev)
  local need=()
  for p in "${pkgs[@]}"; do
    # nodejs from another source (NodeSource, nvm) also counts
    case "$p" in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  # Rust: the distribution's cargo only when it is new enough (rust-version 1.80)
  if [ "$ORIGIN" = 1 ] && [ "$BUILD" = 1 ] && ! command -v cargo >/dev/null; then
    local v; v=$(apt-cache policy cargo 2>/dev/null | awk '/Candidate:/{print $2}' | sed -E 's/^[0-9]+://') || v=""
    case "$v" in
      0.*|1.[0-9].*|1.[0-7][0-9].*|"(none)"|"") say "cargo: the distribution's (${v:-none}) is older than Rust 1.80: install Rust with rustup (https://rustup.rs)" ;;
      *) need+=(cargo) ;;
    esac
  fi
  apt_install ${need[@]+"${need[@]}"} || die "apt-get install ${need[*]} failed"
}

[ "$SETUP" = 1 ] && install_packages

mkdir -p out
BIN="$ROOT/target/release/h3live"
if [ "$ORIGIN" = 1 ]; then
  if [ ! -d web/node_modules/dashjs ] || [ ! -f web/dist/moq-watch.js ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    say "npm ci in web/ (dash.js, hls.js and the MoQ player from the npm registry, pinned by web/package-lock.json; builds web/dist/)"
    (cd web && npm ci --no-audit --no-fund) || die "npm ci failed"
  fi
  if [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), then re-run ./run.sh"
    say "cargo build --release"
    cargo build --release || die "cargo build failed"
  fi
  [ -x "$BIN" ] || die "$BIN missing (cargo build --release)"
  # certificate: generate when missing or when it does not name --host
  NEWCERT=0
  if [ ! -f certs/cert.pem ] || [ ! -f certs/key.pem ]; then NEWCERT=1
  else
    case "$HOST" in
      localhost|127.0.0.1|::1) ;;  # always in the generated certificate
      *) openssl x509 -in certs/cert.pem -noout -text 2>/dev/null | grep -E "(DNS|IP Address):$HOST(,|\$| )" >/dev/null || NEWCERT=1 ;;
    esac
  fi
  if [ "$NEWCERT" = 1 ]; then
    say "generating certs/cert.pem and certs/key.pem for $HOST"
    HOSTARGS=(); [ "$HOST" != localhost ] && HOSTARGS=(--host "$HOST")
    "$BIN" cert --out certs ${HOSTARGS[@]+"${HOSTARGS[@]}"} >/dev/null || die "h3live cert failed"
  fi
fi

# --------------------------------------------------------------- processes
set -m   # children get their own process groups: Ctrl-C reaches only this script
ORIGIN_PID=""
ENCODER_PID=""
# On every exit (Ctrl-C, an error, the origin or the encoder ending): stop what
# this script started, the encoder first (ffmpeg ends its uploads), then the origin.
cleanup() {
  trap '' INT TERM HUP
  if alive "$ENCODER_PID"; then say "stopping encoder (pid $ENCODER_PID): ffmpeg ends its uploads"; fi
  stop_pid "$ENCODER_PID" 15 encoder
  if alive "$ORIGIN_PID"; then say "stopping origin (pid $ORIGIN_PID)"; fi
  stop_pid "$ORIGIN_PID" 10 origin
  say "stopped"
}

case "$HTTP_ADDR" in *:*) HTTP_LISTEN="[$HTTP_ADDR]:$HTTP_PORT" ;; *) HTTP_LISTEN="$HTTP_ADDR:$HTTP_PORT" ;; esac
case "$HTTP_ADDR" in
  127.0.0.1|0.0.0.0|::|::1) http_base="http://127.0.0.1:$HTTP_PORT" ;;  # how this machine reaches it
  *:*) http_base="http://[$HTTP_ADDR]:$HTTP_PORT" ;;
  *) http_base="http://$HTTP_ADDR:$HTTP_PORT" ;;
esac
[ "$HTTP_ADDR" = "::1" ] && http_base="http://[::1]:$HTTP_PORT"

ENC_ARGS=(--stream "$STREAM" --size "$SIZE" --fps "$FPS" --bitrate "$BITRATE" --seg-duration "$SEG" --chunking "$CHUNKING")
[ -n "$LATENCY" ] && ENC_ARGS+=(--target-latency "$LATENCY")
[ "$LADDER" = 1 ] && ENC_ARGS+=(--ladder)
ENC_ARGS+=(--input "$INPUT" --video-encoder "$VENC" ${ENC_EXTRA[@]+"${ENC_EXTRA[@]}"})

if [ -n "$ENCODER_ONLY" ]; then
  case "$ENCODER_ONLY" in
    *://*) target="$ENCODER_ONLY" ;;                      # full URL
    \[*\]:*) target="http://$ENCODER_ONLY" ;;              # [v6]:port
    *:*:*) target="http://[$ENCODER_ONLY]:$HTTP_PORT" ;;  # bare IPv6 address
    *:*) target="http://$ENCODER_ONLY" ;;                 # host:port
    *) target="http://$ENCODER_ONLY:$HTTP_PORT" ;;
  esac
  say "encoder only: pushing stream '$STREAM' to $target; Ctrl-C stops it cleanly"
  exec scripts/encoder.sh --origin "$target" "${ENC_ARGS[@]}"
fi

trap cleanup EXIT
trap 'echo >&2; exit 0' INT TERM HUP   # Ctrl-C is the normal way to stop the demo
say "starting origin (log: out/origin.log)"
MOQ_ARGS=()
[ "$MOQ_PORT" != 0 ] && MOQ_ARGS=(--moq "[::]:$MOQ_PORT")
"$BIN" serve --http "$HTTP_LISTEN" --h3 "[::]:$H3_PORT" --https "[::]:$H3_PORT" \
  --https-h1 "[::]:$H1_PORT" --https-h2 "[::]:$H2_PORT" \
  --cert certs/cert.pem --key certs/key.pem --web-dir web --state-dir out/state \
  ${MOQ_ARGS[@]+"${MOQ_ARGS[@]}"} > out/origin.log 2>&1 &
ORIGIN_PID=$!
wait_url "$http_base/time" 10 "$ORIGIN_PID" || {
  grep -v "^ \{2,\}\|^Stack backtrace" out/origin.log | tail -n 15 >&2 || true
  die "origin did not come up (ports in use? see out/origin.log)"
}
say "origin is up (pid $ORIGIN_PID)"

if [ "$ENCODER" = 1 ]; then
  say "starting encoder: ${SIZE}@${FPS} ${BITRATE}, ${SEG}s segments, chunking $CHUNKING, input $INPUT, $VENC (log: out/encoder.log)"
  scripts/encoder.sh --origin "$http_base" "${ENC_ARGS[@]}" > out/encoder.log 2>&1 &
  ENCODER_PID=$!
  wait_url "$http_base/live/$STREAM/manifest.mpd" 30 "$ENCODER_PID" || { tail -n 30 out/encoder.log >&2 || true; die "the manifest did not go live"; }
  say "manifest is live: $http_base/live/$STREAM/manifest.mpd"
fi

Q="?stream=$STREAM"; [ -n "$LATENCY" ] && Q="$Q&latency=$LATENCY"
H="$HOST"; case "$H" in *:*) H="[$H]" ;; esac
clear_base="$http_base"
case "$HTTP_ADDR" in 0.0.0.0|::) clear_base="http://$H:$HTTP_PORT" ;; esac
H3_URL="https://$H:$H3_PORT/$Q"
cat <<EOF

  Player URLs (same page, the URL picks the transport arm):
    HTTP/3            $H3_URL
    HTTP/2            https://$H:$H2_PORT/$Q
    HTTP/1.1 + TLS    https://$H:$H1_PORT/$Q
    HTTP/1.1 clear    $clear_base/$Q
EOF
[ -f web/compare.html ] && echo "    compare (h3/h1/h2 side by side)  https://$H:$H3_PORT/compare.html$Q&h3port=$H3_PORT&h1port=$H1_PORT&h2port=$H2_PORT"
cat <<EOF

  LL-HLS from the same ingest (generated by the origin; hls.js on the page, or Safari natively):
    player, hls.js    https://$H:$H3_PORT/$Q&format=hls   (any arm's port: add &format=hls)
    playlist          https://$H:$H3_PORT/live/$STREAM/hls.m3u8   (Safari/AVPlayer: open this; see docs/ll-hls.md)
EOF
if [ "$MOQ_PORT" != 0 ]; then
  cat <<EOF

  Media over QUIC from the same ingest (moq-lite over WebTransport, docs/moq.md):
    player, MoQ       https://$H:$H3_PORT/$Q&format=moq&moqport=$MOQ_PORT   (the MoQ project's player, WebCodecs)
    compare with MoQ  https://$H:$H3_PORT/compare.html$Q&arms=h3,moq,h1&h3port=$H3_PORT&h1port=$H1_PORT&moqport=$MOQ_PORT
    relay URL         https://$H:$MOQ_PORT/   broadcast '$STREAM', tracks from its catalog.json
    with @moq/watch   url=http://$H:$MOQ_PORT/ (fetches /certificate.sha256 there) name=$STREAM
    certificate hash  $clear_base/certificate.sha256   (serverCertificateHashes, ECDSA, 13 days)
EOF
  # A loopback page is a secure context over cleartext HTTP: WebTransport needs no flag there.
  case "$clear_base" in http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*)
    echo "    player, no flags  $clear_base/$Q&format=moq&moqport=$MOQ_PORT   (this machine: the page pins the MoQ certificate itself)" ;;
  esac
fi
cat <<EOF

  Open it over HTTP/3 in Chrome/Chromium (fresh profile, QUIC forced for this certificate):
    $(scripts/chrome.sh --print --cert certs/cert.pem --h3-port "$H3_PORT" "$H3_URL")
  or simply: scripts/chrome.sh '$H3_URL'

  Ingest: ffmpeg PUTs to $clear_base/live/<stream>/manifest.mpd   Logs: out/origin.log out/encoder.log
  Clock page to film with a camera (--input camera): $clear_base/clock.html   (docs/sources.md)
EOF
if [ "$ENCODER" = 0 ]; then
  cat <<EOF
  No encoder started. Push one from this or another machine (stream '$STREAM'):
    ./run.sh --encoder-only $H:$HTTP_PORT --stream $STREAM
    scripts/encoder.sh --origin $clear_base --stream $STREAM
EOF
  case "$HTTP_ADDR" in 127.0.0.1|::1) echo "  (ingest listens on $HTTP_ADDR only: use --http-addr 0.0.0.0 to accept a remote encoder)";; esac
fi
echo "  Ctrl-C stops everything."

# Stay in the foreground until Ctrl-C or until the origin or the encoder exits.
while :; do
  if ! alive "$ORIGIN_PID"; then
    tail -n 20 out/origin.log >&2 || true
    die "origin exited; see out/origin.log"
  fi
  if [ "$ENCODER" = 1 ] && ! alive "$ENCODER_PID"; then die "encoder exited; see out/encoder.log"; fi
  sleep 1 &
  wait $! 2>/dev/null || true   # returns at once when a signal arrives
done
