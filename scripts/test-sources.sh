#!/usr/bin/env bash
# scripts/test-sources.sh — scripts/encoder.sh's inputs and video encoders, without
# a browser (web/e2e/sources.js plays them in one):
#   1. every --video-encoder (libx264, h264_nvenc, h264_vaapi, h264_qsv,
#      h264_videotoolbox) and every input kind (file, v4l2 camera, avfoundation
#      camera with audio, raw ffmpeg input), and the two camera set-ups of the
#      original launchers (v4l2 + VAAPI, avfoundation + VideoToolbox):
#      `encoder.sh --dry-run` prints a command whose every option exists for
#      its encoder, demuxer and muxer, with valid named values, pixel format
#      and filters (scripts/ffmpeg-check.py against this ffmpeg's own option
#      lists; h264_videotoolbox and avfoundation, absent from Linux builds,
#      against ffmpeg 5.1's option tables). The checker first proves it
#      catches wrong options (an x264 option given to VAAPI, an unknown NVENC
#      tuning, a pixel format VAAPI does not take, a VideoToolbox option newer
#      than 5.1, a misspelt filter);
#   2. a real run of each encoder and camera this machine lacks fails at once
#      (exit 1, before ffmpeg starts) with a message naming the missing
#      device or encoder; a case whose device is present here is skipped, and
#      said so;
#   3. a media file input (scripts/test-clip.sh: 4 s, motion, a scene cut,
#      25 fps, 44.1 kHz audio) encoded looped for 9 s to a local DASH
#      directory: video frames exactly 1/30 s apart and audio packets
#      without a gap or overlap, across two loop points.
# Needs ffmpeg, ffprobe, python3. Ends with "test-sources: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX=test-sources

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); say "PASS $*"; }
ko() { FAIL=$((FAIL + 1)); say "FAIL $*"; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/h3live-sources.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CLIP="$TMP/clip.mp4"
scripts/test-clip.sh "$CLIP"

# dry ARGS...: the command `encoder.sh --dry-run ARGS` prints, in the array CMD.
dry() {
  local out
  out=$(scripts/encoder.sh --dry-run "$@" 2>/dev/null) || return 1
  eval "CMD=($out)"
}
# add FILE LABEL: append the command in CMD to FILE (for ffmpeg-check.py --file).
add() { printf '# %s\n%s\n' "$2" "$(printf '%q ' "${CMD[@]}")" >> "$1"; }

# judge clean|wrong FILE: run the checker over the commands in FILE, one PASS or
# FAIL each: every command must check clean, or (wrong) every one must be caught.
judge() {
  local want=$1 line
  # One line per command: the checker's report line, then its problems after " | ".
  python3 scripts/ffmpeg-check.py --file "$2" | awk '
    /^    / { sub(/^ +/, ""); b = b " | " $0; next }
    { if (b != "") print b; b = $0 }
    END { if (b != "") print b }' > "$2.out" || true
  while IFS= read -r line; do
    case "$want:$line" in
      clean:*": ok "*) ok "$line" ;;
      clean:*) ko "$line" ;;
      wrong:*": ok "*) ko "the checker misses ${line%%: *}" ;;
      wrong:*) ok "the checker catches ${line%%: *}: ${line#* | }" ;;
    esac
  done < "$2.out"
}

# --- 1. dry-run commands against ffmpeg's option lists ---------------------------
step "1. every encoder and input: the dry-run command against ffmpeg's own option lists"
# The checker must catch wrong options: each of these commands has one.
# wrong LABEL AFTER ARGS...: the command in GOOD with ARGS inserted after the word AFTER.
wrong() {
  local label=$1 after=$2 w; shift 2
  CMD=()
  for w in "${GOOD[@]}"; do
    CMD+=("$w")
    if [ "$w" = "$after" ]; then CMD+=("$@"); fi
  done
  add "$TMP/wrong.txt" "$label"
}
dry --video-encoder h264_vaapi; GOOD=("${CMD[@]}")
wrong "an x264 option given to VAAPI" h264_vaapi -tune zerolatency
wrong "a value that is no VAAPI rate-control mode" h264_vaapi -rc_mode LOWLATENCY
wrong "a pixel format VAAPI does not take" h264_vaapi -pix_fmt yuv420p
wrong "an unknown option before an input" -nostats -stream_loop_count 3
CMD=("${GOOD[@]/hwupload/hwuplod}"); add "$TMP/wrong.txt" "a misspelt filter"
dry --video-encoder h264_nvenc; GOOD=("${CMD[@]}")
wrong "an unknown NVENC tuning" h264_nvenc -tune:v ultralow
dry --video-encoder h264_videotoolbox; GOOD=("${CMD[@]}")
wrong "a VideoToolbox option newer than ffmpeg 5.1" h264_videotoolbox -constant_bit_rate 1
judge wrong "$TMP/wrong.txt"

# The commands encoder.sh prints.
case_() { local label=$1; shift; if dry "$@"; then add "$TMP/good.txt" "$label"; else ko "$label: encoder.sh --dry-run $* failed"; fi; }
for e in libx264 h264_nvenc h264_vaapi h264_qsv h264_videotoolbox; do case_ "--video-encoder $e" --video-encoder "$e"; done
case_ "--input FILE (looped, its audio)" --input "$CLIP"
case_ "--input v4l2:/dev/video0 --camera-format mjpeg" --input v4l2:/dev/video0 --camera-format mjpeg
case_ "--input avfoundation:0:0 (camera + microphone)" --input avfoundation:0:0
case_ "--input ffmpeg:'-f x11grab ...'" --input "ffmpeg:-f x11grab -framerate 30 -video_size 1280x720 -i :0.0+0,0"
case_ "Linux camera + VAAPI" --input v4l2:/dev/video2 --video-encoder h264_vaapi --hw-device /dev/dri/renderD129
case_ "macOS camera + VideoToolbox" --input avfoundation:1 --camera-size 1920x1080 --video-encoder h264_videotoolbox
case_ "ABR ladder from a file" --input "$CLIP" --ladder
judge clean "$TMP/good.txt"

# --- 2. a real run without the device fails with a clear message -----------------
step "2. a real run of what this machine lacks fails at once, naming what is missing"
# fails_with WHY PATTERN ARGS...: encoder.sh ARGS exits 1 before starting ffmpeg and says PATTERN.
fails_with() {
  local why=$1 pat=$2 out rc=0; shift 2
  out=$(scripts/encoder.sh --no-restart --origin http://127.0.0.1:9 "$@" 2>&1) || rc=$?
  if [ "$rc" = 1 ] && grep -q "error: .*$pat" <<<"$out" && ! grep -q "ffmpeg started" <<<"$out"; then
    ok "$* fails: $(grep 'error:' <<<"$out" | head -1 | sed 's/^\[[^]]*\] //')"
  else ko "$* ($why): exit $rc, expected exit 1 and an error naming '$pat': $out"; fi
}
if [ -e /dev/nvidiactl ]; then say "skipped: h264_nvenc (an NVIDIA device is present)"
else fails_with "no NVIDIA device" /dev/nvidiactl --video-encoder h264_nvenc; fi
if [ -e /dev/dri/renderD128 ]; then say "skipped: h264_vaapi and h264_qsv on /dev/dri/renderD128 (present)"
else
  fails_with "no render node" /dev/dri/renderD128 --video-encoder h264_vaapi
  fails_with "no render node" /dev/dri/renderD128 --video-encoder h264_qsv
fi
fails_with "a render node that does not exist" /dev/dri/renderD199 --video-encoder h264_vaapi --hw-device /dev/dri/renderD199
if [ "$(uname -s)" = Darwin ]; then say "skipped: macOS-only cases (this is macOS)"
else
  fails_with "not macOS" "h264_videotoolbox" --video-encoder h264_videotoolbox
  fails_with "not macOS" "avfoundation" --input avfoundation:0
fi
if [ -e /dev/video0 ]; then say "skipped: v4l2:/dev/video0 (present)"
else fails_with "no camera" /dev/video0 --input v4l2:/dev/video0; fi
fails_with "no such file" "$TMP/missing.mp4" --input "$TMP/missing.mp4"

# --- 3. a file input loops with continuous timestamps ---------------------------
step "3. a file input, looped: continuous video and audio timestamps across the loop points"
OUTD="$TMP/dash"
if scripts/encoder.sh --no-restart --input "$CLIP" --size 640x360 --bitrate 600k --duration 9 \
    --output "$OUTD/manifest.mpd" > "$TMP/encoder.log" 2>&1; then
  ok "encoder.sh --input FILE --duration 9 ran ($(grep -o 'input [^)]*' "$TMP/encoder.log" | head -1))"
else ko "encoder.sh --input FILE failed: $(tail -5 "$TMP/encoder.log")"; fi
for st in 0 1; do
  what=$([ "$st" = 0 ] && echo video || echo audio)
  want=$([ "$st" = 0 ] && echo 0.033333 || echo 0.021333)  # 1/30 s; 1024 samples at 48 kHz
  if ! ls "$OUTD"/chunk-stream$st-*.m4s >/dev/null 2>&1; then ko "$what: no segments"; continue; fi
  cat "$OUTD/init-stream$st.m4s" "$OUTD"/chunk-stream$st-*.m4s > "$TMP/s$st.mp4"
  res=$(ffprobe -v error -select_streams 0 -show_entries packet=pts_time -of csv=p=0 "$TMP/s$st.mp4" |
    awk -v want="$want" 'NR > 1 { d = $1 - prev; if (d < want - 0.0005 || d > want + 0.0005) bad++ }
      { prev = $1; n++ } END { printf "%d %d %.3f", n, bad, prev }')
  read -r n bad last <<<"$res"
  if [ "$bad" = 0 ] && awk "BEGIN { exit !($last > 8) }"; then
    ok "$what: $n packets, every step ${want} s, up to ${last} s (two loop points of the 4 s clip)"
  else ko "$what: $n packets, $bad steps not ${want} s, last at ${last} s"; fi
done

echo
say "test-sources: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
