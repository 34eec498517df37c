#!/usr/bin/env bash
# scripts/ab.sh — transport A/B: the same timecoded live stream played over
# HTTP/3, HTTP/2 and HTTP/1.1-over-TLS (and, as the arm 'moq', pushed as Media
# over QUIC over WebTransport) by a real headless browser (Chromium, Firefox or
# both: two independent QUIC stacks), per network impairment profile, with a
# report (table, raw samples, SVG plot).
#
# Setup (default, needs root): two network namespaces joined by a veth pair,
#   origin side  198.18.0.1  h3live serve + scripts/encoder.sh (ffmpeg ingest
#                            stays on that namespace's loopback, unimpaired)
#   client side  198.18.0.2  the headless browser(s) + the driver (scripts/ab/driver.mjs;
#                            CDP / WebDriver BiDi on that namespace's loopback)
# The browser reaches the origin as https://h3live.test (certificate generated with
# --host h3live.test). Chromium: --host-resolver-rules, QUIC forced on the h3 port,
# the certificate's SPKI trusted. Firefox (firefox-esr): network.dns.forceResolve, the
# certificate in a fresh profile's NSS store, h3 found by Alt-Svc (web/e2e/firefox.js;
# each play's context reaches h3 before it navigates, see scripts/ab/driver.mjs).
# GSO/TSO are capped to one packet on both veth ends so that a drop or a rate
# limit acts on wire-sized packets.
#
# Path profiles: a name made of '-'-separated parts, each applied per direction:
#   clean       nothing
#   rttN        N ms round trip (N/2 ms one-way delay each way)
#   lossN       N % random loss each way
#   jitterN     normal jitter, σ = N/2 ms each way (RTT varies by about ±N ms)
#   reorder     let jitter reorder packets (default: a packet never overtakes the one before)
#   burst[N]    N % (default 2) bursty loss each way: Gilbert-Elliott, mean burst 3 packets
#   rate[K]     downstream bottleneck of K kbit/s (default 1.5 x the stream's video + audio
#               rate, times the arms with --concurrent), 100 ms queue, tail drop
#   step        ABR rate step: the downstream capacity is --step-high kbit/s,
#               drops to --step-low at --step-at s after each play starts, and comes back
#               --step-hold s later (tc tbf on the origin's veth, set by the driver on that
#               schedule; with this part, 'rate' means the step, not the emulator's rate).
#               Implies --ladder; each arm plays at least step-at + step-hold + step-tail s.
# e.g. rtt50, rtt50-loss1, rtt100-loss3, rtt50-jitter20, rtt100-burst, rtt80-rate (the default set);
#   rate-step, rtt80-rate-step (ABR ladder: switch times per arm in the report).
# Engine: where the kernel has sch_netem, tc netem on each veth's egress (the same
# path, 'h3live pathemu netem-args'); elsewhere 'h3live pathemu run', a user-space
# delay line fed by iptables NFQUEUE on each namespace's incoming veth
# (src/pathemu/). --engine chooses. Before every profile 'h3live pathemu check'
# measures the path (TCP connect time, RTT, one-way delays, jitter, loss per
# direction, rate) against the configuration; a profile that does not measure
# as configured stops the run. Everything is undone on exit and Ctrl-C.
#
# Usage: sudo scripts/ab.sh [options]
#   --profiles LIST   comma list (default clean,rtt50,rtt50-loss1,rtt100-loss3,rtt50-jitter20,
#                     rtt100-burst,rtt80-rate; clean with --loopback)
#   --engine E        auto (default: netem if the kernel has it, else pathemu), netem, pathemu
#   --check-only      only build each profile's path and run its self-check (no origin, no browser)
#   --floor           also search each profile x arm for the latency floor: the lowest target
#                     latency (--floor-latencies, ascending) at which the player runs
#                     --floor-hold seconds after the warm-up with no stall and no frozen picture
#   --floor-only      the floor search without the A/B plays
#   --floor-latencies LIST   default 0.2,0.3,0.5,0.8,1.2,2
#   --floor-hold S    default 60
#   --browser B       chromium (default), firefox, or both: every profile (and every floor
#                     search) in each browser, on the same path; the report has a row per
#                     browser and arm, the floor per browser, and both versions
#   --arms LIST       h3,h1,h2 (default h3,h1,h2); format x transport: dash-h3,hls-h3,hls-h1
#                     (hls-*: the origin's LL-HLS played by hls.js); moq: the origin's Media
#                     over QUIC broadcast played by the MoQ project's player (@moq/watch,
#                     WebTransport, WebCodecs; the origin gets --moq): its target latency
#                     (--latency, --floor-latencies) is that player's jitter buffer, its
#                     default the player's real-time mode; the report adds per-frame arrival
#                     (network) beside glass-to-glass (docs/moq.md)
#   --duration S      seconds each arm plays per profile (default 30)
#   --warmup S        seconds after the first frame left out of the statistics (default 5)
#   --concurrent      play all arms at once in one page (they share the link)
#                     instead of one after another in fresh browser contexts
#   --rounds N        play every arm N times per profile, rotating the arm order
#                     (default 1); the report adds the plays up
#   --screenshots     save a screenshot of the page at the end of each play (raw/*.png)
#   --latency S       target latency for every player (default: the page's, 0.5)
#   --size WxH --fps N --bitrate RATE   encoder settings (default 1280x720, 30, 2M)
#   --rate-kbit N     bottleneck of 'rate' (default: 1.5 x (video + 128k audio),
#                     times the number of arms with --concurrent)
#   --ladder          the encoder pushes the ABR ladder (encoder.sh --ladder: 720p 2M, 432p 900k,
#                     234p 300k + audio); the players switch renditions (rule: --abr)
#   --abr LIST        dash.js ABR rule(s) on the page: throughput (the page's default), l2a,
#                     lolp, dynamic; a comma list (also --abr-rules) plays every arm with
#                     every rule in each round (rules rotate per round like the arms), and the
#                     report compares the rules per transport (docs/abr.md):
#                       sudo scripts/ab.sh --profiles rate-step --arms h3,h2,h1 \
#                         --abr-rules throughput,l2a,lolp,dynamic --rounds 2
#   --seg-duration S  the encoder's segment duration (encoder.sh --seg-duration; default 2)
#   --page-query Q    more query parameters for compare.html, e.g. 'drift=8&abrstart=900'
#   --step-high K --step-low K --step-at S --step-hold S --step-tail S   the 'step' schedule
#                     (default 6000 kbit/s, 700 kbit/s: between the 234p and 432p rungs
#                     with audio; drop at 20 s, back at 40 s, play on for 20 s after that)
#   --out DIR         output folder (default out/ab-YYYYmmdd-HHMMSS)
#   --bin PATH        h3live binary (default target/release/h3live)
#   --serve-arg ARG   extra argument for 'h3live serve' (repeatable), e.g.
#                     --serve-arg --tcp-notsent-lowat=128K to A/B an origin setting
#   --first-mile      the emulated path goes between the encoder relay and the origin instead
#                     (the contribution uplink): ffmpeg and the relay run in a third
#                     namespace (198.18.1.2) and push across the path to the origin
#                     (198.18.1.1); players reach the origin over a clean path. The profile's
#                     downstream part (rate, ...) applies to the relay's upload direction.
#   --both-miles      the profile on both paths: relay -> origin and origin -> players
#   --ingest h1|h3    how the encoder relay pushes to the origin (default h1); a first-mile
#                     A/B compares two runs, e.g.
#                       sudo scripts/ab.sh --first-mile --ingest h1 --profiles rtt50-loss1,rtt100-loss3 --arms h3 --rounds 3
#                       sudo scripts/ab.sh --first-mile --ingest h3 --profiles rtt50-loss1,rtt100-loss3 --arms h3 --rounds 3
#   --loopback        no namespaces, no impairment (clean only), no root needed:
#                     origin + encoder on loopback (ports chosen by the kernel)
#   --running         use the origin + encoder that ./run.sh runs (localhost, ports
#                     4433/4443/4444, certs/cert.pem, stream 'test'); implies --loopback
# Output folder: report.md (table, spread over rounds, verdicts, measured paths, floor),
# summary.json, samples.csv (one row per frame), latency.svg (latency over time, one
# panel per profile), raw/*.json (driver output, raw/P.path.json self-check,
# raw/P.emu-{down,up}.json emulator counters), logs.
set -u  # no -e/pipefail: each step's status is checked where it matters (rc=$?, || die), and the clean-up's undo steps (tc, iptables, netns) must all run even when one fails
cd "$(dirname "$0")/.." || exit 1
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=ab SAY_CLOCK=%T.%3N

DEFAULT_PROFILES="clean,rtt50,rtt50-loss1,rtt100-loss3,rtt50-jitter20,rtt100-burst,rtt80-rate"
PROFILES=""   # default: DEFAULT_PROFILES (clean with --loopback)
ENGINE=auto
CHECK_ONLY=0
FLOOR=0
AB_PLAYS=1
FLOOR_LATENCIES="0.2,0.3,0.5,0.8,1.2,2"
FLOOR_HOLD=60
ARMS="h3,h1,h2"
FIRST_MILE=0   # 1: path between relay and origin; 2: on both paths
INGEST=h1
BROWSER=chromium
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
LADDER=0
ABR=""
PAGE_QUERY=""
SEG=""
STEP_HIGH=6000
STEP_LOW=700
STEP_AT=20
STEP_HOLD=20
STEP_TAIL=20

while [ $# -gt 0 ]; do
  case "$1" in
    --profiles) PROFILES="$2"; shift 2 ;;
    --arms) ARMS="$2"; shift 2 ;;
    --browser) BROWSER="$2"; shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --check-only) CHECK_ONLY=1; shift ;;
    --floor) FLOOR=1; shift ;;
    --floor-only) FLOOR=1; AB_PLAYS=0; shift ;;
    --floor-latencies) FLOOR_LATENCIES="$2"; shift 2 ;;
    --floor-hold) FLOOR_HOLD="$2"; shift 2 ;;
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
    --ladder) LADDER=1; shift ;;
    --abr|--abr-rules) ABR="$2"; shift 2 ;;
    --page-query) PAGE_QUERY="$2"; shift 2 ;;
    --seg-duration) SEG="$2"; shift 2 ;;
    --step-high) STEP_HIGH="$2"; shift 2 ;;
    --step-low) STEP_LOW="$2"; shift 2 ;;
    --step-at) STEP_AT="$2"; shift 2 ;;
    --step-hold) STEP_HOLD="$2"; shift 2 ;;
    --step-tail) STEP_TAIL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --serve-arg) SERVE_ARGS+=("$2"); shift 2 ;;
    --loopback) LOOPBACK=1; shift ;;
    --running) RUNNING=1; LOOPBACK=1; shift ;;
    --first-mile) FIRST_MILE=1; shift ;;
    --both-miles) FIRST_MILE=2; shift ;;
    --ingest) INGEST="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
done

if [ "$LOOPBACK" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "needs root to create network namespaces, iptables rules and tc qdiscs. Run it with sudo, or use --loopback for an unimpaired run without root."
fi
[ -n "$PROFILES" ] || { [ "$LOOPBACK" = 1 ] && PROFILES=clean || PROFILES="$DEFAULT_PROFILES"; }
[ -n "$OUT" ] || OUT="$ROOT/out/ab-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/raw" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/ab.log"
SAY_LOG="$LOG"

# ------------------------------------------------------------------ checks
for c in node openssl curl jq; do command -v "$c" >/dev/null || die "$c not found (scripts/test.sh installs the test dependencies)"; done
[ "$RUNNING" = 1 ] || [ "$CHECK_ONLY" = 1 ] || command -v ffmpeg >/dev/null || die "ffmpeg not found"
if [ "$LOOPBACK" = 0 ]; then
  for c in ip tc iptables; do command -v "$c" >/dev/null || die "$c not found (apt-get install iproute2 iptables)"; done
fi
case "$ENGINE" in auto|netem|pathemu) ;; *) die "--engine: auto, netem or pathemu" ;; esac
case "$BROWSER" in
  chromium|firefox) BROWSERS="$BROWSER" ;;
  both) BROWSERS="chromium,firefox" ;;
  *) die "--browser: chromium, firefox or both" ;;
esac
IFS=, read -r -a BROWSER_LIST <<< "$BROWSERS"
if [ "$CHECK_ONLY" = 0 ] && [ "$BROWSER" != chromium ]; then
  command -v firefox-esr >/dev/null || command -v firefox >/dev/null || [ -n "${FIREFOX:-}" ] \
    || die "Firefox not found (apt-get install firefox-esr, or set FIREFOX=)"
  command -v certutil >/dev/null || die "certutil not found (apt-get install libnss3-tools)"
fi
[ "$CHECK_ONLY" = 1 ] && [ "$LOOPBACK" = 1 ] && die "--check-only needs the namespaces (no --loopback/--running)"
case "$INGEST" in h1|h3) ;; *) die "--ingest: h1 or h3" ;; esac
[ "$FIRST_MILE" != 0 ] && [ "$LOOPBACK" = 1 ] && die "--first-mile/--both-miles need the namespaces (no --loopback/--running)"
[ -d web/node_modules/dashjs ] && [ -d web/node_modules/ws ] || die "web/node_modules missing: run (cd web && npm ci)"
[ -x "$BIN" ] || die "$BIN missing: run cargo build --release"
case "$DURATION$WARMUP$FLOOR_HOLD" in *[!0-9.]*) die "--duration, --warmup and --floor-hold take seconds" ;; esac
case "$FLOOR_LATENCIES" in ''|*[!0-9.,]*) die "--floor-latencies takes a comma list of seconds" ;; esac
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds takes a positive integer" ;; esac
IFS=, read -r -a ABR_LIST <<< "$ABR"
for r in "${ABR_LIST[@]}"; do case "$r" in throughput|l2a|lolp|dynamic) ;; *) die "unknown ABR rule '$r' (throughput, l2a, lolp, dynamic)" ;; esac; done
[ "$FLOOR" = 1 ] && [ ${#ABR_LIST[@]} -gt 1 ] && die "--floor/--floor-only search with one ABR rule at a time (--abr RULE)"
case "$STEP_HIGH$STEP_LOW$STEP_AT$STEP_HOLD$STEP_TAIL" in *[!0-9]*) die "--step-high/--step-low (kbit/s) and --step-at/--step-hold/--step-tail (s) take whole numbers" ;; esac
IFS=, read -r -a ARM_LIST <<< "$ARMS"
MOQ=0
for a in "${ARM_LIST[@]}"; do
  t=${a#dash-}; t=${t#hls-}
  case "$a" in moq) MOQ=1; continue ;; esac
  case "$t" in h3|h1|h2) ;; *) die "unknown arm '$a' (h3, h1, h2, moq; hls-h3 etc. for LL-HLS)" ;; esac
done
[ "$MOQ" = 0 ] || [ -f web/dist/moq-watch.js ] || die "web/dist/moq-watch.js missing (the MoQ player): run (cd web && npm ci)"
# Firefox's WebTransport exposes no negotiated subprotocol, so the MoQ player falls back
# to a SETUP exchange the origin does not speak (docs/player.md).
[ "$MOQ" = 0 ] || [ "$BROWSER" = chromium ] || die "the moq arm plays in Chromium only (--browser chromium)"
IFS=, read -r -a PROFILE_LIST <<< "$PROFILES"
to_kbit() { # 2M / 2500k / 2000000 -> kbit/s
  awk -v r="$1" 'BEGIN{ m=1/1000; if (r ~ /[kK]$/) m=1; else if (r ~ /[mM]$/) m=1000; sub(/[kKmM]$/, "", r); printf "%d", r*m }'
}
N_STREAMS=1; [ "$CONCURRENT" = 1 ] && N_STREAMS=${#ARM_LIST[@]}
[ -n "$RATE_KBIT" ] || RATE_KBIT=$(awk -v v="$(to_kbit "$BITRATE")" -v n="$N_STREAMS" 'BEGIN{printf "%d", 1.5*(v+128)*n}')
# profile_specs NAME: sets DOWN and UP (h3live pathemu spec text, origin ->
# client and back), STEP (1 with the ABR rate step) and PROFILE_DESC. The
# grammar is parsed once, in Rust: h3live pathemu profile (it says what is wrong).
profile_specs() {
  local out
  out=$("$BIN" pathemu profile "$1" --rate-default "$RATE_KBIT") || return 1
  DOWN="" UP="" STEP="" DESC=""
  eval "$out"
  PROFILE_DESC=$DESC
}
for p in "${PROFILE_LIST[@]}"; do
  profile_specs "$p" || die "invalid profile '$p'"
  if [ "$STEP" = 1 ]; then
    [ "$LOOPBACK" = 0 ] || die "profile '$p': the rate step needs the namespaces (no --loopback)"
    [ "$FIRST_MILE" = 0 ] || die "profile '$p': the rate step is a last-mile profile (no --first-mile/--both-miles)"
    LADDER=1
  fi
done

# ---------------------------------------------------------- state, cleanup
TAG="h3ab$$"
NSO="$TAG-o"; NSC="$TAG-c"      # namespaces
VO="${TAG}o"; VC="${TAG}c"      # veth ends (<= 15 characters)
ORIGIN_IP=198.18.0.1; CLIENT_IP=198.18.0.2
# --first-mile: the encoder's namespace and its veth pair to the origin's.
NSE="$TAG-e"; VOE="${TAG}p"; VEE="${TAG}e"
ORIGIN_FM_IP=198.18.1.1; ENCODER_IP=198.18.1.2
EMU_FM_DATA_PID=""; EMU_FM_ACK_PID=""
NS_CREATED=0
ORIGIN_PID=""; ENCODER_PID=""; DRIVER_PID=""; ECHO_PID=""; EMU_DOWN_PID=""; EMU_UP_PID=""
ECHO_PORT=7777
CLEANED=0
# Command prefixes that run a command in a namespace.  Arrays, not functions:
# a backgrounded function would be a subshell, and $! its PID, not the program's.
IN_O=(); IN_C=()
[ "$LOOPBACK" = 1 ] || { IN_O=(ip netns exec "$NSO"); IN_C=(ip netns exec "$NSC"); }
# wait_url (lib.sh) polls from the origin's namespace.
WAIT_URL_VIA=(${IN_O[@]+"${IN_O[@]}"})
# shellcheck disable=SC2317  # cleanup and on_signal run from the traps
cleanup() {
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap '' INT TERM HUP
  stop_pid "$DRIVER_PID" 8 driver
  stop_pid "$EMU_DOWN_PID" 5 "path emulator"
  stop_pid "$EMU_UP_PID" 5 "path emulator"
  stop_pid "$EMU_FM_DATA_PID" 5 "path emulator"
  stop_pid "$EMU_FM_ACK_PID" 5 "path emulator"
  stop_pid "$ECHO_PID" 5 "echo server"
  stop_pid "$ENCODER_PID" 15 encoder
  stop_pid "$ORIGIN_PID" 10 origin
  if [ "$NS_CREATED" = 1 ]; then
    # Anything still running inside our namespaces was started by this script.
    for ns in "$NSC" "$NSO" "$NSE"; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    sleep 0.2
    # Deleting a namespace takes its veth pairs, rules and qdiscs along.
    ip netns del "$NSC" 2>/dev/null; ip netns del "$NSO" 2>/dev/null; ip netns del "$NSE" 2>/dev/null
    say "removed namespaces $NSO, $NSC$([ "$FIRST_MILE" = 0 ] || echo ", $NSE") (veth pairs, iptables rules and qdiscs with them)"
  fi
}
# shellcheck disable=SC2317
on_signal() { say "interrupted: cleaning up"; cleanup; exit 130; }
trap on_signal INT TERM HUP
trap cleanup EXIT

say "output folder: $OUT"
say "browser(s) ${BROWSERS}, arms ${ARMS}, profiles ${PROFILES}, ${DURATION} s per play, $ROUNDS round(s) ($([ "$CONCURRENT" = 1 ] && echo 'all arms at once' || echo 'one arm after another, fresh browser context each')), warm-up ${WARMUP} s"

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
    # shellcheck disable=SC2086  # "NS DEV" split on purpose
    set -- $x
    ip -n "$1" link set lo up
    # One packet per skb: drops and the rate limit then act on wire-sized packets.
    ip -n "$1" link set "$2" gso_max_segs 1 gso_max_size 1500 || die "cannot cap GSO on $2"
    ip -n "$1" link set "$2" up
  done
  if [ "$FIRST_MILE" != 0 ]; then
    say "first mile: namespace $NSE ($ENCODER_IP: ffmpeg + encoder relay), veth $VEE <-> $VOE ($ORIGIN_FM_IP)"
    ip netns add "$NSE" || die "ip netns add failed"
    ip link add "$VOE" netns "$NSO" type veth peer name "$VEE" netns "$NSE" || die "cannot create the first-mile veth pair"
    ip -n "$NSO" addr add "$ORIGIN_FM_IP/30" dev "$VOE"
    ip -n "$NSE" addr add "$ENCODER_IP/30" dev "$VEE"
    ip -n "$NSE" link set lo up
    for x in "$NSO $VOE" "$NSE $VEE"; do
      # shellcheck disable=SC2086
      set -- $x
      ip -n "$1" link set "$2" gso_max_segs 1 gso_max_size 1500 || die "cannot cap GSO on $2"
      ip -n "$1" link set "$2" up
    done
  fi
fi

# Engine: tc netem where the kernel has it (results comparable with other
# machines), else the user-space emulator (h3live pathemu run on NFQUEUE).
NETEM=0
NETEM_WHY="--loopback: no impairment"
if [ "$LOOPBACK" = 0 ]; then
  if err=$(ip netns exec "$NSO" tc qdisc add dev "$VO" root netem delay 1ms 2>&1); then
    NETEM=1; ip netns exec "$NSO" tc qdisc del dev "$VO" root
    NETEM_WHY="the kernel has sch_netem"
  else
    NETEM_WHY="no sch_netem on this kernel (tc: ${err//$'\n'/ })"
  fi
  case "$ENGINE" in
    auto) [ "$NETEM" = 1 ] && ENGINE=netem || ENGINE=pathemu ;;
    netem) [ "$NETEM" = 1 ] || die "--engine netem: $NETEM_WHY" ;;
  esac
  ENGINE_DESC="$ENGINE ($NETEM_WHY)"
  [ "$ENGINE" = pathemu ] && ENGINE_DESC="pathemu: h3live pathemu run, user-space delay line on iptables NFQUEUE at each namespace's incoming veth ($NETEM_WHY)"
  [ "$ENGINE" = netem ] && ENGINE_DESC="netem: tc netem on each veth's egress ($NETEM_WHY)"
  say "path engine: $ENGINE_DESC"
  say "starting the path self-check's echo server on port $ECHO_PORT of the origin's namespace"
  "${IN_O[@]}" "$BIN" pathemu echo --listen "0.0.0.0:$ECHO_PORT" > "$OUT/echo.log" 2>&1 &
  ECHO_PID=$!
else
  ENGINE=none; ENGINE_DESC="none (--loopback)"
fi

RUN_PROFILES=()
SKIPPED=()   # "name|reason"
for p in "${PROFILE_LIST[@]}"; do
  if [ "$LOOPBACK" = 1 ] && [ "$p" != clean ]; then SKIPPED+=("$p|--loopback: no impairment possible"); continue; fi
  RUN_PROFILES+=("$p")
done
for s in "${SKIPPED[@]}"; do say "SKIPPING profile ${s%%|*}: ${s#*|}"; done
[ ${#RUN_PROFILES[@]} -gt 0 ] || die "no profile left to run"

reset_impairment() {
  [ "$LOOPBACK" = 1 ] && return
  ip netns exec "$NSO" iptables -w -t raw -F PREROUTING 2>/dev/null
  ip netns exec "$NSC" iptables -w -t raw -F PREROUTING 2>/dev/null
  stop_pid "$EMU_DOWN_PID" 5 "path emulator"; EMU_DOWN_PID=""
  stop_pid "$EMU_UP_PID" 5 "path emulator"; EMU_UP_PID=""
  ip netns exec "$NSO" tc qdisc del dev "$VO" root 2>/dev/null
  ip netns exec "$NSC" tc qdisc del dev "$VC" root 2>/dev/null
  if [ "$FIRST_MILE" != 0 ]; then
    ip netns exec "$NSE" iptables -w -t raw -F PREROUTING 2>/dev/null
    stop_pid "$EMU_FM_DATA_PID" 5 "path emulator"; EMU_FM_DATA_PID=""
    stop_pid "$EMU_FM_ACK_PID" 5 "path emulator"; EMU_FM_ACK_PID=""
    ip netns exec "$NSO" tc qdisc del dev "$VOE" root 2>/dev/null
    ip netns exec "$NSE" tc qdisc del dev "$VEE" root 2>/dev/null
  fi
  return 0
}
# start_emu NS DEV SPEC STATS [QUEUE]: the user-space engine for packets arriving on DEV in NS
# (NFQUEUE number QUEUE, default 0; the origin's namespace uses 1 for its first-mile veth).
start_emu() {
  "$BIN" pathemu describe "$3" | grep -q '^no impairment$' && return 0
  local q=${5:-0}
  ip netns exec "$1" "$BIN" pathemu run --queue "$q" --spec "$3" --stats "$4" >> "$OUT/pathemu.log" 2>&1 &
  local pid=$! i
  for i in $(seq 1 50); do grep -q "queue $q —" "$OUT/pathemu.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.3   # bound to the queue
  alive "$pid" || { tail -n 5 "$OUT/pathemu.log" >&2; return 1; }
  ip netns exec "$1" iptables -w -t raw -A PREROUTING -i "$2" -j NFQUEUE --queue-num "$q" || return 1
  LAST_EMU_PID=$pid
}
PROFILE_DESC=""
apply_profile() {
  reset_impairment
  profile_specs "$1"
  [ "$FIRST_MILE" = 1 ] && PROFILE_DESC="first mile (relay -> origin): $PROFILE_DESC; players on a clean path"
  [ "$FIRST_MILE" = 2 ] && PROFILE_DESC="$PROFILE_DESC, on both the first mile (relay -> origin) and the last (origin -> players)"
  if [ "$FIRST_MILE" != 1 ]; then
    impair_link "$NSO" "$VO" "$NSC" "$VC" "$DOWN" "$OUT/raw/$1.emu-down.json" 0 || return 1; EMU_DOWN_PID=$LAST_EMU_PID
    impair_link "$NSC" "$VC" "$NSO" "$VO" "$UP" "$OUT/raw/$1.emu-up.json" 0 || return 1; EMU_UP_PID=$LAST_EMU_PID
  fi
  # The first mile carries the stream the other way: the profile's downstream
  # part (DOWN) applies to the relay's uploads (encoder -> origin), UP to the
  # origin's answers and acknowledgements. The origin's namespace already has
  # queue 0 for the last mile: queue 1 there.
  if [ "$FIRST_MILE" != 0 ]; then
    impair_link "$NSE" "$VEE" "$NSO" "$VOE" "$DOWN" "$OUT/raw/$1.emu-first-mile-data.json" 1 || return 1; EMU_FM_DATA_PID=$LAST_EMU_PID
    impair_link "$NSO" "$VOE" "$NSE" "$VEE" "$UP" "$OUT/raw/$1.emu-first-mile-ack.json" 0 || return 1; EMU_FM_ACK_PID=$LAST_EMU_PID
  fi
}
# impair_link FROM_NS FROM_DEV TO_NS TO_DEV SPEC STATS QUEUE: SPEC on the packets
# FROM_DEV sends to TO_DEV: netem on FROM_DEV's egress, or the user-space engine
# on TO_DEV's ingress (NFQUEUE QUEUE, its counters in STATS); LAST_EMU_PID is
# the engine's PID (empty for netem or no impairment).
impair_link() {
  LAST_EMU_PID=""
  case "$ENGINE" in
    # shellcheck disable=SC2046  # netem-args prints the arguments, split on purpose
    netem) [ "$5" = none ] || ip netns exec "$1" tc qdisc add dev "$2" root netem $("$BIN" pathemu netem-args "$5") ;;
    pathemu) start_emu "$3" "$4" "$5" "$6" "$7" ;;
  esac
}
# check_path PROFILE: measure the path; stop the run if it does not match.
check_path() {
  [ "$LOOPBACK" = 1 ] && return 0
  # Last mile: from the players' namespace; "down" is origin -> players. With
  # --first-mile only the first mile is measured, into raw/P.path.* (the
  # report's path table); with --both-miles it goes to raw/P.path-first-mile.*.
  # From the encoder's namespace "down" (origin -> encoder) is the profile's UP.
  local name=path
  if [ "$FIRST_MILE" != 1 ]; then
    measure_path "$1" path "$NSC" "$ORIGIN_IP" "$DOWN" "$UP" "path self-check"
    name=path-first-mile
  fi
  [ "$FIRST_MILE" = 0 ] || measure_path "$1" "$name" "$NSE" "$ORIGIN_FM_IP" "$UP" "$DOWN" "first-mile path self-check"
}
# measure_path PROFILE NAME NS TARGET_IP DOWN UP WHAT: h3live pathemu check from NS
# against the echo server at TARGET_IP into raw/PROFILE.NAME.{txt,json}; stops the
# run if the path does not measure as configured.
measure_path() {
  # The check times the path to a millisecond: a browser of the previous play
  # still shutting down delays the delay line's verdicts and fails it. The
  # encoder of a full run alone takes about 40 % of a 2-core machine.
  if ! wait_quiet 10 50; then
    say "  the machine is still busy ($QUIET_PCT % CPU after 10 s): the $7 may fail on timing"
  fi
  say "  $7 (h3live pathemu check; raw/$1.$2.txt; machine at $QUIET_PCT % CPU before it)"
  ip netns exec "$3" "$BIN" pathemu check --target "$4:$ECHO_PORT" --down "$5" --up "$6" \
    --json "$OUT/raw/$1.$2.json" > "$OUT/raw/$1.$2.txt" 2>&1
  local rc=$?
  sed 's/^/  /' "$OUT/raw/$1.$2.txt" | tee -i -a "$LOG" >&2
  [ "$rc" = 0 ] || die "profile $1: the path ($7) does not measure as configured (engine $ENGINE); no results for a path that is not the one asked for"
}
impairment_stats() { # profile -> raw/PROFILE.net.txt (qdisc counters; the emulator writes its own JSON)
  [ "$LOOPBACK" = 1 ] && return
  local file="$OUT/raw/$1.net.txt"
  {
    echo "== downstream qdisc (egress of the origin's veth)"
    ip netns exec "$NSO" tc -s qdisc show dev "$VO"
    echo "== upstream qdisc (egress of the client's veth)"
    ip netns exec "$NSC" tc -s qdisc show dev "$VC"
    # Drops outside the emulator: a UDP socket buffer that overflowed (RcvbufErrors) is
    # loss the path did not configure; TCP retransmissions show what the path cost.
    echo "== client namespace UDP/TCP counters (since the run started)"
    ip netns exec "$NSC" grep -A1 -E '^(Udp|Tcp):' /proc/net/snmp
    echo "== origin namespace UDP/TCP counters (since the run started)"
    ip netns exec "$NSO" grep -A1 -E '^(Udp|Tcp):' /proc/net/snmp
    if [ "$FIRST_MILE" != 0 ]; then
      echo "== first-mile qdiscs (egress of the encoder's veth, then of the origin's)"
      ip netns exec "$NSE" tc -s qdisc show dev "$VEE"
      ip netns exec "$NSO" tc -s qdisc show dev "$VOE"
      echo "== encoder namespace UDP/TCP counters (since the run started)"
      ip netns exec "$NSE" grep -A1 -E '^(Udp|Tcp):' /proc/net/snmp
    fi
  } > "$file" 2>&1
  # The relay's own account of the upload: errors, re-sends, per-chunk delay.
  if [ -n "${RELAY_ADDR:-}" ]; then
    ${IN_E[@]+"${IN_E[@]}"} curl -fsS --max-time 3 "http://$RELAY_ADDR/metrics" > "$OUT/raw/$1.relay-metrics.txt" 2>/dev/null || true
  fi
}

# ------------------------------------------------------- origin + encoder
if [ "$CHECK_ONLY" = 1 ]; then
  say "--check-only: no origin, no encoder, no browser"
elif [ "$RUNNING" = 1 ]; then
  HOST=localhost; STREAM="test"
  PORTS="h3=$DEFAULT_H3_PORT,h1=$DEFAULT_H1_PORT,h2=$DEFAULT_H2_PORT,moq=$DEFAULT_MOQ_PORT"
  CERT="$ROOT/certs/cert.pem"
  [ -f "$CERT" ] || die "$CERT missing: is ./run.sh running?"
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$DEFAULT_HTTP_PORT/live/test/manifest.mpd" \
    || die "no live stream at http://127.0.0.1:$DEFAULT_HTTP_PORT/live/test/ (start ./run.sh first)"
  say "using the running origin + encoder (./run.sh): stream 'test' on localhost"
else
  say "certificate for $HOST"
  "$BIN" cert --out "$OUT/certs" --host "$HOST" > "$OUT/certs.txt" 2>&1 || die "h3live cert failed: $(cat "$OUT/certs.txt")"
  CERT="$OUT/certs/cert.pem"
  [ "$LOOPBACK" = 1 ] && HOST=localhost
  # Every listener on port 0: the origin reports the ports it got (h3 and
  # https share one, as do the cleartext and h3 ingest) in origin.ports. The
  # MoQ endpoint only when a moq arm plays: the HTTP arms' runs stay as they were.
  MOQ_ARGS=(); [ "$MOQ" = 1 ] && MOQ_ARGS=(--moq "[::]:0")
  # Ingest (cleartext and h3) on loopback, or for --first-mile on every
  # address of the origin's namespace (the encoder's relay comes over the veth).
  INGEST_ADDR=127.0.0.1
  [ "$FIRST_MILE" != 0 ] && INGEST_ADDR=0.0.0.0
  STATE=(--state-dir "$(new_state_dir "$OUT/state")")
  for a in ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"}; do [[ $a == --state-dir* ]] && STATE=(); done
  say "starting origin (log origin.log)"
  "${IN_O[@]}" "$BIN" serve --http "$INGEST_ADDR:0" --h3-ingest "$INGEST_ADDR:0" --h3 "[::]:0" --https "[::]:0" \
    --https-h1 "[::]:0" --https-h2 "[::]:0" --ports-file "$OUT/origin.ports" --cert "$CERT" --key "$OUT/certs/key.pem" \
    --web-dir "$ROOT/web" ${MOQ_ARGS[@]+"${MOQ_ARGS[@]}"} ${STATE[@]+"${STATE[@]}"} ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} > "$OUT/origin.log" 2>&1 &
  ORIGIN_PID=$!
  wait_ports "$OUT/origin.ports" 10 "$ORIGIN_PID" || { tail -n 20 "$OUT/origin.log" >&2; die "origin did not come up"; }
  HTTP_PORT=$(port_of "$OUT/origin.ports" http) H3_PORT=$(port_of "$OUT/origin.ports" h3)
  H1_PORT=$(port_of "$OUT/origin.ports" https_h1) H2_PORT=$(port_of "$OUT/origin.ports" https_h2)
  MOQ_PORT=$(port_of "$OUT/origin.ports" moq)
  PORTS="h3=$H3_PORT,h1=$H1_PORT,h2=$H2_PORT,moq=${MOQ_PORT:-0}"
  say "origin ports: ingest $INGEST_ADDR:$HTTP_PORT (TCP and h3), h3 + https $H3_PORT, https-h1 $H1_PORT, https-h2 $H2_PORT$([ "$MOQ" = 1 ] && echo ", MoQ $MOQ_PORT")"
  wait_url "http://127.0.0.1:$HTTP_PORT/time" 10 "$ORIGIN_PID" || { tail -n 20 "$OUT/origin.log" >&2; die "origin did not come up"; }
  # ffmpeg pushes through the encoder relay (encoder.sh's default), over --ingest:
  # on the origin's loopback, or for --first-mile from the encoder's namespace
  # across the first-mile path (a longer timeout there: a lossy path must not
  # make the relay give up on a connection that is only slow).
  ENC=(--origin "http://127.0.0.1:$HTTP_PORT" --ingest-transport "$INGEST" --relay-arg "--ca=$CERT"
    --stream "$STREAM" --size "$SIZE" --fps "$FPS" --bitrate "$BITRATE")
  IN_ENC=(${IN_O[@]+"${IN_O[@]}"})
  if [ "$FIRST_MILE" != 0 ]; then
    ENC=(--origin "http://$ORIGIN_FM_IP:$HTTP_PORT" --ingest-transport "$INGEST" --relay-arg "--ca=$CERT"
      --relay-arg "--server-name=$HOST" --relay-arg "--upstream-timeout=10s"
      --stream "$STREAM" --size "$SIZE" --fps "$FPS" --bitrate "$BITRATE")
    IN_ENC=(ip netns exec "$NSE")
  fi
  IN_E=(${IN_ENC[@]+"${IN_ENC[@]}"})
  [ "$LADDER" = 1 ] && ENC+=(--ladder)
  [ -n "$SEG" ] && ENC+=(--seg-duration "$SEG")
  say "starting encoder: ${SIZE}@${FPS} ${BITRATE}, relay pushing over $INGEST$([ "$FIRST_MILE" != 0 ] && echo " across the first-mile path") (log encoder.log)"
  "${IN_ENC[@]}" "$ROOT/scripts/encoder.sh" "${ENC[@]}" > "$OUT/encoder.log" 2>&1 &
  ENCODER_PID=$!
  wait_url "http://127.0.0.1:$HTTP_PORT/live/$STREAM/manifest.mpd" 30 "$ENCODER_PID" || { tail -n 20 "$OUT/encoder.log" >&2; die "the manifest did not go live"; }
  say "stream is live (origin pid $ORIGIN_PID, encoder pid $ENCODER_PID)"
  RELAY_ADDR=$(sed -n 's/.*relay (pid [0-9]*) on \([0-9.:]*\) .*/\1/p' "$OUT/encoder.log" | tail -n 1)
  if [ "$LOOPBACK" = 0 ]; then
    "${IN_C[@]}" curl -fsS -k -o /dev/null --max-time 3 --resolve "$HOST:$H1_PORT:$ORIGIN_IP" "https://$HOST:$H1_PORT/healthz" \
      || die "the client namespace cannot reach https://$HOST:$H1_PORT (veth setup?)"
    say "client namespace reaches the origin at $HOST ($ORIGIN_IP)"
  fi
  sleep 2   # let a first segment start, so players join a running stream
fi

# ------------------------------------------------------------ metadata
SETUP="loopback"
[ "$LOOPBACK" = 1 ] || SETUP="netns + veth ($ORIGIN_IP origin, $CLIENT_IP client), GSO capped to 1 packet"
if [ "$FIRST_MILE" != 0 ]; then
  SETUP="$SETUP; first mile: ffmpeg + encoder relay in a third namespace ($ENCODER_IP) pushing to the origin ($ORIGIN_FM_IP) across the emulated path"
  [ "$FIRST_MILE" = 1 ] && SETUP="$SETUP, players on a clean path"
fi
[ "$RUNNING" = 1 ] || SETUP="$SETUP; ingest: encoder relay over $INGEST"
# meta.json, written by jq (a JSON encoder: any text is escaped right); each
# profile is added to it as it is applied.
skipped_json=$(for s in ${SKIPPED[@]+"${SKIPPED[@]}"}; do jq -n --arg p "${s%%|*}" --arg r "${s#*|}" '{profile: $p, reason: $r}'; done | jq -s .)
floor_json=null
[ "$FLOOR" = 1 ] && floor_json=$(jq -n --argjson l "[$FLOOR_LATENCIES]" --argjson h "$FLOOR_HOLD" '{latencies: $l, holdS: $h}')
jq -n \
  --arg date "$(date -Iseconds)" \
  --arg machine "$(uname -srm); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //'))" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" \
  --arg commit "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')" \
  --arg ffmpeg "$(ffmpeg -version 2>/dev/null | head -1 | cut -d' ' -f1-3)" \
  --arg setup "$SETUP" \
  --argjson firstMile "$([ "$FIRST_MILE" = 0 ] && echo false || echo true)" \
  --argjson bothMiles "$([ "$FIRST_MILE" = 2 ] && echo true || echo false)" --arg ingest "$INGEST" \
  --arg mode "$([ "$CONCURRENT" = 1 ] && echo concurrent || echo sequential)" \
  --arg encoder "$([ "$LADDER" = 1 ] && echo "ABR ladder 1280x720 2M, 768x432 900k, 416x234 300k" || echo "${SIZE} ${BITRATE}")@${FPS}, ${SEG:-2} s segments, one CMAF fragment per frame" \
  --arg abr "${ABR:-throughput}" \
  --argjson step "{\"highKbit\": $STEP_HIGH, \"lowKbit\": $STEP_LOW, \"atS\": $STEP_AT, \"holdS\": $STEP_HOLD}" \
  --arg latency "${LATENCY:-0.5}" \
  --arg moqJitter "$([ -n "$LATENCY" ] && echo "${LATENCY} s" || echo real-time)" \
  --argjson duration "$DURATION" --argjson warmup "$WARMUP" --argjson rounds "$ROUNDS" \
  --arg arms "$ARMS" --arg engine "$ENGINE" --arg engineDesc "$ENGINE_DESC" \
  --argjson browsers "$(printf '%s\n' "${BROWSER_LIST[@]}" | jq -R . | jq -s .)" \
  --argjson floor "$floor_json" --argjson abPlays "$([ "$AB_PLAYS" = 1 ] && echo true || echo false)" \
  --argjson skipped "$skipped_json" \
  '{date: $date, machine: $machine, load: $load, commit: $commit, ffmpeg: $ffmpeg, setup: $setup,
    firstMile: $firstMile, bothMiles: $bothMiles, ingest: $ingest, mode: $mode,
    encoder: $encoder, abr: $abr, step: $step, targetLatencyS: $latency, moqJitter: $moqJitter, durationS: $duration,
    warmupS: $warmup, rounds: $rounds, arms: $arms, browsers: $browsers, engine: $engine, engineDesc: $engineDesc,
    floor: $floor, abPlays: $abPlays,
    skipped: $skipped, profiles: {}}' > "$OUT/meta.json.part" || die "cannot write meta.json"

# -------------------------------------------------------------- profiles
DRIVER_ARGS=(--host "$HOST" --cert "${CERT:-}" --stream "$STREAM" --ports "${PORTS:-}" --warmup "$WARMUP")
[ "$LOOPBACK" = 0 ] && DRIVER_ARGS+=(--ip "$ORIGIN_IP")
[ "$CONCURRENT" = 1 ] && DRIVER_ARGS+=(--concurrent)
[ -n "$ABR" ] && DRIVER_ARGS+=(--abr "$ABR")
[ -n "$PAGE_QUERY" ] && DRIVER_ARGS+=(--page-query "$PAGE_QUERY")
# step_args: the driver's rate-step schedule for the current profile (tbf on the
# origin's veth: the downstream bottleneck), relative to each play's start.
step_args() {
  STEP_ARGS=()
  [ "$STEP" = 1 ] || return 0
  [ "$ENGINE" = netem ] && [ "$DOWN" != none ] && die "the rate step (tbf on $VO) and netem on the same veth: use --engine pathemu"
  local tbf="ip netns exec $NSO tc qdisc replace dev $VO root tbf burst 32kbit latency 100ms rate"
  STEP_ARGS=(--step "0:high:$tbf ${STEP_HIGH}kbit;$STEP_AT:low:$tbf ${STEP_LOW}kbit;$((STEP_AT + STEP_HOLD)):high:$tbf ${STEP_HIGH}kbit")
}
# run_driver OUTFILE PROFILE ARGS...: one driver run in the client namespace; sets rc.
run_driver() {
  local out="$1" prof="$2"; shift 2
  "${IN_C[@]}" node "$ROOT/scripts/ab/driver.mjs" --out "$out" --profile "$prof" --path "$PROFILE_DESC" "${DRIVER_ARGS[@]}" "$@" \
    2> >(tee -i -a "$LOG" >&2) &
  DRIVER_PID=$!
  wait "$DRIVER_PID"; rc=$?
  DRIVER_PID=""
}
emu_stats() { # PROFILE: the user-space emulator's final counters, one line per direction
  local d e
  for d in down up; do
    e="$OUT/raw/$1.emu-$d.json"
    # shellcheck disable=SC2016  # a JavaScript template literal
    [ -f "$e" ] && say "  emulator $d: $(node -e 'const s=require(process.argv[1]); console.log(`${s.packets} packets, ${s.dropped_loss} lost, ${s.dropped_queue} queue drops, most held ${s.max_held}, verdict lateness p99 ${s.late_p99_us} µs (max ${s.late_max_us}), CPU ${s.cpu_s.toFixed(2)} s in ${s.wall_s.toFixed(0)} s`)' "$e")"
  done
}
IFS=, read -r -a FLOOR_LIST <<< "$FLOOR_LATENCIES"
n=0
for p in "${RUN_PROFILES[@]}"; do
  n=$((n + 1))
  apply_profile "$p" || die "could not apply profile $p (engine $ENGINE)"
  say "profile $n/${#RUN_PROFILES[@]}: $p — $PROFILE_DESC [down: $DOWN; up: $UP]"
  check_path "$p"
  jq --arg p "$p" --arg desc "$PROFILE_DESC" --arg down "$DOWN" --arg up "$UP" \
    '.profiles[$p] = {desc: $desc, down: $down, up: $up}' "$OUT/meta.json.part" > "$OUT/meta.json.tmp" \
    && mv "$OUT/meta.json.tmp" "$OUT/meta.json.part"
  if [ "$CHECK_ONLY" = 1 ]; then reset_impairment; emu_stats "$p"; continue; fi
  if [ "$AB_PLAYS" = 1 ]; then
    SHOT=(); [ "$SCREENSHOTS" = 1 ] && SHOT=(--screenshot "$OUT/raw/$p")
    LAT=(); [ -n "$LATENCY" ] && LAT=(--latency "$LATENCY")
    step_args
    DUR_P="$DURATION"
    [ "$STEP" = 1 ] && DUR_P=$(awk -v d="$DURATION" -v m="$((STEP_AT + STEP_HOLD + STEP_TAIL))" 'BEGIN{print (d < m ? m : d)}')
    run_driver "$OUT/raw/$p.json" "$p" --browser "$BROWSERS" --arms "$ARMS" --rounds "$ROUNDS" --duration "$DUR_P" "${LAT[@]}" "${SHOT[@]}" ${STEP_ARGS[@]+"${STEP_ARGS[@]}"}
    [ "$STEP" = 1 ] && ip netns exec "$NSO" tc qdisc del dev "$VO" root 2>/dev/null
    [ "$rc" = 0 ] || say "driver exited with code $rc for profile $p (see ab.log)"
  fi
  if [ "$FLOOR" = 1 ]; then
    # Ascending target latencies; a play ends early at its first stall or frozen picture
    # after the warm-up, and the first latency that holds is the floor.
    # One search per arm and browser (--browser both: each arm in both before the next arm).
    for a in "${ARM_LIST[@]}"; do
      for b in "${BROWSER_LIST[@]}"; do
        held=""
        for l in "${FLOOR_LIST[@]}"; do
          f="$OUT/raw/$p.floor.$b.$a.$l.json"
          say "  floor $p/$b/$a: target latency $l s, must hold $FLOOR_HOLD s after a ${WARMUP} s warm-up"
          for attempt in 1 2; do
            run_driver "$f" "$p" --browser "$b" --arms "$a" --latency "$l" --duration "$(awk -v h="$FLOOR_HOLD" -v w="$WARMUP" 'BEGIN{print h+w+15}')" \
              --hold "$FLOOR_HOLD"
            # A driver that failed before playing (e.g. the browser did not start) is not a
            # failed trial: try once more.
            [ "$rc" != 0 ] && node -e 'const r=require(process.argv[1]); process.exit(r.plays && r.plays.length ? 1 : 0)' "$f" 2>/dev/null \
              && [ "$attempt" = 1 ] && { say "  floor $p/$b/$a: the driver failed before playing (exit $rc), once more"; continue; }
            break
          done
          if verdict=$(node "$ROOT/scripts/ab/floor.mjs" "$f" --warmup "$WARMUP" --hold "$FLOOR_HOLD"); then
            say "  floor $p/$b/$a: $l s held ($verdict)"; held=$l; break
          fi
          say "  floor $p/$b/$a: $l s failed ($verdict)"
        done
        [ -n "$held" ] || say "  floor $p/$b/$a: no target latency up to ${FLOOR_LIST[-1]} s held"
        alive "$ORIGIN_PID" || [ "$RUNNING" = 1 ] || die "origin exited (see origin.log)"
      done
    done
  fi
  reset_impairment
  impairment_stats "$p"
  emu_stats "$p"
  alive "$ORIGIN_PID" || [ "$RUNNING" = 1 ] || die "origin exited (see origin.log)"
done
reset_impairment
mv "$OUT/meta.json.part" "$OUT/meta.json"

if [ "$CHECK_ONLY" = 1 ]; then
  say "all ${#RUN_PROFILES[@]} profile(s) measure as configured (engine $ENGINE); details in raw/*.path.txt"
  exit 0
fi
say "writing the report"
node "$ROOT/scripts/ab/report.mjs" "$OUT" 2>&1 | tee -i -a "$LOG"
exit "${PIPESTATUS[0]}"
