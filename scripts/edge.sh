#!/usr/bin/env bash
# The edge tier on one machine: origin + replayed stream + 2 edge nodes
# (Varnish with deploy/varnish/h3live.vcl, and `h3live front` for HTTP/3,
# HTTP/2 and HTTP/1.1 over TLS in front of it), with `h3live load` viewers.
#
#   origin :B+80 (ingest, Varnish's backend), :B+90 h3 / :B+91 h1-tls (direct viewers)
#   edge 1: varnish :B+11, front :B+12 (h3 + h2/h1 TLS), :B+13 (h1-tls), :B+14 (h2),
#           :B+16 (front's cleartext listener: its /metrics)
#   edge 2: varnish :B+21, front :B+22, :B+23, :B+24, :B+26
#   origin relay (--origin-delay): :B+81
#   hot standby (--standby): standby origin :B+82, encoder relay :B+83
#
# Default run (about 2.5 min):
#   1. steady state, concurrently: N viewers on edge 1 over h3, N on edge 2
#      over h1-tls, and small reference groups: direct to the origin (h3 and
#      h1-clear) and straight to edge 1's Varnish (h1-clear). Reported per
#      group: prft -> last byte p50/p99, errors, stalls, bytes; per edge: origin
#      GETs per segment (varnishncsa -b), and the origin's own count.
#   2. the same viewers while (b) edge 2's Varnish restarts, (c) the encoder
#      (replay) restarts, (a) the origin restarts; errors, stalls, segments
#      delivered and origin GETs per segment per event.
# --player instead checks the player page through the edges: the real
# encoder (scripts/encoder.sh) feeds the origin, and headless Chromium
# (web/e2e/e2e.js) plays https://localhost:EDGE1/?stream=edge over h3 and
# https://localhost:EDGE2_H1/?stream=edge over HTTP/1.1+TLS: page, dash.js,
# manifest, segments and /time all through Varnish and the front. Needs
# ffmpeg, chromium, node and web/node_modules (scripts/test.sh installs them).
# --prefetch instead measures origin-assisted prefetch: the steady state twice,
# the fronts started with --no-prefetch, then with prefetch on; per edge, the
# time from a segment's first byte at the origin (/streams) to its first byte
# at the first viewer of that edge (h3live load's per-segment first byte), and
# origin GETs per segment. --origin-delay MS puts a user-space TCP relay
# adding MS ms each way between the Varnish nodes and the origin (a distant
# origin; on loopback the round trip an edge saves is next to nothing).
# --standby instead runs the hot standby: the encoder relay (h3live relay)
# feeds the replayed stream to two origins, the primary (:B+80) and a standby
# (:B+82); both edges' VCL fetch from the primary while its probe is good and
# from the standby otherwise (a fetch that cannot reach the primary is tried
# on the standby at once). N viewers on each edge (edge 1 over h3, edge 2 over
# HTTP/1.1+TLS) for 24 s; at 8 s the primary gets kill -9. Reported per group:
# segments, errors, stalls (a segment ending more than one segment duration
# late), viewers still playing; who served the live segments (each origin's
# live-chunk count before and after the kill).
# --compare-fronts instead measures the protocol fronts on one edge: Caddy
# (reverse_proxy, flush_interval -1) vs `h3live front`, h3 and h1-tls, N
# viewers each: added latency (same-run direct reference group subtracted),
# CPU seconds per delivered GB and peak RSS of the front process.
#
# Output: OUT/report.md (tables), OUT/raw/ (load JSON, varnishncsa logs,
# varnishstat, metrics), OUT/logs/. Installs varnish (and caddy for
# --compare-fronts) with apt-get when missing.
#
# Usage: scripts/edge.sh [--viewers N] [--duration SECS] [--compare-fronts]
#          [--player] [--prefetch] [--origin-delay MS] [--standby] [--no-restarts]
#          [--base-port B] [--capture DIR] [--out DIR] [--pin] [--no-build]
#   --viewers N     viewers per edge group (default 50)
#   --duration S    seconds per measured run (default 20)
#   --base-port B   first port of the block of 100 used (default 18400)
#   --capture DIR   replay this capture (h3live load record) instead of a synthetic one
#   --pin           origin, Varnish, replay and load tool on CPU 0, the fronts on CPU 1
#                   (on 2 cores CPU 0 then saturates and h3 viewers stall through
#                   any front; the numbers in docs/results/ are unpinned)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=edge SAY_CLOCK=%T

VIEWERS=50
DURATION=20
COMPARE=0
PLAYER=0
RESTARTS=1
B=18400
CAPTURE=""
OUT=""
PIN=0
BUILD=1
PREFETCH_RUNS=0
ORIGIN_DELAY=0
PREFETCH=1
STANDBY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --viewers) VIEWERS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --compare-fronts) COMPARE=1 ;;
    --player) PLAYER=1 ;;
    --prefetch) PREFETCH_RUNS=1 ;;
    --origin-delay) ORIGIN_DELAY="$2"; shift ;;
    --standby) STANDBY=1 ;;
    --no-restarts) RESTARTS=0 ;;
    --base-port) B="$2"; shift ;;
    --capture) CAPTURE="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --pin) PIN=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) say "unknown option $1 (--help)"; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------- dependencies
need=()
[ -x /usr/sbin/varnishd ] || need+=(varnish)
[ "$COMPARE" = 1 ] && ! command -v caddy >/dev/null && need+=(caddy)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
# Debian starts the packaged services where systemd runs; ours use their own ports and work dirs.
apt_install ${need[@]+"${need[@]}"}

OUT=${OUT:-target/edge/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
BIN=$PWD/target/release/h3live
VCL_SRC=$PWD/deploy/varnish/h3live.vcl
STREAM=edge
CLK_TCK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true

if [ "$BUILD" = 1 ]; then
  step "cargo build --release"
  cargo build --release --locked >&2
fi
[ -x "$BIN" ] || die "no $BIN (build first)"

P_ORIGIN=$((B + 80)) P_DIRECT_H3=$((B + 90)) P_DIRECT_H1=$((B + 91)) P_RELAY=$((B + 81))
P_STANDBY=$((B + 82)) P_ENCODER_RELAY=$((B + 83))
# What the Varnish nodes fetch from: the origin, or the delaying relay in front of it.
P_BACKEND=$P_ORIGIN
[ "$ORIGIN_DELAY" != 0 ] && P_BACKEND=$P_RELAY
p_varnish() { echo $((B + 10 * $1 + 1)); }
p_front() { echo $((B + 10 * $1 + 2)); }   # h3 (UDP) + h2/h1 TLS (TCP)
p_front_h1() { echo $((B + 10 * $1 + 3)); }
p_front_h2() { echo $((B + 10 * $1 + 4)); }
p_caddy() { echo $((B + 10 * $1 + 5)); }
p_front_http() { echo $((B + 10 * $1 + 6)); }
for p in $P_ORIGIN $P_RELAY $P_STANDBY $P_ENCODER_RELAY $P_DIRECT_H3 $P_DIRECT_H1 $(for e in 1 2; do echo "$(p_varnish $e) $(p_front $e) $(p_front_h1 $e) $(p_front_h2 $e) $(p_caddy $e) $(p_front_http $e)"; done); do
  if port_busy "$p"; then die "port $p is in use (choose another --base-port)"; fi
done

CPU0=() CPU1=()
if [ "$PIN" = 1 ]; then CPU0=(taskset -c 0); CPU1=(taskset -c 1); fi

# ---------------------------------------------------------------- processes
declare -A PID
cleanup() {
  for k in "${!PID[@]}"; do stop_pid "${PID[$k]}" 5 "$k"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # name
  stop_pid "${PID[$1]:-}" 10 "$1"
  unset "PID[$1]"
}

"$BIN" cert --out "$OUT/certs" >/dev/null
CERT=$OUT/certs/cert.pem KEY=$OUT/certs/key.pem

if [ -z "$CAPTURE" ]; then
  CAPTURE=$OUT/capture
  "$BIN" load synth -o "$CAPTURE" --duration 30s --segment 2s >&2
fi

start_origin() {
  "${CPU0[@]}" "$BIN" serve --http 127.0.0.1:$P_ORIGIN --h3 127.0.0.1:$P_DIRECT_H3 --https off \
    --https-h1 127.0.0.1:$P_DIRECT_H1 --https-h2 off --cert "$CERT" --key "$KEY" \
    --keep-segments 10 --max-connections-per-ip 0 --state-dir "$(new_state_dir "$OUT/state")" \
    >> "$OUT/logs/origin.log" 2>&1 &
  PID[origin]=$!
  wait_url "http://127.0.0.1:$P_ORIGIN/healthz" 10 "${PID[origin]}" || die "origin did not start"
}
start_replay() {
  "${CPU0[@]}" "$BIN" load replay -c "$CAPTURE" --ingest 127.0.0.1:$P_ORIGIN --stream $STREAM \
    >> "$OUT/logs/replay.log" 2>&1 &
  PID[replay]=$!
}
start_varnish() { # edge
  local e=$1
  # Both backends are the origin (or the delaying relay), or with --standby the
  # primary and the standby.
  local standby=$P_BACKEND
  [ "$STANDBY" = 1 ] && standby=$P_STANDBY
  sed -e "s/^\(\s*\.port = \)\"[0-9]*\";\(\s*# BACKEND port\)/\1\"$P_BACKEND\";\2/" \
      -e "s/^\(\s*\.port = \)\"[0-9]*\";\(\s*# STANDBY port\)/\1\"$standby\";\2/" "$VCL_SRC" > "$OUT/edge$e.vcl"
  grep -q "\"$standby\";.*# STANDBY port" "$OUT/edge$e.vcl" || die "the VCL has no STANDBY port line"
  "${CPU0[@]}" varnishd -F -j none -n "$OUT/varnish$e" -a 127.0.0.1:"$(p_varnish "$e")" -T none \
    -p backend_idle_timeout=20 -f "$OUT/edge$e.vcl" -s malloc,256m >> "$OUT/logs/varnish$e.log" 2>&1 &
  PID[varnish$e]=$!
  wait_url "http://127.0.0.1:$(p_varnish "$e")/healthz" 20 "${PID[varnish$e]}" || die "varnish $e did not start"
  # Every backend request: time, URL, status, fetch error (a 503 with
  # "unhealthy"/"errno"/"no backend" never reached the origin).
  varnishncsa -n "$OUT/varnish$e" -b -F '%{%s}t %U %s %{VSL:FetchError}x' >> "$OUT/raw/backend$e.log" 2>/dev/null &
  PID[ncsa$e]=$!
}
start_front() { # edge
  local e=$1
  # Dual-stack: Chromium reaches "localhost" over QUIC on ::1 only.
  local pf=()
  [ "$PREFETCH" = 1 ] || pf=(--no-prefetch)
  # The cleartext listener (loopback) serves the front's own /metrics.
  "${CPU1[@]}" "$BIN" front --upstream "http://127.0.0.1:$(p_varnish "$e")" --http 127.0.0.1:"$(p_front_http "$e")" \
    --h3 "[::]:$(p_front "$e")" --https "[::]:$(p_front "$e")" \
    --https-h1 "[::]:$(p_front_h1 "$e")" --https-h2 "[::]:$(p_front_h2 "$e")" \
    --cert "$CERT" --key "$KEY" --web-dir "$PWD/web" "${pf[@]+"${pf[@]}"}" >> "$OUT/logs/front$e.log" 2>&1 &
  PID[front$e]=$!
  wait_url "https://127.0.0.1:$(p_front_h1 "$e")/healthz" 10 "${PID[front$e]}" || die "front $e did not start"
}
# --origin-delay: a TCP relay from :P_RELAY to the origin that holds every
# piece it forwards for ORIGIN_DELAY ms, each way (a distant origin).
start_relay() {
  "${CPU0[@]}" python3 - "$P_RELAY" "$P_ORIGIN" "$ORIGIN_DELAY" >> "$OUT/logs/relay.log" 2>&1 <<'EOF' &
import asyncio, sys
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    async def pump():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
    task = asyncio.create_task(pump())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((loop.time() + delay, b""))
    await task

async def client(reader, writer):
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, w2), pipe(r2, writer), return_exceptions=True)

async def main():
    server = await asyncio.start_server(client, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
  PID[relay]=$!
  wait_url "http://127.0.0.1:$P_RELAY/healthz" 10 "${PID[relay]}" || die "origin relay did not start"
}
start_caddy() { # edge
  local e=$1
  local dir=$OUT/caddy$e
  mkdir -p "$dir"
  cat > "$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
	}
}
https://:$(p_caddy "$e") {
	tls $CERT $KEY
	reverse_proxy 127.0.0.1:$(p_varnish "$e") {
		flush_interval -1
	}
}
EOF
  XDG_DATA_HOME=$dir XDG_CONFIG_HOME=$dir "${CPU1[@]}" caddy run --config "$dir/Caddyfile" --adapter caddyfile \
    >> "$OUT/logs/caddy$e.log" 2>&1 &
  PID[caddy$e]=$!
  wait_url "https://127.0.0.1:$(p_caddy "$e")/healthz" 10 "${PID[caddy$e]}" || die "caddy $e did not start"
}

vstat() { varnishstat -n "$OUT/varnish$1" -1 -f "$2" 2>/dev/null | awk '{print $2}'; }
origin_200() { curl -sf "http://127.0.0.1:$P_ORIGIN/metrics" | awk -F' ' '/^h3live_responses_total\{transport="h1-clear",status="200"\}/ {print $2}'; }

# One viewer group in the background: name transport addr n
LOADS=()
LOAD_EXTRA=()
load_group() {
  local name=$1 t=$2 addr=$3 n=$4 dur=$5
  "${CPU0[@]}" "$BIN" load -q -t "$t" --addr "$addr" --ca "$CERT" --stream $STREAM -n "$n" -d "${dur}s" ${LOAD_EXTRA[@]+"${LOAD_EXTRA[@]}"} \
    --ramp 2s --wait 30s --json "$OUT/raw/$RUN-$name.json" > /dev/null 2> "$OUT/raw/$RUN-$name.log" &
  LOADS+=($!)
}
wait_loads() { for p in "${LOADS[@]}"; do wait "$p" || true; done; LOADS=(); }

say "output: $OUT"
say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); varnish $(varnishd -V 2>&1 | head -1 | sed 's/.*(\(varnish-[^ ]*\).*/\1/')"

if [ "$PLAYER" = 1 ]; then
  step "origin on :$P_ORIGIN, real encoder; edges 1 and 2"
  start_origin
  scripts/encoder.sh --origin "http://127.0.0.1:$P_ORIGIN" --stream $STREAM >> "$OUT/logs/encoder.log" 2>&1 &
  PID[encoder]=$!
  wait_url "http://127.0.0.1:$P_ORIGIN/live/$STREAM/manifest.mpd" 20 "${PID[encoder]}" || die "no manifest from the encoder"
  for e in 1 2; do start_varnish $e; start_front $e; done
  SPKI=$("$BIN" cert --show --out "$OUT/certs" | sed -n 's/^SPKI SHA-256 (base64): //p')
  rc=0
  step "Chromium, h3, through edge 1: https://localhost:$(p_front 1)/?stream=$STREAM"
  node web/e2e/e2e.js --url "https://localhost:$(p_front 1)/?stream=$STREAM" --expect h3 --spki "$SPKI" \
    --quic "localhost:$(p_front 1)" --duration "$DURATION" 2>&1 | tee "$OUT/raw/player-edge1-h3.log" || rc=1
  step "Chromium, HTTP/1.1 over TLS, through edge 2: https://localhost:$(p_front_h1 2)/?stream=$STREAM"
  node web/e2e/e2e.js --url "https://localhost:$(p_front_h1 2)/?stream=$STREAM" --expect http/1.1 --spki "$SPKI" \
    --duration "$DURATION" 2>&1 | tee "$OUT/raw/player-edge2-h1.log" || rc=1
  for e in 1 2; do say "edge $e backend requests: $(vstat $e MAIN.backend_req), client requests: $(vstat $e MAIN.client_req)"; done
  exit $rc
fi

# ================================================================ hot standby
if [ "$STANDBY" = 1 ]; then
  step "primary origin :$P_ORIGIN, standby :$P_STANDBY, encoder relay :$P_ENCODER_RELAY feeding both, replay of $CAPTURE"
  start_origin
  "${CPU0[@]}" "$BIN" serve --http 127.0.0.1:$P_STANDBY --h3 off --https off --https-h1 off --https-h2 off \
    --keep-segments 10 --max-connections-per-ip 0 >> "$OUT/logs/standby.log" 2>&1 &
  PID[standby]=$!
  wait_url "http://127.0.0.1:$P_STANDBY/healthz" 10 "${PID[standby]}" || die "standby did not start"
  "${CPU0[@]}" "$BIN" relay --listen 127.0.0.1:$P_ENCODER_RELAY --origin "http://127.0.0.1:$P_ORIGIN" \
    --origin "http://127.0.0.1:$P_STANDBY" >> "$OUT/logs/encoder-relay.log" 2>&1 &
  PID[encoder_relay]=$!
  wait_url "http://127.0.0.1:$P_ENCODER_RELAY/healthz" 10 "${PID[encoder_relay]}" || die "encoder relay did not start"
  "${CPU0[@]}" "$BIN" load replay -c "$CAPTURE" --ingest 127.0.0.1:$P_ENCODER_RELAY --stream $STREAM \
    >> "$OUT/logs/replay.log" 2>&1 &
  PID[replay]=$!
  wait_url "http://127.0.0.1:$P_STANDBY/live/$STREAM/manifest.mpd" 15 "${PID[replay]}" || die "no manifest on the standby"
  for e in 1 2; do start_varnish $e; start_front $e; done
  # Live chunks an origin handed to waiting readers (the edges' fetches).
  live_chunks() { curl -sf "http://127.0.0.1:$1/metrics" | awk '/^h3live_origin_delay_seconds_count\{transport="h1-clear"\}/ {print $2}'; }
  RUN=standby EVDUR=24
  # A stall: a segment ending more than one segment duration late.
  LOAD_EXTRA=(--stall-margin 2s)
  step "$VIEWERS viewers on edge 1 (h3) and edge 2 (h1-tls), ${EVDUR}s; kill -9 of the primary at 8 s"
  load_group edge1-h3 h3 127.0.0.1:"$(p_front 1)" "$VIEWERS" "$EVDUR"
  load_group edge2-h1tls h1-tls 127.0.0.1:"$(p_front_h1 2)" "$VIEWERS" "$EVDUR"
  sleep 8
  p0=$(live_chunks $P_ORIGIN) s0=$(live_chunks $P_STANDBY)
  kill -KILL "${PID[origin]}"; wait "${PID[origin]}" 2>/dev/null || true; unset "PID[origin]"
  say "primary killed (it had handed ${p0:-0} live chunks to the edges, the standby ${s0:-0})"
  wait_loads
  s1=$(live_chunks $P_STANDBY)
  curl -sf "http://127.0.0.1:$P_ENCODER_RELAY/metrics" > "$OUT/raw/encoder-relay-metrics.txt" || true
  python3 - "$OUT" "$VIEWERS" "${p0:-0}" "${s0:-0}" "${s1:-0}" <<'EOF'
import json, sys
out, viewers = sys.argv[1], int(sys.argv[2])
p0, s0, s1 = (int(float(x)) for x in sys.argv[3:6])
L = ["# Hot standby: kill -9 of the primary origin under viewers", "",
     f"Encoder relay feeding the primary and the standby; both edges' VCL with the fallback director. {viewers} viewers per edge, 24 s, primary killed at 8 s.", "",
     "| viewers at | viewers | segments | errors | error kinds | stalls (> 1 segment late) | playing at end |", "|---|---:|---:|---:|---|---:|---:|"]
ok = True
for key, label in (("edge1-h3", "edge 1 front, h3"), ("edge2-h1tls", "edge 2 front, h1-tls")):
    g = json.load(open(f"{out}/raw/standby-{key}.json"))
    kinds = "; ".join(f"{k} ×{v}" for k, v in sorted(g["error_kinds"].items(), key=lambda kv: -kv[1])[:2]) or "–"
    L.append(f"| {label} | {g['viewers']} | {g['segments']} | {g['errors']} | {kinds} | {g['stalls']} | {g['connected']}/{g['viewers']} |")
    ok = ok and g["connected"] == g["viewers"]
L += ["", f"Live chunks handed to the edges: primary {p0} before the kill; standby {s0} before, {s1} after "
      f"({'the standby served the edges after the kill' if s1 > s0 else 'NOTHING from the standby'})."]
text = "\n".join(L) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
sys.exit(0 if ok and s1 > s0 else 1)
EOF
  exit $?
fi

step "origin on :$P_ORIGIN, replay of $CAPTURE"
start_origin
start_replay
wait_url "http://127.0.0.1:$P_ORIGIN/live/$STREAM/manifest.mpd" 15 "${PID[replay]}" || die "no manifest from the replay"
if [ "$ORIGIN_DELAY" != 0 ]; then
  step "relay :$P_RELAY -> origin, ${ORIGIN_DELAY} ms each way"
  start_relay
fi

# ================================================================ compare fronts
if [ "$COMPARE" = 1 ]; then
  step "edge 1: varnish :$(p_varnish 1), h3live front :$(p_front 1)/:$(p_front_h1 1), caddy :$(p_caddy 1)"
  start_varnish 1
  start_front 1
  start_caddy 1
  sleep 3
  : > "$OUT/raw/fronts.jsonl"
  for front in h3live caddy; do
    for t in h3 h1-tls; do
      RUN=cmp-$front-$t
      if [ "$front" = caddy ]; then pid=${PID[caddy1]}; addr=127.0.0.1:$(p_caddy 1)
      elif [ "$t" = h3 ]; then pid=${PID[front1]}; addr=127.0.0.1:$(p_front 1)
      else pid=${PID[front1]}; addr=127.0.0.1:$(p_front_h1 1); fi
      if [ "$t" = h3 ]; then daddr=127.0.0.1:$P_DIRECT_H3; else daddr=127.0.0.1:$P_DIRECT_H1; fi
      step "$front $t: $VIEWERS viewers through the edge + 10 direct, ${DURATION}s"
      # Varnish's cache process (the manager's child) does the caching work.
      vpid=$(pgrep -P "${PID[varnish1]}" | head -1)
      t0=$(proc_ticks "$pid" || echo 0); v0=$(proc_ticks "$vpid" || echo 0); rss0=$(proc_rss_kb "$pid" || echo 0)
      load_group edge "$t" "$addr" "$VIEWERS" "$DURATION"
      load_group direct "$t" "$daddr" 10 "$DURATION"
      read -r peak _ < <(sample_while "${LOADS[0]}" "$pid")
      [ "$rss0" -gt "$peak" ] && peak=$rss0
      wait_loads
      t1=$(proc_ticks "$pid" || echo 0); v1=$(proc_ticks "$vpid" || echo 0)
      printf '{"front":"%s","transport":"%s","viewers":%s,"cpu_ticks":%s,"varnish_ticks":%s,"clk_tck":%s,"rss0_kb":%s,"rss_peak_kb":%s}\n' \
        "$front" "$t" "$VIEWERS" "$((t1 - t0))" "$((v1 - v0))" "$CLK_TCK" "$rss0" "$peak" >> "$OUT/raw/fronts.jsonl"
      say "$(tail -n 1 "$OUT/raw/$RUN-edge.log")"
    done
  done
  python3 - "$OUT" "$PIN" <<'EOF'
import json, sys, os
out, pin = sys.argv[1], sys.argv[2] == "1"
rows = [json.loads(l) for l in open(f"{out}/raw/fronts.jsonl")]
lines = ["# Protocol fronts in front of Varnish", "",
         f"Pinned (front on CPU 1, everything else on CPU 0): {'yes' if pin else 'no'}. Load average at the end: {open('/proc/loadavg').read().split()[:3]}", "",
         "| front | transport | viewers | Mbit/s | edge prft p50 / p99 ms | direct p50 / p99 ms | added p50 / p99 ms | front CPU s/GB | front % core | front RSS peak MB | Varnish CPU s/GB | errors | stalls |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    run = f"cmp-{r['front']}-{r['transport']}"
    e = json.load(open(f"{out}/raw/{run}-edge.json")); d = json.load(open(f"{out}/raw/{run}-direct.json"))
    gb = e["bytes"] / 1e9
    cpu = r["cpu_ticks"] / r["clk_tck"]
    el, dl = e["latency"], d["latency"]
    lines.append(f"| {r['front']} | {r['transport']} | {r['viewers']} | {e['mbit_per_s']:.0f} | {el['p50_ms']:.1f} / {el['p99_ms']:.1f} | "
                 f"{dl['p50_ms']:.1f} / {dl['p99_ms']:.1f} | {el['p50_ms']-dl['p50_ms']:.1f} / {el['p99_ms']-dl['p99_ms']:.1f} | "
                 f"{cpu/gb if gb else float('nan'):.2f} | {100*cpu/e['duration_s']:.1f} | {r['rss_peak_kb']/1024:.1f} | "
                 f"{r.get('varnish_ticks', 0) / r['clk_tck'] / gb if gb else float('nan'):.2f} | {e['errors']} | {e['stalls']} |")
text = "\n".join(lines) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
EOF
  exit 0
fi

# ================================================================ two edges
step "edges: varnish :$(p_varnish 1) + front :$(p_front 1); varnish :$(p_varnish 2) + front :$(p_front 2)"
for e in 1 2; do start_varnish $e; start_front $e; done
sleep 3

# All viewer groups of one run, concurrently.
run_groups() { # dur
  load_group edge1-h3 h3 127.0.0.1:"$(p_front 1)" "$VIEWERS" "$1"
  load_group edge2-h1tls h1-tls 127.0.0.1:"$(p_front_h1 2)" "$VIEWERS" "$1"
  load_group varnish1-h1clear h1-clear 127.0.0.1:"$(p_varnish 1)" 10 "$1"
  load_group direct-h3 h3 127.0.0.1:$P_DIRECT_H3 10 "$1"
  load_group direct-h1clear h1-clear 127.0.0.1:$P_ORIGIN 10 "$1"
}
snapshot() { # tag: counters before/after a run
  {
    echo "origin_200 $(origin_200)"
    for e in 1 2; do
      echo "edge${e}_backend_req $(vstat $e MAIN.backend_req)"
      echo "edge${e}_fetch_failed $(vstat $e MAIN.fetch_failed)"
      echo "edge${e}_client_req $(vstat $e MAIN.client_req)"
    done
    echo "time $(date +%s)"
  } > "$OUT/raw/$1.counters"
}

# ================================================================ prefetch on and off
if [ "$PREFETCH_RUNS" = 1 ]; then
  front_prefetch() { # edge: the front's prefetch counters, one "event count" per line
    curl -sf "http://127.0.0.1:$(p_front_http "$1")/metrics" | sed -n 's/^h3live_prefetch_total{event="\([a-z]*\)"} \([0-9]*\)$/\1 \2/p'
  }
  : > "$OUT/raw/prefetch-runs.txt"
  for mode in off on; do
    RUN=prefetch-$mode
    if [ "$mode" = on ]; then PREFETCH=1; else PREFETCH=0; fi
    for e in 1 2; do stop "front$e"; start_front "$e"; done
    step "prefetch $mode: $VIEWERS viewers on edge 1 (h3) and edge 2 (h1-tls), 10 each direct and on Varnish, ${DURATION}s"
    snapshot "$RUN-0"
    # The origin's view of each segment (first byte at ingest), polled while the viewers run.
    ( while :; do curl -sf "http://127.0.0.1:$P_ORIGIN/streams" | tr -d '\n' || true; echo; sleep 2; done ) \
      > "$OUT/raw/$RUN-streams.jsonl" 2>/dev/null &
    poller=$!
    run_groups "$DURATION"
    wait_loads
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
    snapshot "$RUN-1"
    for e in 1 2; do front_prefetch "$e" | sed "s/^/$e /" > "$OUT/raw/$RUN-front.txt.$e"; done
    cat "$OUT/raw/$RUN-front.txt".* > "$OUT/raw/$RUN-front.txt"; rm -f "$OUT/raw/$RUN-front.txt".*
    echo "$mode" >> "$OUT/raw/prefetch-runs.txt"
  done
  python3 - "$OUT" "$VIEWERS" "$DURATION" "$ORIGIN_DELAY" <<'EOF'
import json, sys, os, collections, re
out, viewers, duration, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
NOT_SENT = re.compile(r"unhealthy|errno|no backend")

def counters(tag):
    return {k: float(v) for k, v in (l.split() for l in open(f"{out}/raw/{tag}.counters") if len(l.split()) == 2)}

def origin_first_bytes(run):
    """Segment name -> first byte at the origin, seconds since the epoch."""
    firsts = {}
    for line in open(f"{out}/raw/{run}-streams.jsonl"):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for s in doc.get("streams", []):
            for o in s["objects"]:
                if "chunk-" in o["name"] and o.get("first_byte_unix_us"):
                    firsts.setdefault(o["name"], o["first_byte_unix_us"] / 1e6)
    return firsts

def viewer_first_bytes(run, groups):
    firsts, start = {}, None
    for g in groups:
        p = f"{out}/raw/{run}-{g}.json"
        if not os.path.exists(p):
            continue
        j = json.load(open(p))
        start = j["started_unix_ms"] / 1e3 if start is None else min(start, j["started_unix_ms"] / 1e3)
        for name, us in j.get("first_byte_unix_us", {}).items():
            firsts[name] = min(firsts.get(name, 1e18), us / 1e6)
    return firsts, start

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

def origin_gets(e, t0, t1):
    seg = collections.Counter()
    for l in open(f"{out}/raw/backend{e}.log"):
        p = l.rstrip("\n").split(" ", 3)
        if len(p) == 4 and t0 <= float(p[0]) <= t1 and "/chunk-" in p[1] and not (p[2] == "503" and NOT_SENT.search(p[3])):
            seg[p[1]] += 1
    return seg

edges = {1: ["edge1-h3", "varnish1-h1clear"], 2: ["edge2-h1tls"]}
L = [f"# Origin-assisted prefetch at the edge ({os.path.basename(out)})", "",
     f"{viewers} viewers per edge front group, {duration:.0f} s per run, origin delay {delay} ms each way "
     f"(Varnish to origin); load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}; "
     f"{os.cpu_count()} cores, everything on this machine.", "",
     "First-viewer delay: for each media segment that began at least 5 s into the run, the time from its first byte",
     "at the origin (ingest) to its first byte at the first viewer of the edge (any viewer group on that edge).", "",
     "| prefetch | edge | segments | first-viewer delay p50 / p95 / max ms | origin GETs per segment mean / max | prefetches sent / ok / failed / busy | viewer errors | stalls |",
     "|---|---:|---:|---:|---:|---:|---:|---:|"]
for mode in [l.strip() for l in open(f"{out}/raw/prefetch-runs.txt")]:
    run = f"prefetch-{mode}"
    c0, c1 = counters(f"{run}-0"), counters(f"{run}-1")
    origin = origin_first_bytes(run)
    front = collections.defaultdict(dict)
    for l in open(f"{out}/raw/{run}-front.txt"):
        e, ev, n = l.split()
        front[int(e)][ev] = int(n)
    for e, groups in edges.items():
        firsts, start = viewer_first_bytes(run, groups)
        delays = [(firsts[n] - t) * 1000 for n, t in origin.items() if n in firsts and start and t >= start + 5]
        seg = origin_gets(e, c0["time"], c1["time"])
        mean = sum(seg.values()) / len(seg) if seg else float("nan")
        pf = front[e]
        stats = [json.load(open(f"{out}/raw/{run}-{g}.json")) for g in groups if os.path.exists(f"{out}/raw/{run}-{g}.json")]
        L.append(f"| {mode} | {e} | {len(delays)} | {pct(delays, .5):.1f} / {pct(delays, .95):.1f} / {max(delays, default=float('nan')):.1f} | "
                 f"{mean:.2f} / {max(seg.values(), default=0)} | {pf.get('sent', 0)} / {pf.get('ok', 0)} / {pf.get('failed', 0)} / {pf.get('busy', 0)} | "
                 f"{sum(s['errors'] for s in stats)} | {sum(s['stalls'] for s in stats)} |")
L += ["", "Prefetch counters are the fronts' own (/metrics, cumulative over the front's life: the fronts are",
      "restarted for each run). Origin GETs per segment: varnishncsa backend requests per segment path (query ignored)."]
text = "\n".join(L) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
EOF
  exit 0
fi

RUN=steady
step "steady state: $VIEWERS viewers on edge 1 (h3) and edge 2 (h1-tls), 10 each direct and on Varnish, ${DURATION}s"
snapshot steady-0
run_groups "$DURATION"
wait_loads
snapshot steady-1

# Bytes lost: the complete media segments the origin still holds, fetched
# through every edge path, must be byte-identical to the origin's copy.
step "byte check: complete segments through Varnish, the fronts (h1-tls, h2) vs the origin"
segs=$(curl -sf "http://127.0.0.1:$P_ORIGIN/streams" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["streams"]:
    for o in s["objects"]:
        if o["state"] == "complete" and "chunk-" in o["name"]:
            print(s["name"] + "/" + o["name"])' | sort -r) || true
say "$(wc -w <<< "$segs") complete segments at the origin"
: > "$OUT/raw/bytecheck.txt"
# Newest first: the origin keeps the last --keep-segments per representation,
# and a request for an evicted one is held 2 s before its 404 (skipped).
for seg in $segs; do
  code=$(curl -s --max-time 10 -o "$OUT/raw/ref.bin" -w "%{http_code}" "http://127.0.0.1:$P_ORIGIN/live/$seg" || true)
  [ "$code" = 200 ] || { say "$seg: $code at the origin, skipped"; continue; }
  ref=$(sha256sum < "$OUT/raw/ref.bin" | cut -c1-16)
  for path in "http://127.0.0.1:$(p_varnish 1)" "https://localhost:$(p_front_h1 1)" "https://localhost:$(p_front_h2 2)"; do
    got=$( (curl -sf --max-time 10 --cacert "$CERT" --resolve "localhost:$(p_front_h1 1):127.0.0.1" \
      --resolve "localhost:$(p_front_h2 2):127.0.0.1" "$path/live/$seg" || echo "FAILED $?") | sha256sum | cut -c1-16)
    echo "$seg $path $ref $got $([ "$ref" = "$got" ] && echo same || echo DIFFERENT)" >> "$OUT/raw/bytecheck.txt"
  done
done
rm -f "$OUT/raw/ref.bin"
CHECKS=$(wc -l < "$OUT/raw/bytecheck.txt")
DIFFERENT=$(grep -vc ' same$' "$OUT/raw/bytecheck.txt" || true)
# A mismatch fails the run; it is reported once, at the end, after the report.
[ "$DIFFERENT" = 0 ] && say "$CHECKS fetches through the edges, all identical to the origin's copy"

EVENTS=()
if [ "$RESTARTS" = 1 ]; then
  EVDUR=24
  # The origin restart last: afterwards the origin has lost the init
  # segments, so new sessions straight at the origin cannot start.
  for ev in edge encoder origin; do
    RUN=restart-$ev
    step "restart of the $ev while viewers run (${EVDUR}s, event at 8 s)"
    snapshot "$RUN-0"
    run_groups "$EVDUR"
    sleep 8
    t_ev=$(date +%s.%N)
    case $ev in
      origin) stop origin; sleep 1; start_origin ;;
      edge) stop ncsa2; stop varnish2; sleep 1; start_varnish 2 ;;
      encoder) stop replay; sleep 1; start_replay ;;
    esac
    say "$ev restarted ($(python3 -c "import time; print(f'{time.time() - $t_ev:.1f}')") s down)"
    echo "$t_ev" > "$OUT/raw/$RUN.event"
    wait_loads
    snapshot "$RUN-1"
    EVENTS+=("$ev")
  done
fi

# ---------------------------------------------------------------- report
python3 - "$OUT" "$VIEWERS" "$DURATION" "${EVENTS[@]}" <<'EOF'
import json, sys, collections, glob, os
out, viewers, duration, events = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def counters(tag):
    return {k: float(v) for k, v in (l.split() for l in open(f"{out}/raw/{tag}.counters") if len(l.split()) == 2)}

import re
NOT_SENT = re.compile(r"unhealthy|errno|no backend")

def backend_log(e, t0, t1):
    """Backend requests that reached the origin, as (url, status)."""
    rows = []
    for l in open(f"{out}/raw/backend{e}.log"):
        p = l.rstrip("\n").split(" ", 3)
        if len(p) == 4 and t0 <= float(p[0]) <= t1 and not (p[2] == "503" and NOT_SENT.search(p[3])):
            rows.append((p[1], p[2]))
    return rows

def fetches(e, t0, t1):
    rows = backend_log(e, t0, t1)
    seg = collections.Counter(u for u, s in rows if "/chunk-" in u)
    mpd = sum(1 for u, s in rows if u.endswith(".mpd"))
    init = sum(1 for u, s in rows if "/init-" in u)
    statuses = collections.Counter(s for u, s in rows)
    return seg, mpd, init, statuses

def group(run, name):
    p = f"{out}/raw/{run}-{name}.json"
    return json.load(open(p)) if os.path.exists(p) else None

groups = [("edge1-h3", "edge 1 front, h3"), ("edge2-h1tls", "edge 2 front, h1-tls"),
          ("varnish1-h1clear", "edge 1 Varnish, h1-clear"), ("direct-h3", "origin, h3"), ("direct-h1clear", "origin, h1-clear")]
L = [f"# Edge tier run ({os.path.basename(out)})", "",
     f"Load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}; {os.cpu_count()} cores, everything on this machine.", "",
     f"## Steady state ({duration} s)", "",
     "| viewers at | viewers | Mbit/s | prft p50 / p99 / max ms | added p50 / p99 ms | bytes | errors | stalls |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
ref = {"h3": group("steady", "direct-h3"), "h1-tls": group("steady", "direct-h3"), "h1-clear": group("steady", "direct-h1clear")}
for key, label in groups:
    g = group("steady", key)
    if not g: continue
    l = g["latency"]
    base = ref["h1-clear"] if key.endswith("h1clear") else ref["h3"]
    added = "–" if key.startswith("direct") else f"{l['p50_ms'] - base['latency']['p50_ms']:.1f} / {l['p99_ms'] - base['latency']['p99_ms']:.1f}"
    L.append(f"| {label} | {g['viewers']} | {g['mbit_per_s']:.1f} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} / {l['max_ms']:.1f} | {added} | {g['bytes']} | {g['errors']} | {g['stalls']} |")
L += ["", "Added latency: the group's prft -> last byte minus the direct group of the same run (h3 and h1-tls",
      "groups against direct h3, Varnish h1-clear against direct h1-clear).", ""]

c0, c1 = counters("steady-0"), counters("steady-1")
L += ["| edge | segment URLs | origin GETs per segment (mean / max) | manifest GETs/s | init GETs | failed fetches | viewer requests |", "|---|---:|---:|---:|---:|---:|---:|"]
for e in (1, 2):
    seg, mpd, init, st = fetches(e, c0["time"], c1["time"])
    n = len(seg)
    mean = sum(seg.values()) / n if n else 0
    L.append(f"| {e} | {n} | {mean:.2f} / {max(seg.values()) if n else 0} | {mpd / (c1['time'] - c0['time']):.2f} | {init} | "
             f"{int(c1[f'edge{e}_fetch_failed'] - c0[f'edge{e}_fetch_failed'])} | {int(c1[f'edge{e}_client_req'] - c0[f'edge{e}_client_req'])} |")
be = sum(c1[f"edge{e}_backend_req"] - c0[f"edge{e}_backend_req"] for e in (1, 2))
bc = [l.split() for l in open(f"{out}/raw/bytecheck.txt")]
same = sum(1 for b in bc if b[-1] == "same")
L += ["", f"Bytes lost: {len(bc) - same} of {len(bc)} checks differ ({len(set(b[0] for b in bc))} complete segments, each fetched through "
      "edge 1 Varnish (h1-clear), edge 1 front (h1-tls), edge 2 front (h2), SHA-256 against the origin's copy)."]
L += ["", f"Origin side: {int(c1['origin_200'] - c0['origin_200'])} GETs answered 200 on the cleartext listener "
      f"(both edges' fetches {int(be)}, 2 health probes per second, 10 direct h1-clear viewers).", ""]

what = {"origin": "(a) origin restart (SIGTERM, 1 s down, fresh empty store; the replay keeps pushing, init segments are not re-sent)",
        "edge": "(b) edge 2 Varnish restart (SIGTERM, 1 s down, empty cache)",
        "encoder": "(c) encoder restart (replay stopped, 1 s, started again: numbers from 1, new availabilityStartTime, init re-sent)"}
if events:
    L += ["## Restarts while viewers run", "",
          "| event | viewers at | prft p50 / p99 ms | segments | errors | error kinds | stalls | origin GETs per segment edge 1 / 2 |", "|---|---|---:|---:|---:|---|---:|---:|"]
for ev in events:
    run = f"restart-{ev}"
    c0, c1 = counters(f"{run}-0"), counters(f"{run}-1")
    per = []
    for e in (1, 2):
        seg, mpd, init, st = fetches(e, c0["time"], c1["time"])
        per.append(f"{sum(seg.values()) / len(seg):.2f}" if seg else "–")
    for key, label in groups:
        g = group(run, key)
        if not g: continue
        kinds = "; ".join(f"{k} ×{v}" for k, v in sorted(g["error_kinds"].items(), key=lambda kv: -kv[1])[:3]) or "–"
        L.append(f"| {ev} | {label} | {g['latency']['p50_ms']:.1f} / {g['latency']['p99_ms']:.1f} | {g['segments']} | {g['errors']} | {kinds} | {g['stalls']} | {' / '.join(per)} |")
    L.append(f"| | *{what[ev]}* | | | | | | |")
text = "\n".join(L) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
EOF
[ "$CHECKS" -gt 0 ] || die "byte check: no complete segment at the origin to compare"
if [ "$DIFFERENT" != 0 ]; then
  grep -v ' same$' "$OUT/raw/bytecheck.txt" | sed 's/^/  /' >&2
  die "byte check: $DIFFERENT of $CHECKS fetches through the edges differ from the origin's copy (segment, path, origin and edge SHA-256 above; $OUT/raw/bytecheck.txt)"
fi
