#!/usr/bin/env bash
# scripts/ab.sh — transport A/B: the same timecoded live stream played over
# HTTP/3, HTTP/2 and HTTP/1.1-over-TLS by real headless Chromium, per network
# impairment profile, with a report (table, raw samples, SVG plot).
#
# Setup (default, needs root): two network namespaces joined by a veth pair,
#   origin side  198.18.0.1  h3live serve + scripts/encoder.sh (ffmpeg ingest
#                            stays on that namespace's loopback, unimpaired)
#   client side  198.18.0.2  headless Chromium + the CDP driver (scripts/ab/driver.mjs;
#                            CDP on that namespace's loopback)
# Chromium reaches the origin as https://h3live.test (--host-resolver-rules,
# certificate generated with --host h3live.test), QUIC forced on the h3 port.
# GSO/TSO are capped to one packet on both veth ends so that a drop or a rate
# limit acts on wire-sized packets.  Impairments are applied to the veth pair:
#   clean    nothing
#   lossN    N % random loss each way (nftables netdev ingress hook on both veth
#            ends: numgen random mod 100 < N drop), e.g. loss1, loss3
#   rate     tc tbf on the origin's veth (downstream) at --rate-kbit
#   delayN   N ms extra round trip (tc netem, N/2 each way), e.g. delay50
#   jitter   tc netem 25 ms ± 10 ms (normal) each way
# delay/jitter need the kernel's sch_netem; where it is missing those profiles
# are skipped and the report says so.  Everything is undone on exit and Ctrl-C.
#
# Usage: sudo scripts/ab.sh [options]
#   --profiles LIST   comma list (default clean,loss1,loss3,rate,delay50,jitter;
#                     clean with --loopback)
#   --arms LIST       h3,h1,h2 (default h3,h1,h2); format x transport: dash-h3,hls-h3,hls-h1
#                     (hls-*: the origin's LL-HLS played by hls.js)
#   --duration S      seconds each arm plays per profile (default 30)
#   --warmup S        seconds after the first frame left out of the statistics (default 5)
#   --concurrent      play all arms at once in one page (they share the link)
#                     instead of one after another in fresh browser contexts
#   --rounds N        play every arm N times per profile, rotating the arm order
#                     (default 1); the report adds the plays up
#   --screenshots     save a screenshot of the page at the end of each play (raw/*.png)
#   --latency S       target latency for every player (default: the page's, 0.5)
#   --size WxH --fps N --bitrate RATE   encoder settings (default 1280x720, 30, 2M)
#   --rate-kbit N     tbf rate of the 'rate' profile (default: 1.25 x (video + 128k audio),
#                     times the number of arms with --concurrent)
#   --out DIR         output folder (default out/ab-YYYYmmdd-HHMMSS)
#   --bin PATH        h3live binary (default target/release/h3live)
#   --serve-arg ARG   extra argument for 'h3live serve' (repeatable), e.g.
#                     --serve-arg --tcp-notsent-lowat=128K to A/B an origin setting
#   --loopback        no namespaces, no impairment (clean only), no root needed:
#                     origin + encoder on free loopback ports
#   --running         use the origin + encoder that ./run.sh runs (localhost, ports
#                     4433/4443/4444, certs/cert.pem, stream 'test'); implies --loopback
# Output folder: report.md (table), summary.json, samples.csv (one row per frame),
# latency.svg (latency over time, one panel per profile), raw/*.json, logs.
set -u
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

PROFILES=""   # default: clean,loss1,loss3,rate,delay50,jitter (clean with --loopback)
ARMS="h3,h1,h2"
DURATION=30
WARMUP=5
CONCURRENT=0
SCREENSHOTS=0
ROUNDS=1
LATENCY=""
SIZE="1280x720"
FPS=30
BITRATE="2M"
RATE_KBIT=""
OUT=""
BIN="$ROOT/target/release/h3live"
SERVE_ARGS=()
LOOPBACK=0
RUNNING=0
HOST="h3live.test"
STREAM="ab"

while [ $# -gt 0 ]; do
  case "$1" in
    --profiles) PROFILES="$2"; shift 2 ;;
    --arms) ARMS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --concurrent) CONCURRENT=1; shift ;;
    --screenshots) SCREENSHOTS=1; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --latency) LATENCY="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --fps) FPS="$2"; shift 2 ;;
    --bitrate) BITRATE="$2"; shift 2 ;;
    --rate-kbit) RATE_KBIT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --serve-arg) SERVE_ARGS+=("$2"); shift 2 ;;
    --loopback) LOOPBACK=1; shift ;;
    --running) RUNNING=1; LOOPBACK=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "ab.sh: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done

if [ "$LOOPBACK" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "ab.sh: needs root to create network namespaces, nftables rules and tc qdiscs." >&2
  echo "       Run it with sudo, or use --loopback for an unimpaired run without root." >&2
  exit 1
fi
[ -n "$PROFILES" ] || { [ "$LOOPBACK" = 1 ] && PROFILES=clean || PROFILES="clean,loss1,loss3,rate,delay50,jitter"; }
[ -n "$OUT" ] || OUT="$ROOT/out/ab-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/raw" || { echo "ab.sh: cannot create $OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/ab.log"
say() { printf '[ab %s] %s\n' "$(date +%T.%3N)" "$*" | tee -i -a "$LOG" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ checks
for c in node openssl curl; do command -v "$c" >/dev/null || die "$c not found (scripts/test.sh installs the test dependencies)"; done
[ "$RUNNING" = 1 ] || command -v ffmpeg >/dev/null || die "ffmpeg not found"
if [ "$LOOPBACK" = 0 ]; then
  for c in ip nft tc; do command -v "$c" >/dev/null || die "$c not found (apt-get install iproute2 nftables)"; done
fi
[ -d web/node_modules/dashjs ] && [ -d web/node_modules/ws ] || die "web/node_modules missing: run (cd web && npm ci)"
[ "$RUNNING" = 1 ] || [ -x "$BIN" ] || die "$BIN missing: run cargo build --release"
case "$DURATION$WARMUP" in *[!0-9.]*) die "--duration and --warmup take seconds" ;; esac
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds takes a positive integer" ;; esac
IFS=, read -r -a ARM_LIST <<< "$ARMS"
for a in "${ARM_LIST[@]}"; do t=${a#dash-}; t=${t#hls-}; case "$t" in h3|h1|h2) ;; *) die "unknown arm '$a' (h3, h1, h2; hls-h3 etc. for LL-HLS)" ;; esac; done
IFS=, read -r -a PROFILE_LIST <<< "$PROFILES"
for p in "${PROFILE_LIST[@]}"; do
  case "$p" in clean|rate|jitter|loss[0-9]*|delay[0-9]*) ;; *) die "unknown profile '$p'" ;; esac
done
to_kbit() { # 2M / 2500k / 2000000 -> kbit/s
  awk -v r="$1" 'BEGIN{ m=1/1000; if (r ~ /[kK]$/) m=1; else if (r ~ /[mM]$/) m=1000; sub(/[kKmM]$/, "", r); printf "%d", r*m }'
}
N_STREAMS=1; [ "$CONCURRENT" = 1 ] && N_STREAMS=${#ARM_LIST[@]}
[ -n "$RATE_KBIT" ] || RATE_KBIT=$(awk -v v="$(to_kbit "$BITRATE")" -v n="$N_STREAMS" 'BEGIN{printf "%d", 1.25*(v+128)*n}')

# ---------------------------------------------------------- state, cleanup
TAG="h3ab$$"
NSO="$TAG-o"; NSC="$TAG-c"      # namespaces
VO="${TAG}o"; VC="${TAG}c"      # veth ends (<= 15 characters)
ORIGIN_IP=198.18.0.1; CLIENT_IP=198.18.0.2
NS_CREATED=0
ORIGIN_PID=""; ENCODER_PID=""; DRIVER_PID=""
CLEANED=0
# Command prefixes that run a command in a namespace.  Arrays, not functions:
# a backgrounded function would be a subshell, and $! its PID, not the program's.
IN_O=(); IN_C=()
[ "$LOOPBACK" = 1 ] || { IN_O=(ip netns exec "$NSO"); IN_C=(ip netns exec "$NSC"); }
inO() { "${IN_O[@]}" "$@"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# wait_url PID TRIES URL: poll URL (from the origin's namespace) every 0.1 s while PID lives.
wait_url() {
  local i
  for i in $(seq 1 "$2"); do
    alive "$1" || return 1
    inO curl -fsS -o /dev/null --max-time 1 "$3" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
stop_pid() { # name pid seconds
  alive "$2" || return 0
  kill -TERM "$2" 2>/dev/null
  local i=0
  while alive "$2" && [ "$i" -lt $(($3 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
  if alive "$2"; then say "$1 (pid $2) did not stop, killing it"; kill -KILL "$2" 2>/dev/null; fi
  wait "$2" 2>/dev/null
}
cleanup() {
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap '' INT TERM HUP
  stop_pid driver "$DRIVER_PID" 8
  stop_pid encoder "$ENCODER_PID" 15
  stop_pid origin "$ORIGIN_PID" 10
  if [ "$NS_CREATED" = 1 ]; then
    # Anything still running inside our namespaces was started by this script.
    for ns in "$NSC" "$NSO"; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    sleep 0.2
    ip netns del "$NSC" 2>/dev/null; ip netns del "$NSO" 2>/dev/null   # takes the veth pair, rules, qdiscs along
    say "removed namespaces $NSO, $NSC (veth pair, nftables rules and qdiscs with them)"
  fi
}
on_signal() { say "interrupted: cleaning up"; cleanup; exit 130; }
trap on_signal INT TERM HUP
trap cleanup EXIT

say "output folder: $OUT"
say "arms ${ARMS}, profiles ${PROFILES}, ${DURATION} s per play, $ROUNDS round(s) ($([ "$CONCURRENT" = 1 ] && echo 'all arms at once' || echo 'one arm after another, fresh browser context each')), warm-up ${WARMUP} s"

# --------------------------------------------------------------- network
if [ "$LOOPBACK" = 0 ]; then
  say "creating namespaces $NSO ($ORIGIN_IP) and $NSC ($CLIENT_IP), veth $VO <-> $VC"
  ip netns add "$NSO" || die "ip netns add failed"
  NS_CREATED=1
  ip netns add "$NSC" || die "ip netns add failed"
  ip link add "$VO" netns "$NSO" type veth peer name "$VC" netns "$NSC" || die "cannot create the veth pair"
  ip -n "$NSO" addr add "$ORIGIN_IP/30" dev "$VO"
  ip -n "$NSC" addr add "$CLIENT_IP/30" dev "$VC"
  for x in "$NSO $VO" "$NSC $VC"; do
    set -- $x
    ip -n "$1" link set lo up
    # One packet per skb: drops and the rate limit then act on wire-sized packets.
    ip -n "$1" link set "$2" gso_max_segs 1 gso_max_size 1500 || die "cannot cap GSO on $2"
    ip -n "$1" link set "$2" up
  done
fi

# netem available?  (delay/jitter profiles)
NETEM=0
NETEM_WHY="--loopback: no impairment"
if [ "$LOOPBACK" = 0 ]; then
  if err=$(ip netns exec "$NSO" tc qdisc add dev "$VO" root netem delay 1ms 2>&1); then
    NETEM=1; ip netns exec "$NSO" tc qdisc del dev "$VO" root
  else
    NETEM_WHY="tc netem is not available on this kernel (tc: ${err//$'\n'/ }; module sch_netem missing)"
  fi
fi

RUN_PROFILES=()
SKIPPED=()   # "name|reason"
for p in "${PROFILE_LIST[@]}"; do
  if [ "$LOOPBACK" = 1 ] && [ "$p" != clean ]; then SKIPPED+=("$p|--loopback: no impairment possible"); continue; fi
  case "$p" in
    delay*|jitter) [ "$NETEM" = 1 ] || { SKIPPED+=("$p|$NETEM_WHY"); continue; } ;;
  esac
  RUN_PROFILES+=("$p")
done
for s in "${SKIPPED[@]}"; do say "SKIPPING profile ${s%%|*}: ${s#*|}"; done
[ ${#RUN_PROFILES[@]} -gt 0 ] || die "no profile left to run"

reset_impairment() {
  [ "$LOOPBACK" = 1 ] && return
  ip netns exec "$NSO" nft delete table netdev h3ab 2>/dev/null
  ip netns exec "$NSC" nft delete table netdev h3ab 2>/dev/null
  ip netns exec "$NSO" tc qdisc del dev "$VO" root 2>/dev/null
  ip netns exec "$NSC" tc qdisc del dev "$VC" root 2>/dev/null
  return 0
}
nft_loss() { # ns dev percent: drop N % of the packets arriving on dev
  ip netns exec "$1" nft -f - <<EOF
table netdev h3ab {
  chain ingress {
    type filter hook ingress device "$2" priority 0; policy accept;
    counter
    numgen random mod 100 < $3 counter drop
  }
}
EOF
}
PROFILE_DESC=""
apply_profile() {
  reset_impairment
  case "$1" in
    clean) PROFILE_DESC="no impairment" ;;
    loss*)
      local n="${1#loss}"
      nft_loss "$NSO" "$VO" "$n" && nft_loss "$NSC" "$VC" "$n" || return 1
      PROFILE_DESC="${n} % random loss each way (nftables ingress drop on both veth ends)" ;;
    rate)
      ip netns exec "$NSO" tc qdisc add dev "$VO" root tbf rate "${RATE_KBIT}kbit" burst 16kb latency 300ms || return 1
      PROFILE_DESC="downstream limited to ${RATE_KBIT} kbit/s (tc tbf, burst 16 kB, queue up to 300 ms); stream: video $BITRATE + audio 128k" ;;
    delay*)
      local d="${1#delay}" h
      h=$(awk -v d="$d" 'BEGIN{printf "%g", d/2}')
      ip netns exec "$NSO" tc qdisc add dev "$VO" root netem delay "${h}ms" && \
        ip netns exec "$NSC" tc qdisc add dev "$VC" root netem delay "${h}ms" || return 1
      PROFILE_DESC="${d} ms extra RTT (tc netem ${h} ms each way)" ;;
    jitter)
      ip netns exec "$NSO" tc qdisc add dev "$VO" root netem delay 25ms 10ms distribution normal && \
        ip netns exec "$NSC" tc qdisc add dev "$VC" root netem delay 25ms 10ms distribution normal || return 1
      PROFILE_DESC="tc netem 25 ms ± 10 ms (normal) each way" ;;
  esac
}
impairment_stats() { # profile -> raw/PROFILE.net.txt
  [ "$LOOPBACK" = 1 ] && return
  local file="$OUT/raw/$1.net.txt"
  {
    echo "== upstream nft (ingress of the origin's veth)"
    ip netns exec "$NSO" nft list table netdev h3ab 2>/dev/null | grep counter
    echo "== downstream nft (ingress of the client's veth)"
    ip netns exec "$NSC" nft list table netdev h3ab 2>/dev/null | grep counter
    echo "== downstream qdisc (egress of the origin's veth)"
    ip netns exec "$NSO" tc -s qdisc show dev "$VO"
    echo "== upstream qdisc (egress of the client's veth)"
    ip netns exec "$NSC" tc -s qdisc show dev "$VC"
  } > "$file" 2>&1
}

# ------------------------------------------------------- origin + encoder
if [ "$RUNNING" = 1 ]; then
  HOST=localhost; STREAM=test
  PORTS="h3=4433,h1=4443,h2=4444"
  CERT="$ROOT/certs/cert.pem"
  [ -f "$CERT" ] || die "$CERT missing: is ./run.sh running?"
  curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8080/live/test/manifest.mpd || die "no live stream at http://127.0.0.1:8080/live/test/ (start ./run.sh first)"
  say "using the running origin + encoder (./run.sh): stream 'test' on localhost"
else
  say "certificate for $HOST"
  "$BIN" cert --out "$OUT/certs" --host "$HOST" > "$OUT/certs.txt" 2>&1 || die "h3live cert failed: $(cat "$OUT/certs.txt")"
  CERT="$OUT/certs/cert.pem"
  if [ "$LOOPBACK" = 1 ]; then
    HOST=localhost
    read -r HTTP_PORT H3_PORT H1_PORT H2_PORT < <(node -e '
      const net = require("net"), dgram = require("dgram");
      const tcp = (h) => new Promise((r, j) => { const s = net.createServer(); s.once("error", j); s.listen(0, h, () => { const p = s.address().port; s.close(() => r(p)); }); });
      const udp = (p) => new Promise((r) => { const s = dgram.createSocket("udp6"); s.once("error", () => r(false)); s.bind(p, "::", () => s.close(() => r(true))); });
      (async () => { const out = [await tcp("127.0.0.1")];
        for (;;) { const p = await tcp("::"); if (await udp(p)) { out.push(p); break; } }
        out.push(await tcp("::"), await tcp("::")); console.log(out.join(" ")); })();') || die "no free ports"
  else
    HTTP_PORT=8080; H3_PORT=4433; H1_PORT=4443; H2_PORT=4444   # a fresh namespace: no collisions
  fi
  PORTS="h3=$H3_PORT,h1=$H1_PORT,h2=$H2_PORT"
  say "starting origin (ports: ingest 127.0.0.1:$HTTP_PORT, h3 + https $H3_PORT, https-h1 $H1_PORT, https-h2 $H2_PORT; log origin.log)"
  "${IN_O[@]}" "$BIN" serve --http "127.0.0.1:$HTTP_PORT" --h3 "[::]:$H3_PORT" --https "[::]:$H3_PORT" \
    --https-h1 "[::]:$H1_PORT" --https-h2 "[::]:$H2_PORT" --cert "$CERT" --key "$OUT/certs/key.pem" \
    --web-dir "$ROOT/web" ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} > "$OUT/origin.log" 2>&1 &
  ORIGIN_PID=$!
  wait_url "$ORIGIN_PID" 100 "http://127.0.0.1:$HTTP_PORT/time" || { tail -n 20 "$OUT/origin.log" >&2; die "origin did not come up"; }
  ENC=(--origin "http://127.0.0.1:$HTTP_PORT" --stream "$STREAM" --size "$SIZE" --fps "$FPS" --bitrate "$BITRATE")
  say "starting encoder: ${SIZE}@${FPS} ${BITRATE} (log encoder.log)"
  "${IN_O[@]}" "$ROOT/scripts/encoder.sh" "${ENC[@]}" > "$OUT/encoder.log" 2>&1 &
  ENCODER_PID=$!
  wait_url "$ENCODER_PID" 300 "http://127.0.0.1:$HTTP_PORT/live/$STREAM/manifest.mpd" || { tail -n 20 "$OUT/encoder.log" >&2; die "the manifest did not go live"; }
  say "stream is live (origin pid $ORIGIN_PID, encoder pid $ENCODER_PID)"
  if [ "$LOOPBACK" = 0 ]; then
    "${IN_C[@]}" curl -fsS -k -o /dev/null --max-time 3 --resolve "$HOST:$H1_PORT:$ORIGIN_IP" "https://$HOST:$H1_PORT/healthz" \
      || die "the client namespace cannot reach https://$HOST:$H1_PORT (veth setup?)"
    say "client namespace reaches the origin at $HOST ($ORIGIN_IP)"
  fi
  sleep 2   # let a first segment start, so players join a running stream
fi
SPKI=$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64)

# ------------------------------------------------------------ metadata
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
{
  echo "{"
  echo "  \"date\": $(json_str "$(date -Iseconds)"),"
  echo "  \"machine\": $(json_str "$(uname -srm); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //'))"),"
  echo "  \"load\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"),"
  echo "  \"commit\": $(json_str "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"),"
  echo "  \"ffmpeg\": $(json_str "$(ffmpeg -version 2>/dev/null | head -1 | cut -d' ' -f1-3)"),"
  echo "  \"setup\": $(json_str "$([ "$LOOPBACK" = 1 ] && echo "loopback" || echo "netns + veth ($ORIGIN_IP origin, $CLIENT_IP client), GSO capped to 1 packet")"),"
  echo "  \"mode\": $(json_str "$([ "$CONCURRENT" = 1 ] && echo concurrent || echo sequential)"),"
  echo "  \"encoder\": $(json_str "${SIZE}@${FPS} ${BITRATE}, 2 s segments, one CMAF fragment per frame"),"
  echo "  \"targetLatencyS\": $(json_str "${LATENCY:-0.5}"),"
  echo "  \"durationS\": $DURATION, \"warmupS\": $WARMUP, \"rounds\": $ROUNDS,"
  echo "  \"arms\": $(json_str "$ARMS"),"
  echo "  \"skipped\": ["
  first=1
  for s in "${SKIPPED[@]}"; do
    [ "$first" = 1 ] || echo ","
    first=0
    printf '    {"profile": %s, "reason": %s}' "$(json_str "${s%%|*}")" "$(json_str "${s#*|}")"
  done
  echo; echo "  ],"
  echo "  \"profiles\": {"
} > "$OUT/meta.json.part"

# -------------------------------------------------------------- profiles
DRIVER_ARGS=(--arms "$ARMS" --rounds "$ROUNDS" --duration "$DURATION" --host "$HOST" --spki "$SPKI" --stream "$STREAM" --ports "$PORTS")
[ "$LOOPBACK" = 0 ] && DRIVER_ARGS+=(--ip "$ORIGIN_IP")
[ -n "$LATENCY" ] && DRIVER_ARGS+=(--latency "$LATENCY")
[ "$CONCURRENT" = 1 ] && DRIVER_ARGS+=(--concurrent)
n=0
for p in "${RUN_PROFILES[@]}"; do
  n=$((n + 1))
  apply_profile "$p" || die "could not apply profile $p"
  say "profile $n/${#RUN_PROFILES[@]}: $p — $PROFILE_DESC"
  [ "$n" -gt 1 ] && echo "," >> "$OUT/meta.json.part"
  printf '    %s: %s' "$(json_str "$p")" "$(json_str "$PROFILE_DESC")" >> "$OUT/meta.json.part"
  SHOT=(); [ "$SCREENSHOTS" = 1 ] && SHOT=(--screenshot "$OUT/raw/$p")
  "${IN_C[@]}" node "$ROOT/scripts/ab/driver.mjs" --out "$OUT/raw/$p.json" --profile "$p" "${DRIVER_ARGS[@]}" "${SHOT[@]}" \
    2> >(tee -i -a "$LOG" >&2) &
  DRIVER_PID=$!
  wait "$DRIVER_PID"; rc=$?
  DRIVER_PID=""
  impairment_stats "$p"
  [ -f "$OUT/raw/$p.net.txt" ] && grep -q 'counter' "$OUT/raw/$p.net.txt" && \
    say "  dropped by nftables: $(awk '/drop/{for(i=1;i<=NF;i++) if($i=="packets") printf "%s ", $(i+1)}' "$OUT/raw/$p.net.txt")packets (upstream, downstream)"
  [ "$rc" = 0 ] || say "driver exited with code $rc for profile $p (see ab.log)"
  alive "$ORIGIN_PID" || [ "$RUNNING" = 1 ] || die "origin exited (see origin.log)"
done
reset_impairment
printf '\n  }\n}\n' >> "$OUT/meta.json.part"
mv "$OUT/meta.json.part" "$OUT/meta.json"

say "writing the report"
node "$ROOT/scripts/ab/report.mjs" "$OUT" 2>&1 | tee -i -a "$LOG"
exit "${PIPESTATUS[0]}"
