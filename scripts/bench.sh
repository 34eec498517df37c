#!/usr/bin/env bash
# Fan-out benchmark: cost per viewer and latency added per transport.
#
# For each transport (h3, h2, h1-tls, h1-clear, moq) and viewer count, a fresh
# origin (`h3live serve`) is fed a recorded LL-DASH stream by `h3live load
# replay` (real-time pace, prft re-stamped at push time) and `h3live load`
# runs that many viewers on the same machine. Per run it records the origin's
# CPU seconds (/proc/PID/stat), peak RSS, the origin-delay histogram delta
# from /metrics, and the load tool's JSON (throughput, prft->last byte
# latency, errors, stalls). Then idle viewers (connection held, nothing
# streamed) for memory per idle viewer, and a side-by-side with Debian's
# caddy serving the same bytes as static files (viewers fetch each segment
# once complete, `--pace segment`, against both servers) for the ratio of
# CPU per delivered GB per transport. The moq transport (Media over QUIC over
# WebTransport, `--moq` on the origin, one MoQ subscriber per viewer) has no
# Caddy counterpart; an --against binary must know --moq to run its moq cells.
#
# Output folder: runs.jsonl + raw/ (per-run JSON, metrics, logs),
# results.json, table.md, plot.svg (scripts/bench-report.py).
#
# Usage: scripts/bench.sh [--quick] [--out DIR] [--capture DIR | --synthetic]
#          [--counts "1 10 100 500 1000"] [--transports "h3 h2 h1-tls h1-clear moq"]
#          [--duration SECS] [--idle N] [--compare N] [--no-caddy] [--no-build] [--pin]
#          [--against PATH [--against-args "ARGS"]] [--origin-args "ARGS"] [--load-args "ARGS"]
#          [--profile] [--budget] [--front]
#   --pin         origin (and Caddy) on core 0, load tool and replay on core 1 (taskset), so
#                 the server's side is measured without contention from the load tool
#   --against PATH  also run every h3live cell with the origin binary PATH (e.g. the previous
#                 commit's build), right after the same cell of this tree's build, in the
#                 same run (the load tool and replay stay this tree's); the report adds
#                 new/against ratios per cell. PATH must accept the same `serve` flags.
#   --against-args "ARGS"  extra `serve` flags for the against origin only (e.g.
#                 "--h3-congestion cubic" with --against target/release/h3live)
#   --origin-args "ARGS"  extra `serve` flags for this tree's origin (e.g. "--h3-ack-frequency 9")
#   --load-args "ARGS"  extra flags for every `h3live load` run (e.g. "--max-udp-payload 65527")
#   --profile     also sample the origin during each live cell (perf record -e cpu-clock,
#                 on the load tool's side of the pinning) and write its flat profile by
#                 symbol to raw/<cell>.profile.txt (needs perf; sampling adds a few % of a core)
#   --budget      also count, per live cell, the origin's packets and syscalls: send/receive
#                 syscalls, epoll waits and futex calls (perf stat on syscall tracepoints),
#                 quinn's counters from /metrics (h3: datagrams, send operations, ACK frames)
#                 and the kernel's per-socket counters (TCP: segments in and out, from ss -ti
#                 near the end of the run; moq: syscalls only, its QUIC connections are not in
#                 quinn's /metrics counters); the report adds a table per delivered MB. These
#                 counts barely depend on the machine's load (batching does, a little);
#                 tracing syscalls adds CPU, so take CPU/GB from a run without --budget
#   --front       measure `h3live front` behind Varnish instead of the origin: the origin
#                 (this tree's build), the replay and Varnish (deploy/varnish/h3live.vcl) run
#                 on the load tool's side of the pinning; the front (this tree's, or the
#                 --against binary) is the measured process, on the server's core; its flags
#                 come from --origin-args / --against-args. Needs varnish. No Caddy comparison,
#                 no moq cells (the front has no MoQ endpoint).
#   --quick       counts "1 10 50", 6 s runs, 50 idle viewers, compare at 10
#   --capture DIR replay this capture (h3live load record); default: record
#                 30 s of ffmpeg (720p30, 2 Mbit/s, every_frame) once into
#                 OUT/capture, or a synthetic stream with --synthetic / no ffmpeg
# Needs: cargo, curl, python3; ffmpeg for the recording; caddy for the
# comparison (apt-get install caddy); perf (linux-perf) for the origin's
# task-clock per run (otherwise only /proc ticks, 10 ms resolution).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=bench

QUICK=0
PIN_SERVER=() PIN_CLIENT=()
OUT=""
CAPTURE=""
SYNTHETIC=0
COUNTS=""
TRANSPORTS="h3 h2 h1-tls h1-clear"
DURATION=""
IDLE_N=""
COMPARE_N=""
CADDY=1
BUILD=1
PROFILE=0
BUDGET=0
FRONT=0
AGAINST="" AGAINST_ARGS=""
ORIGIN_EXTRA=() LOAD_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --capture) CAPTURE="$2"; shift ;;
    --synthetic) SYNTHETIC=1 ;;
    --counts) COUNTS="$2"; shift ;;
    --transports) TRANSPORTS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --idle) IDLE_N="$2"; shift ;;
    --compare) COMPARE_N="$2"; shift ;;
    --no-caddy) CADDY=0 ;;
    --no-build) BUILD=0 ;;
    --against) AGAINST="$2"; shift ;;
    --against-args) AGAINST_ARGS="$2"; shift ;;
    --origin-args) read -ra ORIGIN_EXTRA <<< "$2"; shift ;;
    --load-args) read -ra LOAD_EXTRA <<< "$2"; shift ;;
    --profile) PROFILE=1 ;;
    --budget) BUDGET=1 ;;
    --front) FRONT=1 CADDY=0 ;;
    --pin) PIN_SERVER=(taskset -c 0); PIN_CLIENT=(taskset -c 1) ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  COUNTS=${COUNTS:-"1 10 50"}; DURATION=${DURATION:-6}; IDLE_N=${IDLE_N:-50}; COMPARE_N=${COMPARE_N:-10}
else
  COUNTS=${COUNTS:-"1 10 100 500 1000"}; DURATION=${DURATION:-20}; IDLE_N=${IDLE_N:-1000}; COMPARE_N=${COMPARE_N:-100}
fi
# 1000 HTTP/1.1 viewers hold 2000 sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
OUT=${OUT:-target/bench/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
BIN=$PWD/target/release/h3live
RUNS=$OUT/runs.jsonl
: > "$RUNS"

# Ports (loopback only): ours (the measured server's), caddy's, and with
# --front the origin's and Varnish's behind the front.
P_HTTP=28080 P_H3=28433 P_H1=28443 P_H2=28444 P_MOQ=28435
C_HTTPS=29443 C_HTTP=29080
P_ORIGIN=28090 P_VARNISH=28091
# BENCH_PORT_BASE=N moves all nine to N..N+8 (several benchmarks on one machine).
if [ -n "${BENCH_PORT_BASE:-}" ]; then
  B=$BENCH_PORT_BASE
  P_HTTP=$B P_H3=$((B + 1)) P_H1=$((B + 2)) P_H2=$((B + 3)) C_HTTPS=$((B + 4)) C_HTTP=$((B + 5)) P_MOQ=$((B + 6))
  P_ORIGIN=$((B + 7)) P_VARNISH=$((B + 8))
fi
STREAM=bench
CLK_TCK=$(getconf CLK_TCK)
WARMUP=6

note() { printf '%s\n' "$*" >&2; }

PIDS=()
cleanup() {
  for p in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$p" 5; done
}
trap cleanup EXIT

for p in $P_HTTP $P_H3 $P_H1 $P_H2 $P_MOQ $C_HTTPS $C_HTTP $P_ORIGIN $P_VARNISH; do
  if port_busy "$p"; then die "port $p is in use: stop whatever listens there first"; fi
done

if [ "$BUILD" = 1 ]; then
  step "cargo build --release"
  cargo build --release --locked >&2
fi
[ -x "$BIN" ] || die "no $BIN (build first)"
VARIANTS=(new)
if [ -n "$AGAINST" ]; then
  [ -x "$AGAINST" ] || { say "--against $AGAINST: not an executable"; exit 2; }
  AGAINST=$(realpath "$AGAINST")
  VARIANTS=(new against)
fi
if [ "$FRONT" = 1 ]; then
  [ -x /usr/sbin/varnishd ] || die "--front needs varnish (apt-get install varnish)"
  # `h3live front` has no MoQ endpoint: a MoQ edge is a relay, not this front.
  case " $TRANSPORTS " in *" moq "*) note "--front: no moq cells (the front serves HTTP only)" ;; esac
  TRANSPORTS=$(echo " $TRANSPORTS " | sed 's/ moq / /; s/^ *//; s/ *$//')
  [ -n "$TRANSPORTS" ] || die "--front: no HTTP transport left in --transports"
fi
PERF=0
perf stat -x, -e task-clock true > /dev/null 2>&1 && PERF=1
# --budget: syscalls counted on the origin (perf stat on tracepoints). Reads
# and writes of exactly 8 bytes are eventfd wake-ups (tokio's, between
# threads), counted apart from socket I/O.
BUDGET_EVENTS=()
if [ "$BUDGET" = 1 ]; then
  [ "$PERF" = 1 ] || die "--budget needs perf (apt-get install linux-perf)"
  for e in sendmsg sendmmsg sendto writev recvmsg recvmmsg recvfrom readv epoll_wait epoll_pwait epoll_pwait2 futex; do
    BUDGET_EVENTS+=(-e "syscalls:sys_enter_$e")
  done
  BUDGET_EVENTS+=(-e syscalls:sys_enter_write --filter 'count != 8' -e syscalls:sys_enter_read --filter 'count != 8')
  perf stat -x, "${BUDGET_EVENTS[@]}" true > /dev/null 2>&1 || die "--budget: perf cannot count syscall tracepoints here (needs root or perf_event_paranoid <= -1)"
fi

"$BIN" cert --out "$OUT/certs" >/dev/null
CERT=$OUT/certs/cert.pem KEY=$OUT/certs/key.pem
mkdir -p "$OUT/empty"

# ---------------------------------------------------------------- capture
if [ -z "$CAPTURE" ]; then
  CAPTURE=$OUT/capture
  if [ "$SYNTHETIC" = 0 ] && command -v ffmpeg >/dev/null; then
    step "recording 30 s of ffmpeg LL-DASH into $CAPTURE"
    "$BIN" load record --listen 127.0.0.1:$P_HTTP -o "$CAPTURE" --duration 34s 2> "$OUT/logs/record.log" &
    REC=$!; PIDS+=("$REC")
    wait_until 10 port_busy "$P_HTTP" || die "the recorder did not start (see $OUT/logs/record.log)"
    scripts/encoder.sh --origin "http://127.0.0.1:$P_HTTP" --stream "$STREAM" --size 1280x720 --fps 30 --bitrate 2M \
      --seg-duration 2 --chunking every_frame --target-latency 1.5 --duration 30 --no-restart --loglevel error \
      2> "$OUT/logs/encoder.log" || die "the encoder failed (see $OUT/logs/encoder.log)"
    wait "$REC" || true
  else
    # The synthetic stream's init segments carry no codec data, which the MoQ
    # catalog is made from: moq viewers would find no track.
    case " $TRANSPORTS " in *" moq "*) die "moq cells need an ffmpeg capture (ffmpeg, or --capture DIR), not the synthetic stream" ;; esac
    step "writing a synthetic capture into $CAPTURE"
    "$BIN" load synth -o "$CAPTURE" --duration 30s >&2
  fi
fi

# ---------------------------------------------------------------- helpers
# busy and total jiffies of the whole machine
sys_ticks() { awk '/^cpu / {t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }

# Which origin binary runs the next cells: "new" (this tree's) or "against".
VARIANT=new ORIGIN_BIN=$BIN ORIGIN_ARGS=() SUFFIX=""
use_variant() {
  VARIANT=$1 ORIGIN_BIN=$BIN ORIGIN_ARGS=(${ORIGIN_EXTRA[@]+"${ORIGIN_EXTRA[@]}"}) SUFFIX=""
  if [ "$1" = against ]; then
    ORIGIN_BIN=$AGAINST SUFFIX=-against
    read -ra ORIGIN_ARGS <<< "$AGAINST_ARGS"
  fi
}
# Both variants of each cell run back to back; which goes first alternates
# from cell to cell, so a drift in the machine's load does not favour one.
CELL=0 ORDER=()
next_cell() {
  CELL=$((CELL + 1)) ORDER=("${VARIANTS[@]}")
  if [ ${#VARIANTS[@]} = 2 ] && [ $((CELL % 2)) = 0 ]; then ORDER=(against new); fi
}

ORIGIN_PID="" REPLAY_PID="" CADDY_PID="" UP_PID="" VARNISH_PID=""
# The transport of the cells being run: moq cells add the MoQ listener.
CUR_T=""
# The measured server: the origin itself, or with --front `h3live front`
# behind Varnish behind an origin (started first, on the load tool's core).
start_origin() {
  if [ "$FRONT" = 1 ]; then start_front "$1"; return; fi
  local moq=()
  [ "$CUR_T" = moq ] && moq=(--moq 127.0.0.1:$P_MOQ --moq-idle-timeout 10m)
  ${PIN_SERVER[@]+"${PIN_SERVER[@]}"} "$ORIGIN_BIN" serve --http 127.0.0.1:$P_HTTP --h3 127.0.0.1:$P_H3 --https off \
    --https-h1 127.0.0.1:$P_H1 --https-h2 127.0.0.1:$P_H2 --cert "$CERT" --key "$KEY" \
    --web-dir "$OUT/empty" --max-connections 8192 --keep-segments 3 \
    --max-connections-per-ip 0 --idle-timeout 10m --state-dir "$(new_state_dir "$OUT/state")" ${moq[@]+"${moq[@]}"} \
    ${ORIGIN_ARGS[@]+"${ORIGIN_ARGS[@]}"} 2> "$OUT/logs/origin-$1$SUFFIX.log" &
  ORIGIN_PID=$!; PIDS+=("$ORIGIN_PID")
  wait_url "http://127.0.0.1:$P_HTTP/healthz" 10 "$ORIGIN_PID" || die "origin did not start"
  ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} "$BIN" load replay -c "$CAPTURE" --ingest 127.0.0.1:$P_HTTP --stream $STREAM 2> "$OUT/logs/replay-$1$SUFFIX.log" > /dev/null &
  REPLAY_PID=$!; PIDS+=("$REPLAY_PID")
  wait_url "http://127.0.0.1:$P_HTTP/live/$STREAM/manifest.mpd" 15 "$REPLAY_PID" || die "no manifest from the replay"
  # Let the store reach its steady size (3 finished + 1 growing segment per
  # track) so RSS growth during the run is the viewers'.
  sleep "$WARMUP"
}
start_front() {
  ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} "$BIN" serve --http 127.0.0.1:$P_ORIGIN --h3 off --https off --https-h1 off \
    --https-h2 off --web-dir "$OUT/empty" --keep-segments 3 --max-connections-per-ip 0 2> "$OUT/logs/upstream-$1$SUFFIX.log" &
  UP_PID=$!; PIDS+=("$UP_PID")
  wait_url "http://127.0.0.1:$P_ORIGIN/healthz" 10 "$UP_PID" || die "origin (behind the front) did not start"
  ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} "$BIN" load replay -c "$CAPTURE" --ingest 127.0.0.1:$P_ORIGIN --stream $STREAM 2> "$OUT/logs/replay-$1$SUFFIX.log" > /dev/null &
  REPLAY_PID=$!; PIDS+=("$REPLAY_PID")
  sed -e "s/^\(\s*\.port = \)\"[0-9]*\";/\1\"$P_ORIGIN\";/" deploy/varnish/h3live.vcl > "$OUT/varnish.vcl"
  rm -rf "$OUT/varnish"
  ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} varnishd -F -j none -n "$OUT/varnish" -a 127.0.0.1:$P_VARNISH -T none \
    -p backend_idle_timeout=20 -f "$OUT/varnish.vcl" -s malloc,256m > "$OUT/logs/varnish-$1$SUFFIX.log" 2>&1 &
  VARNISH_PID=$!; PIDS+=("$VARNISH_PID")
  wait_url "http://127.0.0.1:$P_VARNISH/healthz" 20 "$VARNISH_PID" || die "varnish did not start"
  ${PIN_SERVER[@]+"${PIN_SERVER[@]}"} "$ORIGIN_BIN" front --upstream "http://127.0.0.1:$P_VARNISH" \
    --http 127.0.0.1:$P_HTTP --h3 127.0.0.1:$P_H3 --https off --https-h1 127.0.0.1:$P_H1 --https-h2 127.0.0.1:$P_H2 \
    --cert "$CERT" --key "$KEY" --web-dir "$OUT/empty" --max-connections 8192 --max-connections-per-ip 0 \
    --idle-timeout 10m ${ORIGIN_ARGS[@]+"${ORIGIN_ARGS[@]}"} 2> "$OUT/logs/front-$1$SUFFIX.log" &
  ORIGIN_PID=$!; PIDS+=("$ORIGIN_PID")
  wait_url "http://127.0.0.1:$P_HTTP/healthz" 10 "$ORIGIN_PID" || die "front did not start"
  wait_url "http://127.0.0.1:$P_HTTP/live/$STREAM/manifest.mpd" 15 "$REPLAY_PID" || die "no manifest through the front"
  sleep "$WARMUP"
}
stop_origin() {
  stop_pid "$REPLAY_PID"; stop_pid "$ORIGIN_PID"; REPLAY_PID="" ORIGIN_PID=""
  if [ -n "$VARNISH_PID" ]; then stop_pid "$VARNISH_PID"; stop_pid "$UP_PID"; VARNISH_PID="" UP_PID=""; fi
}

WWW=$OUT/www
start_caddy() {
  mkdir -p "$WWW" "$OUT/caddy"
  cat > "$OUT/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
	}
}
https://localhost:$C_HTTPS {
	tls $CERT $KEY
	root * $WWW
	file_server
}
http://:$C_HTTP {
	root * $WWW
	file_server
}
EOF
  XDG_DATA_HOME=$OUT/caddy XDG_CONFIG_HOME=$OUT/caddy ${PIN_SERVER[@]+"${PIN_SERVER[@]}"} caddy run --config "$OUT/caddy/Caddyfile" --adapter caddyfile \
    2> "$OUT/logs/caddy-$1.log" &
  CADDY_PID=$!; PIDS+=("$CADDY_PID")
  wait_url "http://127.0.0.1:$C_HTTP/bench/manifest.mpd" 10 "$CADDY_PID" || die "caddy did not start"
}

addr_of() { # server transport
  case "$1:$2" in
    h3live:h3) echo 127.0.0.1:$P_H3 ;; h3live:h2) echo 127.0.0.1:$P_H2 ;;
    h3live:h1-tls) echo 127.0.0.1:$P_H1 ;; h3live:h1-clear) echo 127.0.0.1:$P_HTTP ;;
    h3live:moq) echo 127.0.0.1:$P_MOQ ;;
    caddy:h1-clear) echo 127.0.0.1:$C_HTTP ;; caddy:*) echo 127.0.0.1:$C_HTTPS ;;
  esac
}

# One measured run against the running server: server transport viewers mode(live|segment|idle).
# Origin CPU and the machine's CPU are counted over the whole load run (ramp
# and connection set-up included); RSS is sampled every 0.5 s for the peak.
measure() {
  local server=$1 t=$2 n=$3 mode=$4 pid manifest
  local tag="$server-$t-$mode-$n" variant=new
  [ "$server" = h3live ] && tag+=$SUFFIX variant=$VARIANT
  local ramp=$(( n / 200 > 1 ? n / 200 : 1 ))
  if [ "$server" = h3live ]; then pid=$ORIGIN_PID; manifest=/live/$STREAM/manifest.mpd; else pid=$CADDY_PID; manifest=/bench/manifest.mpd; fi
  local extra=()
  [ "$mode" = idle ] && extra+=(--idle)
  [ "$mode" = segment ] && extra+=(--pace segment)
  [ "$server" = h3live ] && curl -sf "http://127.0.0.1:$P_HTTP/metrics" > "$OUT/raw/$tag.m0"
  local budget=0
  [ "$BUDGET" = 1 ] && [ "$server" = h3live ] && [ "$mode" = live ] && budget=1
  local t0 rss0 s0 peak
  t0=$(proc_ticks "$pid"); rss0=$(proc_rss_kb "$pid"); s0=$(sys_ticks)
  ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} "$BIN" load -q -t "$t" --addr "$(addr_of "$server" "$t")" --ca "$CERT" --manifest "$manifest" \
    -n "$n" -d "${DURATION}s" --ramp "${ramp}s" --json "$OUT/raw/$tag.json" ${extra[@]+"${extra[@]}"} \
    ${LOAD_EXTRA[@]+"${LOAD_EXTRA[@]}"} 2> "$OUT/raw/$tag.log" &
  local lp=$! pp="" rp=""
  if [ "$PERF" = 1 ]; then
    local events=(-e task-clock)
    [ "$budget" = 1 ] && events+=("${BUDGET_EVENTS[@]}")
    perf stat -x, "${events[@]}" -p "$pid" -o "$OUT/raw/$tag.perf" > /dev/null 2>&1 &
    pp=$!
    if [ "$PROFILE" = 1 ] && [ "$server" = h3live ] && [ "$mode" = live ]; then
      ${PIN_CLIENT[@]+"${PIN_CLIENT[@]}"} perf record -q -e cpu-clock -F 999 -p "$pid" -o "$OUT/raw/$tag.perf.data" > /dev/null 2>&1 &
      rp=$!
    fi
  fi
  # --budget, TCP: the origin's sockets' kernel counters (segments, bytes)
  # two seconds before the viewers disconnect.
  local sp="" port
  if [ "$budget" = 1 ] && [ "$t" != h3 ] && [ "$t" != moq ]; then
    port=$(addr_of "$server" "$t"); port=${port##*:}
    { sleep $(( ramp + DURATION - 2 )); ss -tinH state established "( sport = :$port )" > "$OUT/raw/$tag.ss" 2>/dev/null || true; } &
    sp=$!
  fi
  # The server's peak RSS, and the load tool's own CPU ticks last seen before it exits.
  local lt
  read -r peak lt < <(sample_while "$lp" "$pid" "$lp")
  [ "$rss0" -gt "$peak" ] && peak=$rss0
  if [ -n "$sp" ]; then kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true; fi
  local ok=true
  wait "$lp" || ok=false
  local task_ms=null
  if [ -n "$pp" ]; then
    kill -INT "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    task_ms=$(awk -F, '$3 == "task-clock" && $1 ~ /^[0-9.]+$/ {print $1}' "$OUT/raw/$tag.perf" 2>/dev/null)
    task_ms=${task_ms:-null}
  fi
  if [ -n "$rp" ]; then
    kill -INT "$rp" 2>/dev/null || true
    wait "$rp" 2>/dev/null || true
    perf report -i "$OUT/raw/$tag.perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.05 \
      2> /dev/null | grep -v '^#' | sed -e 's/[[:space:]-]*$//' -e '/^$/d' > "$OUT/raw/$tag.profile.txt" || true
    rm -f "$OUT/raw/$tag.perf.data"
  fi
  local t1 s1
  t1=$(proc_ticks "$pid"); s1=$(sys_ticks)
  [ "$server" = h3live ] && curl -sf "http://127.0.0.1:$P_HTTP/metrics" > "$OUT/raw/$tag.m1"
  printf '{"tag":"%s","server":"%s","variant":"%s","transport":"%s","viewers":%s,"mode":"%s","ok":%s,"cpu_ticks":%s,"clk_tck":%s,"task_clock_ms":%s,"rss0_kb":%s,"rss_peak_kb":%s,"load_ticks":%s,"sys_busy":%s,"sys_total":%s}\n' \
    "$tag" "$server" "$variant" "$t" "$n" "$mode" "$ok" "$((t1 - t0))" "$CLK_TCK" "$task_ms" "$rss0" "$peak" "$lt" \
    "$(( ${s1% *} - ${s0% *} ))" "$(( ${s1#* } - ${s0#* } ))" >> "$RUNS"
  note "$(tail -n 3 "$OUT/raw/$tag.log" | tr '\n' ' ')"
}

note "output: $OUT"
note "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FRONT" = 1 ]; then
  echo "h3live front behind Varnish (the origin, the replay and Varnish on the load tool's side); \"origin\" below is the front" > "$OUT/measured.txt"
  note "measured: $(cat "$OUT/measured.txt")"
fi
[ -n "$AGAINST" ] && note "against: $AGAINST $AGAINST_ARGS"
[ ${#ORIGIN_EXTRA[@]} -gt 0 ] && note "origin flags: ${ORIGIN_EXTRA[*]}"
[ ${#LOAD_EXTRA[@]} -gt 0 ] && note "load tool flags: ${LOAD_EXTRA[*]}"

# ---------------------------------------------------------------- h3live, live viewers
for t in $TRANSPORTS; do
  CUR_T=$t
  for n in $COUNTS; do
    next_cell
    for v in "${ORDER[@]}"; do
      use_variant "$v"
      step "h3live$SUFFIX $t: $n live viewers, ${DURATION}s"
      start_origin "$t-$n"
      measure h3live "$t" "$n" live
      stop_origin
    done
  done
  next_cell
  for v in "${ORDER[@]}"; do
    use_variant "$v"
    step "h3live$SUFFIX $t: $IDLE_N idle viewers"
    start_origin "$t-idle"
    # Idle viewers only read the manifest: stop the ingest so the store stops
    # changing and the RSS growth is the connections'.
    stop_pid "$REPLAY_PID"; REPLAY_PID=""
    measure h3live "$t" "$IDLE_N" idle
    stop_origin
  done
done

# ---------------------------------------------------------------- side by side with caddy
if [ "$CADDY" = 1 ]; then
  if ! command -v caddy >/dev/null; then
    note "caddy not installed (apt-get install caddy): comparison skipped"
  else
    for t in $TRANSPORTS; do
      [ "$t" = moq ] && continue  # Caddy serves no MoQ
      CUR_T=$t
      next_cell
      for v in "${ORDER[@]}"; do
        use_variant "$v"
        step "h3live$SUFFIX $t: $COMPARE_N viewers fetching whole segments"
        start_origin "$t-cmp"
        measure h3live "$t" "$COMPARE_N" segment
        stop_origin
      done
      use_variant new
      step "caddy $t: $COMPARE_N viewers fetching whole segments (static copy)"
      rm -rf "$WWW"
      "$BIN" load replay -c "$CAPTURE" --static-out "$WWW/bench" --static-segments $(( DURATION + 30 )) > /dev/null
      start_caddy "$t"
      measure caddy "$t" "$COMPARE_N" segment
      stop_pid "$CADDY_PID"; CADDY_PID=""
    done
  fi
fi

step "report"
python3 scripts/bench-report.py "$OUT"
note "wrote $OUT/table.md and $OUT/plot.svg"
