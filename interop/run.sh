#!/usr/bin/env bash
# Local interop matrix on loopback: h3live's interop endpoint (run_endpoint.sh)
# and origin (h3live serve) against independent clients from package
# registries:
#   aioquic  (PyPI)            hq-interop and h3     interop/aioquic_client.py, tests/py/h3_get.py
#   ngtcp2   (Debian ngtcp2-client, gtlsclient)  h3 only: hq-interop cases run over h3
#   chromium (Debian)          h3 (forced QUIC + SPKI pin)   interop/fetch.html
#   firefox  (Debian firefox-esr, neqo)  h3 (certificate in the profile's NSS store, h3 by
#                              the testing Alt-Svc mapping)  interop/firefox_fetch.mjs + fetch.html
#   curl     (Debian, 7.88)    HTTP/1.1 and HTTP/2 over TLS against h3live serve
# For each client x case it downloads random files (5 KB, 10 KB, 500 KB, 10 MB;
# keyupdate adds 30 MB), compares SHA-256 and checks the case's own condition
# from client output or the server's qlog. The live cell reads a segment from
# h3live serve while curl uploads it; the client must have the first bytes
# before the rest of the upload is sent. A cell whose client aborted by itself
# (its own log names its library's error and the server saw the client close
# the connection) is marked as the client's failure, not the server's.
# Prints the matrix, writes it to OUT/matrix.md, exits 1 if a supported cell
# failed (either side). Every process it starts is stopped on exit.
#
# Usage: interop/run.sh [--quick] [--out DIR] [--bin PATH] [--no-install] [--keep]
#   --quick       a subset for CI: no 10 MB file, fewer cases (see QUICK_CASES)
#   --out DIR     output folder (default interop/out)
#   --bin PATH    h3live binary (default: cargo build --release, target/release/h3live)
#   --no-install  do not apt-get/pip install missing clients
#   --keep        keep the www files, logs and qlogs (default: only logs of failed cells and matrix.md)
#   --cases a,b   only these cases;  --clients x,y  only these clients
set -euo pipefail   # the cells run in $(...), where bash turns -e off: each returns its own status
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=interop SAY_CLOCK=elapsed

QUICK=0; OUT=interop/out; BIN=""; INSTALL=1; KEEP=0; ONLY_CASES=""; ONLY_CLIENTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    --cases) ONLY_CASES=$2; shift ;;
    --clients) ONLY_CLIENTS=$2; shift ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | sed "\$d"; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
  shift
done

T0=$(date +%s)

# ------------------------------------------------------------ dependencies
PY=${H3LIVE_PYTHON:-$ROOT/.venv/bin/python}
if [ "$INSTALL" = 1 ]; then
  need=()
  command -v gtlsclient >/dev/null || need+=(ngtcp2-client)
  command -v chromium >/dev/null || need+=(chromium)
  command -v firefox-esr >/dev/null || command -v firefox >/dev/null || need+=(firefox-esr)
  command -v certutil >/dev/null || need+=(libnss3-tools)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  apt_install ${need[@]+"${need[@]}"}
  if ! "$PY" -c 'import aioquic' 2>/dev/null; then
    say "creating .venv with aioquic"
    python3 -m venv .venv && .venv/bin/pip install -q --disable-pip-version-check -r tests/py/requirements.txt
    PY=$ROOT/.venv/bin/python
  fi
fi
if [ -z "$BIN" ]; then
  say "cargo build --release"
  cargo build --release --locked -q || die "build failed"
  BIN=$ROOT/target/release/h3live
fi
BIN=$(realpath "$BIN")

# ------------------------------------------------------------ workspace
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
W=$(mktemp -d /tmp/h3live-interop.XXXXXX)
PIDS=()
cleanup() {
  # Every process group start() made, including those started in subshells.
  local p
  for p in ${PIDS[@]+"${PIDS[@]}"} $(cat "$W/pids" 2>/dev/null || true); do stop_pid -g "$p" 5; done
  if [ "$KEEP" = 1 ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start "$@" in its own process group, log to $1-named file; sets $STARTED.
start() {
  local logf=$1; shift
  setsid "$@" >"$logf" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  echo "$STARTED" >>"$W/pids"
}
stop() {  # pid: stop the process group start() made
  stop_pid -g "$1" 5
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}

"$BIN" cert --out "$W/certs" >/dev/null
CERT=$W/certs/cert.pem; KEY=$W/certs/key.pem
SPKI=$("$BIN" cert --out "$W/certs" --show | sed -n 's/^SPKI SHA-256 (base64): //p')

WWW=$W/www; mkdir -p "$WWW"
SIZES=(5000 10000 500000 10000000)
[ "$QUICK" = 1 ] && SIZES=(5000 10000 500000)
FILES=()
for s in "${SIZES[@]}"; do
  f="f$s.bin"; head -c "$s" /dev/urandom >"$WWW/$f"; FILES+=("/$f")
done
MUX=()
for i in $(seq 1 30); do head -c $((1000 + i * 97)) /dev/urandom >"$WWW/m$i.bin"; MUX+=("/m$i.bin"); done
cp interop/fetch.html "$WWW/fetch.html"
sha_of() { sha256sum "$WWW${1}" | cut -d' ' -f1; }
# check_dir DIR PATHS...: every file downloaded into DIR matches.
check_dir() {
  local d=$1 p; shift
  for p in "$@"; do
    [ -f "$d/$(basename "$p")" ] || { echo "missing $p"; return 1; }
    [ "$(sha256sum "$d/$(basename "$p")" | cut -d' ' -f1)" = "$(sha_of "$p")" ] || { echo "SHA-256 mismatch on $p"; return 1; }
  done
}

CASES=(handshake transfer multiplexing retry chacha20 resumption zerortt keyupdate ecn v2 http3 live h1-tls h2)
QUICK_CASES=(handshake transfer retry chacha20 resumption zerortt http3 live h1-tls h2)
[ "$QUICK" = 1 ] && CASES=("${QUICK_CASES[@]}")
CLIENTS=(aioquic ngtcp2 chromium firefox curl)
[ -n "$ONLY_CASES" ] && IFS=, read -ra CASES <<<"$ONLY_CASES"
[ -n "$ONLY_CLIENTS" ] && IFS=, read -ra CLIENTS <<<"$ONLY_CLIENTS"
# The keyupdate case's transfer lasts long enough for a key update 1 s in.
case " ${CASES[*]} " in *" keyupdate "*) head -c 30000000 /dev/urandom >"$WWW/f30000000.bin" ;; esac
declare -A RES REASON

# Files each case downloads (the runner's shapes: one small file; several
# sizes on one connection; many small files; http3: 3 files in parallel).
case_paths() {
  case "$1" in
    handshake) echo "/f5000.bin" ;;
    multiplexing) echo "${MUX[*]}" ;;
    http3) echo "/f5000.bin /f10000.bin /f500000.bin" ;;
    keyupdate) echo "${FILES[*]} /f30000000.bin" ;;
    *) echo "${FILES[*]}" ;;
  esac
}

qlog_count() { find "$1" -name '*.sqlog' 2>/dev/null | wc -l; }
qlog_0rtt() { cat "$1"/*.sqlog 2>/dev/null | grep -c '"packet_type":"0RTT"'; }

# ------------------------------------------------------------ clients
# Each cell function prints a reason line on failure and returns non-zero;
# return 2 with a reason means "unsupported".

cell_aioquic() {  # case port qlogdir dir
  local c=$1 port=$2 q=$3 d=$4 alpn=hq opts=() paths
  read -ra paths <<<"$(case_paths "$c")"
  case "$c" in
    http3) alpn=h3 ;;
    retry|handshake|transfer|multiplexing) ;;
    chacha20) opts+=(--chacha20) ;;
    resumption) opts+=(--resumption) ;;
    zerortt) opts+=(--zero-rtt) ;;
    keyupdate) opts+=(--key-update) ;;
    ecn) echo "aioquic neither marks nor reads ECN"; return 2 ;;
    *) echo "n/a"; return 2 ;;
  esac
  local before; before=$(qlog_count "$q")
  timeout 120 "$PY" interop/aioquic_client.py 127.0.0.1 "$port" "${paths[@]}" --alpn "$alpn" --ca "$CERT" \
    --out "$d" "${opts[@]}" >"$d/client.json" 2>"$d/client.err" || { echo "client failed: $(tail -c 300 "$d/client.json" "$d/client.err" | tr '\n' ' ')"; return 1; }
  check_dir "$d" "${paths[@]}" || return 1
  local conns=$(( $(qlog_count "$q") - before ))
  "$PY" - "$c" "$conns" "$q" "$d/client.json" 2>&1 <<'EOF'
import json, sys, glob
case, conns, q, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.load(open(path)); cs = r["connections"]
def fail(msg): print(msg); sys.exit(1)
if case in ("handshake", "transfer", "multiplexing", "http3", "chacha20", "keyupdate") and conns != 1:
    fail(f"{conns} connections (server qlog), expected 1")
if case == "retry" and not cs[0]["retry"]: fail("no Retry seen by the client")
if case == "chacha20" and cs[0]["cipher"] != "CHACHA20_POLY1305_SHA256": fail(f"cipher {cs[0]['cipher']}")
if case in ("resumption", "zerortt") and not (len(cs) == 2 and cs[1]["resumed"]): fail("second connection not resumed")
if case == "zerortt":
    if not cs[1]["early_data_accepted"]: fail("0-RTT not accepted")
    n = sum(open(f).read().count('"packet_type":"0RTT"') for f in glob.glob(q + "/*.sqlog"))
    if n == 0: fail("server qlog shows no 0-RTT packet")
if case == "keyupdate" and cs[0]["key_phase"]["send"] == 0: fail("key phase never changed")
EOF
}

ngtcp2_run() {  # port dir log paths... (extra gtlsclient options in NG_OPTS)
  local port=$1 d=$2 logf=$3; shift 3
  local urls=() p
  for p in "$@"; do urls+=("https://localhost:$port$p"); done
  mkdir -p "$d"
  timeout 120 gtlsclient --exit-on-all-streams-close --no-quic-dump --no-http-dump --download="$d" \
    "${NG_OPTS[@]}" 127.0.0.1 "$port" "${urls[@]}" >"$logf" 2>&1
}

cell_ngtcp2() {  # case port qlogdir dir
  local c=$1 port=$2 q=$3 d=$4 paths
  read -ra paths <<<"$(case_paths "$c")"
  NG_OPTS=()
  local before; before=$(qlog_count "$q")
  case "$c" in
    handshake|transfer|multiplexing|http3|retry|ecn) ;;
    chacha20) NG_OPTS=(--ciphers='NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305') ;;
    # One key update, 1 s after the handshake: past quinn's own early key
    # update (within its first 1000 packets) and 3 PTOs after it, so the
    # client's update is allowed (gtlsclient aborts the connection itself
    # when ngtcp2 refuses one: ERR_INVALID_STATE), and still mid-transfer
    # (this case adds a 30 MB file).
    keyupdate) NG_OPTS=(--key-update=1s) ;;
    resumption|zerortt)
      NG_OPTS=(--session-file="$d/session" --tp-file="$d/tp")
      [ "$c" = resumption ] && NG_OPTS+=(--disable-early-data)
      ngtcp2_run "$port" "$d/first" "$d/first.log" "${paths[0]}" || { echo "first connection failed: $(tail -3 "$d/first.log")"; return 1; }
      ;;
    *) echo "n/a"; return 2 ;;
  esac
  ngtcp2_run "$port" "$d" "$d/client.log" "${paths[@]}" || { echo "gtlsclient failed: $(tail -2 "$d/client.log" | tr '\n' ' ')"; return 1; }
  check_dir "$d" "${paths[@]}" || return 1
  local conns=$(( $(qlog_count "$q") - before ))
  case "$c" in
    handshake|transfer|multiplexing|http3|chacha20|keyupdate|ecn|retry)
      [ "$conns" = 1 ] || { echo "$conns connections (server qlog), expected 1"; return 1; } ;;
  esac
  case "$c" in
    retry) grep -q "type=Retry" "$d/client.log" || { echo "no Retry in the client log"; return 1; } ;;
    chacha20) grep -q "Negotiated cipher suite is CHACHA20-POLY1305" "$d/client.log" || { grep -m1 'Negotiated cipher' "$d/client.log"; return 1; } ;;
    ecn)
      local n; n=$(grep -c "Received packet.*ecn=0x2" "$d/client.log")
      [ "$n" -gt 0 ] || { echo "no ECT(0)-marked packet received from the server"; return 1; }
      grep -q "path is ECN capable" "$d/client.log" || { echo "server did not echo ECN counts (path not ECN capable)"; return 1; } ;;
    keyupdate)
      grep -q "Initiate key update" "$d/client.log" || { echo "the client did not initiate a key update during the transfer"; return 1; }
      grep -q "pkt tx .*type=1RTT k=1" "$d/client.log" || { echo "client never sent with key phase 1"; return 1; } ;;
    resumption|zerortt)
      local full res
      full=$(grep -m1 -oE "rx [0-9]+ Handshake CRYPTO\(0x06\) offset=0 len=[0-9]+" "$d/first.log" | sed 's/.*len=//')
      res=$(grep -m1 -oE "rx [0-9]+ Handshake CRYPTO\(0x06\) offset=0 len=[0-9]+" "$d/client.log" | sed 's/.*len=//')
      # A resumed TLS 1.3 handshake carries no Certificate/CertificateVerify.
      [ -n "$res" ] && [ -n "$full" ] && [ "$res" -lt $((full - 200)) ] || { echo "not resumed (server handshake flight $full then $res bytes)"; return 1; }
      if [ "$c" = zerortt ]; then
        grep -q "type=0RTT" "$d/client.log" || { echo "client sent no 0-RTT packet"; return 1; }
        [ "$(qlog_0rtt "$q")" -gt 0 ] || { echo "server qlog shows no 0-RTT packet"; return 1; }
      fi ;;
  esac
  [ "$c" = http3 ] || echo "over h3 (gtlsclient has no hq-interop)"
  return 0
}

chromium_run() {  # port url resultfile
  local port=$1 url=$2 res=$3 ud; ud=$(mktemp -d "$W/chrome.XXXXXX")
  start "$res.stderr" chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$ud" \
    --host-resolver-rules='MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]' \
    --origin-to-force-quic-on="localhost:$port" --ignore-certificate-errors-spki-list="$SPKI" \
    --enable-logging=stderr --v=0 "$url"
  local pid=$STARTED ok=1
  for _ in $(seq 600); do
    if grep -q 'H3LIVE_RESULT' "$res.stderr"; then ok=0; break; fi
    sleep 0.1
  done
  stop "$pid"
  grep -m1 -o 'H3LIVE_RESULT {.*}' "$res.stderr" | sed 's/^H3LIVE_RESULT //' >"$res"
  return $ok
}

firefox_run() {  # port url resultfile: headless Firefox (interop/firefox_fetch.mjs) loads url
  timeout 120 node interop/firefox_fetch.mjs --cert "$CERT" --h3 "localhost:$1" --timeout 60 "$2" >"$3" 2>"$3.stderr"
}

cell_browser() {  # browser(chromium|firefox) case port qlogdir dir: fetch.html over h3
  local b=$1 c=$2 port=$3 q=$4 d=$5 paths
  case "$c" in
    http3|transfer) ;;
    *) echo "a browser offers no hq-interop and no control over Retry, ciphers, resumption or key updates"; return 2 ;;
  esac
  read -ra paths <<<"$(case_paths "$c")"
  local before list
  before=$(qlog_count "$q")
  list=$(IFS=,; echo "${paths[*]}")
  "${b}_run" "$port" "https://localhost:$port/fetch.html?files=$list" "$d/result.json" || { echo "no result from $b in 60 s"; return 1; }
  local conns=$(( $(qlog_count "$q") - before ))
  "$PY" - "$WWW" "$conns" "$d/result.json" "$b" 2>&1 <<'EOF' || return 1
import hashlib, json, sys
www, conns, path, browser = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.load(open(path))
if not r.get("ok"): print(r.get("error")); sys.exit(1)
for f in r["files"]:
    want = hashlib.sha256(open(www + f["path"], "rb").read()).hexdigest()
    if f["sha256"] != want: print(f"SHA-256 mismatch on {f['path']}"); sys.exit(1)
protos = set(r["protocols"]) | {r["page_protocol"]}
if protos != {"h3"}: print(f"protocols {sorted(map(str, protos))}"); sys.exit(1)
# Chromium opens a second, short QUIC connection of its own (seen in the
# server's qlog); the check is that every fetch rode the page's connection.
if r["new_connections"]: print(f"{r['new_connections']} fetches opened a new connection"); sys.exit(1)
if browser == "chromium":
    print(f"h3, no new connection for the fetches ({conns} QUIC connections in the server qlog)")
    sys.exit(0)
# Firefox opens no other connection: the page and every fetch on exactly one.
if conns != 1: print(f"{conns} QUIC connections in the server qlog, expected 1"); sys.exit(1)
print("h3, page and fetches on one QUIC connection")
EOF
}
cell_chromium() { cell_browser chromium "$@"; }
cell_firefox() { cell_browser firefox "$@"; }

cell_curl() {  # case port(https-h1 or https-h2) dir
  local c=$1 port=$2 d=$3 want opt
  case "$c" in
    h1-tls) want=1.1; opt=--http1.1 ;;
    h2) want=2; opt=--http2 ;;
    *) echo "curl 7.88 (Debian) has no HTTP/3"; return 2 ;;
  esac
  local args=() p
  for p in "${FILES[@]}"; do args+=(-o "$d/$(basename "$p")" "https://localhost:$port$p"); done
  curl -sS --fail "$opt" --cacert "$CERT" -w '%{http_version} %{num_connects}\n' "${args[@]}" >"$d/curl.out" 2>"$d/curl.err" \
    || { echo "curl failed: $(head -c 200 "$d/curl.err")"; return 1; }
  check_dir "$d" "${FILES[@]}" || return 1
  local v; v=$(sort -u <<<"$(cut -d' ' -f1 "$d/curl.out")")
  [ "$v" = "$want" ] || { echo "HTTP version $v"; return 1; }
  [ "$(awk '{s+=$2} END {print s}' "$d/curl.out")" = 1 ] || { echo "more than one TCP connection"; return 1; }
}

# ------------------------------------------------------------ live cell
# h3live serve: ingest on HTTP, h3 for the readers. Each h3 client asks for
# a segment; once the origin holds that request (h3live_held_reads), curl
# uploads the segment: its first chunk, then, once the client has the first
# bytes, the other 14, 0.2 s apart. Progressive = the first bytes reached the
# client while most of the upload was still to be sent (ordered by events,
# not by a time margin).
LIVE_CHUNKS=15
head -c $((LIVE_CHUNKS * 2000)) /dev/urandom >"$W/live.bin"
LIVE_SHA=$(sha256sum "$W/live.bin" | cut -d' ' -f1)
held_read() { curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null | grep -q '^h3live_held_reads [1-9]'; }
# upload HTTP_PORT PATH FIRST_FILE: the chunked upload; the rest waits (at
# most 20 s) for FIRST_FILE, which the caller's watcher writes when the client
# has the first bytes; "$FIRST_FILE.late" marks a wait that timed out.
upload() {
  local port=$1 path=$2 first=$3 i
  (
    dd if="$W/live.bin" bs=2000 skip=0 count=1 status=none
    wait_until 20 test -s "$first" || : >"$first.late"
    for i in $(seq 1 $((LIVE_CHUNKS - 1))); do sleep 0.2; dd if="$W/live.bin" bs=2000 skip="$i" count=1 status=none; done
  ) | curl -sS -T - -H 'Transfer-Encoding: chunked' -o /dev/null "http://127.0.0.1:$port$path"
}
# first_bytes_seen CLIENT DIR: the client has received the first bytes (its own report).
first_bytes_seen() {
  case "$1" in
    aioquic) grep -q '"event": "data"' "$2/events.jsonl" 2>/dev/null ;;
    ngtcp2) [ -s "$2/dl/seg-$1.m4s" ] ;;
    chromium|firefox) grep -q 'H3LIVE_FIRST' "$2/result.json.stderr" 2>/dev/null ;;
  esac
}
cell_live() {  # client h3port httpport dir
  local client=$1 p3=$2 p1=$3 d=$4 path="/live/interop/seg-$1.m4s" rp
  case "$client" in
    aioquic)
      timeout 30 "$PY" tests/py/h3_get.py "https://127.0.0.1:$p3$path" --ca "$CERT" >"$d/events.jsonl" 2>"$d/client.err" &
      rp=$! ;;
    ngtcp2)
      mkdir -p "$d/dl"
      NG_OPTS=(); (ngtcp2_run "$p3" "$d/dl" "$d/client.log" "$path") &
      rp=$! ;;
    chromium)
      chromium_run "$p3" "https://localhost:$p3/fetch.html?live=$path" "$d/result.json" &
      rp=$! ;;
    firefox)
      firefox_run "$p3" "https://localhost:$p3/fetch.html?live=$path" "$d/result.json" &
      rp=$!
      # Firefox takes seconds to start: wait until the page's script has run (its
      # fetch is on its way), not a fixed time.
      wait_until 60 grep -q 'page loaded' "$d/result.json.stderr" || { echo "Firefox did not load the page in 60 s"; wait "$rp"; return 1; } ;;
    *) echo "curl 7.88 has no HTTP/3"; return 2 ;;
  esac
  wait_until 30 held_read "$p1" || { echo "the client's request never reached the origin"; return 1; }
  (wait_until 30 first_bytes_seen "$client" "$d" && date +%s.%N >"$d/first") &
  upload "$p1" "$path" "$d/first"
  wait "$rp" || { echo "client failed"; return 1; }
  case "$client" in
    aioquic) grep -q "\"sha256\": \"$LIVE_SHA\"" "$d/events.jsonl" || { echo "SHA-256 mismatch"; return 1; } ;;
    ngtcp2) [ "$(sha256sum "$d/dl/seg-$client.m4s" | cut -d' ' -f1)" = "$LIVE_SHA" ] || { echo "SHA-256 mismatch"; return 1; } ;;
    chromium)
      "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); f=r["files"][0]; sys.exit(0 if f["sha256"]==sys.argv[2] and r["page_protocol"]=="h3" else 1)' \
        "$d/result.json" "$LIVE_SHA" || { echo "wrong bytes or not h3: $(head -c 300 "$d/result.json")"; return 1; } ;;
    firefox)
      "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); f=r["files"][0]; sys.exit(0 if f["sha256"]==sys.argv[2] and r["page_protocol"]=="h3" and set(r["protocols"])=={"h3"} else 1)' \
        "$d/result.json" "$LIVE_SHA" || { echo "wrong bytes or not h3: $(head -c 300 "$d/result.json")"; return 1; } ;;
  esac
  [ ! -e "$d/first.late" ] || { echo "no first bytes at the client within 20 s of the first chunk: not progressive"; return 1; }
  echo "first bytes at the client before $((LIVE_CHUNKS - 1)) of $LIVE_CHUNKS chunks were sent"
}

# client_abort DIR SERVER_LOG: why the cell's client failed by itself, if
# it did: its own log reports an error of its own library (gtlsclient prints
# "ngtcp2_...: ERR_..." and then closes the connection) and the server saw
# the client close the connection. Prints nothing and fails otherwise.
client_abort() {
  local own="" f
  for f in "$1/client.log" "$1/first.log" "$1/client.err"; do
    [ -f "$f" ] && own=$(grep -m1 -E '^ngtcp2_[a-z_]+: ERR_' "$f") && break
  done
  [ -n "$own" ] || return 1
  # The server logs how the connection ended once it has wound it down.
  wait_until 5 grep -q 'connection ended.*closed by the client' "$2" || return 1
  echo "the client aborted by itself: its log says \"$own\", and the server saw it close the connection"
}

# ------------------------------------------------------------ run
record() {  # client case rc reason (rc 0 pass, 2 unsupported, 3 the client's own failure, else fail)
  case "$3" in
    0) RES[$1,$2]=pass ;;
    2) RES[$1,$2]=unsupported ;;
    3) RES[$1,$2]=client ;;
    *) RES[$1,$2]=fail ;;
  esac
  REASON[$1,$2]=$4
  say "$1 × $2: ${RES[$1,$2]}${4:+ ($4)}"
}

for c in "${CASES[@]}"; do
  case "$c" in
    live|h1-tls|h2)
      mkdir -p "$W/$c"
      start "$W/$c/server.log" env RUST_LOG=info "$BIN" serve --http "127.0.0.1:0" --h3 "[::]:0" --https off \
        --https-h1 "[::]:0" --https-h2 "[::]:0" --ports-file "$W/$c/ports" --cert "$CERT" --key "$KEY" --web-dir "$WWW" --hold 5s \
        --state-dir "$(new_state_dir "$W/$c")"
      SPID=$STARTED
      wait_ports "$W/$c/ports" 10 "$SPID" || say "h3live serve did not start"
      P1=$(port_of "$W/$c/ports" http) P3=$(port_of "$W/$c/ports" h3)
      PH1=$(port_of "$W/$c/ports" https_h1) PH2=$(port_of "$W/$c/ports" https_h2)
      for cl in "${CLIENTS[@]}"; do
        d="$W/$c/$cl"; mkdir -p "$d"
        rc=0
        if [ "$c" = live ]; then reason=$(cell_live "$cl" "$P3" "$P1" "$d") || rc=$?
        elif [ "$cl" = curl ]; then reason=$(cell_curl "$c" "$([ "$c" = h1-tls ] && echo "$PH1" || echo "$PH2")" "$d") || rc=$?
        else reason="HTTP/1.1 and HTTP/2 cells are for curl"; rc=2; fi
        record "$cl" "$c" "$rc" "$reason"
      done
      stop "$SPID"
      continue ;;
  esac
  Q="$W/$c/qlog"; mkdir -p "$Q"
  start "$W/$c/server.log" env ROLE=server TESTCASE="$c" PORT=0 PORTS_FILE="$W/$c/ports" WWW="$WWW" CERT_FILE="$CERT" \
    KEY_FILE="$KEY" QLOGDIR="$Q" SSLKEYLOGFILE="$W/$c/keys.log" H3LIVE_BIN="$BIN" interop/run_endpoint.sh
  SPID=$STARTED
  PORT=""
  wait_ports "$W/$c/ports" 10 "$SPID" && PORT=$(port_of "$W/$c/ports" quic)
  if [ -z "$PORT" ]; then
    src=0; wait "$SPID" || src=$?
    for cl in "${CLIENTS[@]}"; do
      if [ "$src" = 127 ]; then record "$cl" "$c" 2 "server: $(tail -1 "$W/$c/server.log" | sed 's/^\[[^]]*\] //')"
      else record "$cl" "$c" 1 "server did not start (exit $src)"; fi
    done
    continue
  fi
  for cl in "${CLIENTS[@]}"; do
    d="$W/$c/$cl"; mkdir -p "$d"
    rc=0
    if [ "$cl" = curl ]; then reason=$(cell_curl "$c" 0 "$d") || rc=$?
    else reason=$(cell_"$cl" "$c" "$PORT" "$Q" "$d") || rc=$?; fi
    if [ "$rc" = 1 ] && why=$(client_abort "$d" "$W/$c/server.log"); then rc=3; reason="$why ($reason)"; fi
    record "$cl" "$c" "$rc" "$reason"
  done
  stop "$SPID"
done

# ------------------------------------------------------------ report
ELAPSED=$(( $(date +%s) - T0 ))
md=$OUT/matrix.md
{
  echo "# h3live interop matrix"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $( [ "$QUICK" = 1 ] && echo quick || echo full ) run, ${ELAPSED} s. h3live $("$BIN" --version | cut -d' ' -f2),"
  echo "aioquic $("$PY" -c 'import aioquic; print(aioquic.__version__)'), ngtcp2-client $(dpkg-query -W -f='${Version}' ngtcp2-client 2>/dev/null), $(chromium --version 2>/dev/null | head -1), $( (firefox-esr --version || firefox --version) 2>/dev/null | head -1), $(curl --version | head -1 | cut -d' ' -f1-2)."
  echo "Files: $(printf '%s ' "${SIZES[@]}")bytes (random), SHA-256 compared."
  echo
  printf '| client |'; for c in "${CASES[@]}"; do printf ' %s |' "$c"; done; echo
  printf '|---|'; for c in "${CASES[@]}"; do printf -- '---|'; done; echo
  for cl in "${CLIENTS[@]}"; do
    printf '| %s |' "$cl"
    for c in "${CASES[@]}"; do
      case "${RES[$cl,$c]}" in pass) s="✅" ;; fail) s="❌" ;; client) s="⚠️" ;; *) s="–" ;; esac
      printf ' %s |' "$s"
    done
    echo
  done
  echo
  echo "✅ pass, ❌ fail, ⚠️ the client failed by itself (its own log says so), – unsupported. Notes:"
  echo
  for cl in "${CLIENTS[@]}"; do for c in "${CASES[@]}"; do
    r=${REASON[$cl,$c]}
    [ -n "$r" ] && [ "$r" != "HTTP/1.1 and HTTP/2 cells are for curl" ] && echo "- $cl × $c (${RES[$cl,$c]}): $r"
  done; done
} >"$md"
cat "$md"
fails=0 client_fails=0
for k in "${!RES[@]}"; do
  [ "${RES[$k]}" = fail ] && fails=$((fails + 1))
  [ "${RES[$k]}" = client ] && client_fails=$((client_fails + 1))
done
if [ $((fails + client_fails)) -gt 0 ]; then
  mkdir -p "$OUT/logs"; cp -r "$W"/* "$OUT/logs/" 2>/dev/null || true; rm -rf "$OUT/logs/www"
  echo "$fails supported cell(s) failed, $client_fails by the client's own doing; logs in $OUT/logs" >&2
  exit 1
fi
echo "all supported cells passed (${ELAPSED} s)" >&2
