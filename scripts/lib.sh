# shellcheck shell=bash
# scripts/lib.sh — the shell helpers the repository's scripts share. Source it
# (bash; run.sh, encoder.sh and chrome.sh also run on macOS's bash 3.2):
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"      from scripts/
#   . scripts/lib.sh                               after cd to the repository root
#
# Messages: a script names itself before it calls say/die/step:
#   SAY_PREFIX=run       "[run] message"            (default: the script's file name)
#   SAY_CLOCK=%T         "[encoder 12:00:01] ..."   a date(1) format, or
#   SAY_CLOCK=elapsed    "[interop +12s] ..."       seconds since the script started
#   SAY_LOG=FILE         every message is also appended to FILE
# All messages go to stderr (stdout stays for a script's output).
#
# Sourcing sets no shell option and starts nothing: each script states its own
# strictness (set -euo pipefail). Every helper works under set -euo pipefail:
# a helper reports failure by its exit status and never exits the script,
# except die.

# Default ports of the demo: the same as `h3live serve`'s own defaults
# (src/cli.rs): cleartext ingest + playback, h3 (UDP) + HTTPS h2/h1 (TCP) on
# one port, HTTPS HTTP/1.1 only, HTTPS h2 only.
# shellcheck disable=SC2034  # used by the scripts that source this file
DEFAULT_HTTP_PORT=8080 DEFAULT_H3_PORT=4433 DEFAULT_H1_PORT=4443 DEFAULT_H2_PORT=4444 DEFAULT_MOQ_PORT=4435

# _say_clock: the time for a message, as SAY_CLOCK asks (nothing when unset).
_say_clock() {
  case "${SAY_CLOCK:-}" in
    "") ;;
    elapsed) printf '+%ss' "$SECONDS" ;;
    *) date +"$SAY_CLOCK" ;;
  esac
}

# _emit STYLE HEAD TAIL: the line HEAD TAIL to stderr, HEAD in the ANSI STYLE on
# a terminal; also appended to $SAY_LOG.
_emit() {
  if [ -t 2 ]; then printf '\033[%sm%s\033[0m%s\n' "$1" "$2" "$3" >&2; else printf '%s%s\n' "$2" "$3" >&2; fi
  if [ -n "${SAY_LOG:-}" ]; then printf '%s%s\n' "$2" "$3" >> "$SAY_LOG"; fi
  return 0
}

# _say_tag: "[PREFIX CLOCK]" for the current message.
_say_tag() {
  local clock
  clock=$(_say_clock)
  printf '[%s%s]' "${SAY_PREFIX:-${0##*/}}" "${clock:+ $clock}"
}

# say MESSAGE...: one line to stderr (bold tag on a terminal), and to $SAY_LOG.
say() { _emit 1 "$(_say_tag)" " $*"; }

# die MESSAGE...: say "error: MESSAGE" (red on a terminal) and exit 1. In a
# subshell or $(...) it ends only that subshell.
die() {
  _emit "1;31" "$(_say_tag) error: $*" ""
  exit 1
}

# step TITLE...: a section header ("=== [CLOCK] TITLE") after a blank line.
step() {
  local clock
  clock=$(_say_clock)
  printf '\n' >&2
  _emit 1 "=== ${clock:+[$clock] }$*" ""
}

# alive PID: PID is set and the process exists.
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# wait_until SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds
# (status 0) or SECONDS (whole seconds) have passed (status 1).
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# cpu_busy_pct: the share of all cores' time spent busy (not idle, not
# waiting for I/O) over the next second, in whole percent (/proc/stat).
cpu_busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  echo "$a $b" | awk '{ busy = $3 - $1; all = busy + $4 - $2; print (all > 0 ? int(100 * busy / all) : 0) }'
}

# wait_quiet SECONDS PCT: wait until the machine's CPU use over one second is
# at most PCT %, at most SECONDS (status 1 then); QUIET_PCT is the last reading.
wait_quiet() {
  local end=$((SECONDS + $1))
  QUIET_PCT=$(cpu_busy_pct)
  while [ "$QUIET_PCT" -gt "$2" ]; do
    [ "$SECONDS" -lt "$end" ] || return 1
    QUIET_PCT=$(cpu_busy_pct)
  done
}

# wait_url URL SECONDS [PID]: wait until URL answers with a 2xx status, at most
# SECONDS; with PID, fail as soon as that process has exited (the server that
# should answer died). The certificate is not checked (-k): this waits for a
# listener, it does not test TLS. Set the array WAIT_URL_VIA to a command
# prefix to run curl elsewhere, e.g. WAIT_URL_VIA=(ip netns exec NS).
wait_url() {
  local url=$1 end=$((SECONDS + $2)) pid=${3:-}
  while :; do
    if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
    ${WAIT_URL_VIA[@]+"${WAIT_URL_VIA[@]}"} curl -fsSk -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# stop_pid [-g] PID [SECONDS [NAME]]: stop a process this script started:
# SIGTERM, up to SECONDS (default 10) for it to exit, then SIGKILL (said, with
# NAME); then reap it if it is this shell's child. With -g, PID leads a process
# group (started with setsid, or under set -m) and the whole group is signalled
# and waited for. An empty PID, or a process that has exited: nothing to do.
# Always succeeds.
stop_pid() {
  local target=""
  if [ "${1:-}" = -g ]; then target=-; shift; fi
  local pid=${1:-} secs=${2:-10} name=${3:-process}
  [ -n "$pid" ] || return 0
  target="$target$pid"
  if kill -0 -- "$target" 2>/dev/null; then
    kill -TERM -- "$target" 2>/dev/null || true
    local i=0
    while kill -0 -- "$target" 2>/dev/null && [ "$i" -lt $((secs * 10)) ]; do
      sleep 0.1
      i=$((i + 1))
    done
    if kill -0 -- "$target" 2>/dev/null; then
      say "$name (pid $pid) did not stop within ${secs} s: killing it"
      kill -KILL -- "$target" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# port_busy PORT: something listens on PORT (TCP or UDP, any address). Linux (ss).
port_busy() { [ -n "$(ss -Hltun "( sport = :$1 )" 2>/dev/null)" ]; }

# wait_ports FILE SECONDS [PID]: wait until a server started with
# --ports-file FILE (h3live serve, front, interop-server; their listeners on
# port 0) has written FILE, at most SECONDS; with PID, fail as soon as that
# process has exited. The server binds port 0 itself and reports what it got:
# no port is picked here and released for another program to take first.
wait_ports() {
  local file=$1 end=$((SECONDS + $2)) pid=${3:-}
  until [ -s "$file" ]; do
    if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# port_of FILE NAME: the port of listener NAME in a ports file (http, h3, h3_ingest,
# https, https_h1, https_h2 for serve and front; quic for interop-server).
port_of() { sed -n "s/^$2=//p" "$1"; }

# new_state_dir DIR: a new, empty directory under DIR for a throwaway
# origin's --state-dir, printed. Without the flag, `h3live serve` keeps init
# segments in a per-user directory named after its ingest address, which a
# test or benchmark origin must neither fill nor restore from (another run on
# the same port would). Every build of the binary accepts a directory.
new_state_dir() { mkdir -p "$1" && mktemp -d "$1/state.XXXXXX"; }

# apt_install PACKAGE...: install Debian packages without recommends, non-
# interactively (sudo when not root). Nothing to do without arguments.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "missing packages $*: run as root or install them"; return 1; }
    sudo=(sudo)
  fi
  say "apt-get install $*"
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
}

# spki_of CERT: base64 SHA-256 of CERT's public key, what Chromium's
# --ignore-certificate-errors-spki-list takes (needed for h3 to a self-signed origin).
spki_of() {
  openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | openssl enc -base64
}

# proc_ticks PID: CPU time (user + system) of PID in clock ticks (getconf CLK_TCK).
# proc_rss_kb PID: resident memory of PID in kB. Both Linux (/proc); both fail
# when PID is gone. (The name in /proc/PID/stat may hold spaces: fields are
# counted after its closing parenthesis.)
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null; }
proc_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# sample_while WATCH PID [TICKS_PID]: while process WATCH runs (e.g. a load
# tool), sample PID's resident memory every 0.5 s, and TICKS_PID's CPU ticks;
# then print "PEAK_RSS_KB TICKS": the largest RSS seen (from the first
# sample on) and TICKS_PID's ticks at the last sample before it exited (0
# without TICKS_PID). Linux (/proc).
sample_while() {
  local watch=$1 pid=$2 tpid=${3:-} peak r ticks=0 x
  peak=$(proc_rss_kb "$pid" || echo 0)
  while kill -0 "$watch" 2>/dev/null; do
    r=$(proc_rss_kb "$pid" || echo 0)
    [ "${r:-0}" -gt "$peak" ] && peak=$r
    if [ -n "$tpid" ] && x=$(proc_ticks "$tpid") && [ -n "$x" ]; then ticks=$x; fi
    sleep 0.5
  done
  echo "$peak $ticks"
}
