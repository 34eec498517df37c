#!/usr/bin/env bash
# scripts/encoder.sh — timecoded LL-DASH encoder for h3live.
#
# Runs ffmpeg: a picture source (testsrc2 by default; a media file looped in
# real time, a camera, or any ffmpeg input: --input) with the encoder's wall
# clock burned in ("ENCODER hh:mm:ss.mmm") plus a machine-readable timecode
# strip along the bottom of the picture, audio (the input's, else a sine
# tone), one video encoder (libx264 by default, or a hardware encoder:
# --video-encoder), and pushes LL-DASH (CMAF, chunked PUT over HTTP/1.1) to an
# h3live origin.  Inputs and encoders: docs/sources.md.  ffmpeg is supervised: it is restarted with backoff when
# it exits (e.g. the origin is not up yet), and SIGINT/SIGTERM stop it cleanly
# (ffmpeg is asked to quit with 'q', so it finishes its uploads and writes the
# final manifest instead of cutting the PUTs off).
#
# Timecode strip (decoded by web/timecode.js, see docs there):
#   The bottom 2*R pixel rows (R = 2*floor(H/60), at least 8) hold 38 cells of
#   equal width, two rows each.  Top row: the bits, bottom row: the same bits
#   inverted (each cell is self-referencing, so the decoder needs no threshold).
#   cell 0 = 1, cell 1 = 0 (marker), cells 2..33 = V (32 bits, MSB first),
#   cells 34..37 = (sum of the 8 nibbles of V) mod 16, MSB first,
#   with V = (encoder wall-clock time in ms since the Unix epoch) mod 2^32.
#   The time is read per frame inside the filter graph (setpts=RTCTIME, the
#   same moment drawtext's %{localtime} is rendered), i.e. when the frame is
#   produced by the -re paced source: the frame's capture time.
#   Measured (web/test/timecode.test.js, every frame of 5 s of real output,
#   720p30 2 Mbit/s and 360p25 500 kbit/s): every frame decodes exactly to the
#   ms the encoder logged for it (error 0 ms); ffmpeg's prft for the same frame
#   (wall clock when the muxer writes the fragment) is 35-43 ms later (median),
#   p95 < 50 ms, max ~66 ms: the encode + mux delay, never earlier.
#
# Usage: scripts/encoder.sh [options]     (scripts/encoder.sh --help)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SAY_PREFIX=encoder SAY_CLOCK=%T

ORIGIN="${H3LIVE_ORIGIN:-http://127.0.0.1:$DEFAULT_HTTP_PORT}"
STREAM="${H3LIVE_STREAM:-test}"
SIZE="${H3LIVE_SIZE:-1280x720}"
FPS="${H3LIVE_FPS:-30}"
BITRATE="${H3LIVE_BITRATE:-2M}"
SEG="${H3LIVE_SEG_DURATION:-2}"
CHUNKING="${H3LIVE_CHUNKING:-every_frame}"
TARGET_LATENCY="${H3LIVE_TARGET_LATENCY:-0.5}"
WINDOW="${H3LIVE_WINDOW:-5}"
UPDATE_PERIOD="${H3LIVE_UPDATE_PERIOD:-1}"
OUTPUT=""
DURATION=""
TC_LOG=""
RESTART=1
EXEC=0
DRY_RUN=0
LOGLEVEL="${H3LIVE_FFMPEG_LOGLEVEL:-warning}"
LADDER=0
INPUT="${H3LIVE_INPUT:-testsrc}"
AUDIO="${H3LIVE_AUDIO:-auto}"
VENC="${H3LIVE_VIDEO_ENCODER:-libx264}"
HW_DEVICE="${H3LIVE_HW_DEVICE:-/dev/dri/renderD128}"
CAMERA_SIZE="${H3LIVE_CAMERA_SIZE:-}"
CAMERA_FORMAT="${H3LIVE_CAMERA_FORMAT:-}"
# ABR ladder (--ladder): WxH:bitrate:x264preset per rendition, top rendition first.
# Every rung has the top one's aspect ratio exactly, with square pixels: ffmpeg's
# DASH muxer refuses renditions of different aspect ratios in one adaptation set,
# so 854x480 / 426x240 (not exactly 16:9) would need a non-square sample aspect
# ratio (640:639 at 426x240, which a browser shows as 427x240).  768x432 and
# 416x234 are exact 16:9 sizes (the rungs of Apple's HLS authoring spec).
LADDER_SPEC="${H3LIVE_LADDER:-1280x720:2M:veryfast,768x432:900k:veryfast,416x234:300k:veryfast}"

usage() {
  cat <<EOF
Usage: $0 [options]
  --origin URL          origin base URL for ingest (default $ORIGIN) [H3LIVE_ORIGIN];
                        http://user:TOKEN@host:8080 for an origin with --ingest-token
  --stream NAME         stream name: pushes to ORIGIN/live/NAME/manifest.mpd (default $STREAM)
  --size WxH            picture size (default $SIZE)
  --fps N               frame rate (default $FPS)
  --bitrate RATE        video bitrate (default $BITRATE)
  --seg-duration S      segment duration in seconds (default $SEG)
  --chunking MODE       every_frame (default) or a fragment duration in seconds, e.g. 0.2
  --target-latency S    target latency written in the MPD (default $TARGET_LATENCY)
  --window N            segments kept in the MPD (default $WINDOW)
  --update-period S     MPD minimumUpdatePeriod in whole seconds (default $UPDATE_PERIOD; ffmpeg's
                        own default is 500 s, too long for a player to notice an encoder restart)
  --output PATH         write DASH to a local manifest path instead of the origin
  --duration S          stop after S seconds (no restart after a normal end)
  --timecode-log FILE   log each frame's encoded wall clock (µs, "pts:" lines) to FILE
  --no-restart          run ffmpeg once (still stopped cleanly on SIGINT/SIGTERM)
  --exec                run ffmpeg in place of this script (exec, stdin unused): no restart,
                        no clean stop; for callers that own the process (the Rust tests)
  --dry-run             print the ffmpeg command and exit (missing encoders or devices are
                        warnings then, not errors)
  --loglevel LEVEL      ffmpeg log level (default $LOGLEVEL)
  --input SPEC          picture source (default $INPUT) [H3LIVE_INPUT]:
                          testsrc             ffmpeg's test pattern (testsrc2) + a sine tone
                          FILE | file:FILE    a media file, looped for ever in real time
                          camera              the first camera: v4l2:/dev/video0 on Linux,
                                              avfoundation:0 on macOS
                          v4l2:/dev/videoN    a camera on Linux
                          avfoundation:V[:A]  a camera on macOS, video device index V (and
                                              audio device index A)
                          ffmpeg:'ARGS'       ffmpeg input options ending in -i, for experts,
                                              e.g. ffmpeg:'-f x11grab -framerate 30 -i :0'
                        Every input is scaled/padded to --size at --fps and gets the same
                        burned-in clock and timecode strip as the test pattern.
  --audio MODE          auto (default: the input's first audio stream when it has one,
                        else the tone) | input | tone [H3LIVE_AUDIO]
  --camera-size WxH     size asked of a camera (default: --size) [H3LIVE_CAMERA_SIZE]
  --camera-format FMT   camera pixel format or codec, e.g. mjpeg, yuyv422 (v4l2
                        -input_format, avfoundation -pixel_format) [H3LIVE_CAMERA_FORMAT]
  --video-encoder NAME  libx264 (default) | h264_nvenc | h264_vaapi | h264_qsv |
                        h264_videotoolbox, each with low-latency settings; checked at start
                        (in ffmpeg -encoders, device present) [H3LIVE_VIDEO_ENCODER]
  --hw-device PATH      render node for h264_vaapi / h264_qsv (default $HW_DEVICE)
                        [H3LIVE_HW_DEVICE]
  --ladder              ABR ladder (libx264): one ffmpeg, several video renditions from one
                        timecoded picture (the top one's size; --size/--bitrate ignored)
                        plus audio, in one MPD [H3LIVE_LADDER_ON=1]
  --ladder-spec SPEC    renditions, top first, all of the top one's aspect ratio, even
                        sizes (default $LADDER_SPEC) [H3LIVE_LADDER]
Environment variables H3LIVE_* set the same defaults.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --origin) ORIGIN="$2"; shift 2 ;;
    --stream) STREAM="$2"; shift 2 ;;
    --size|--resolution) SIZE="$2"; shift 2 ;;
    --fps) FPS="$2"; shift 2 ;;
    --bitrate) BITRATE="$2"; shift 2 ;;
    --seg-duration) SEG="$2"; shift 2 ;;
    --chunking) CHUNKING="$2"; shift 2 ;;
    --target-latency) TARGET_LATENCY="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --update-period) UPDATE_PERIOD="$2"; shift 2 ;;
    --output) OUTPUT="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --timecode-log) TC_LOG="$2"; shift 2 ;;
    --no-restart) RESTART=0; shift ;;
    --exec) EXEC=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --loglevel) LOGLEVEL="$2"; shift 2 ;;
    --ladder) LADDER=1; shift ;;
    --ladder-spec) LADDER_SPEC="$2"; LADDER=1; shift 2 ;;
    --input) INPUT="$2"; shift 2 ;;
    --audio) AUDIO="$2"; shift 2 ;;
    --camera-size) CAMERA_SIZE="$2"; shift 2 ;;
    --camera-format) CAMERA_FORMAT="$2"; shift 2 ;;
    --video-encoder) VENC="$2"; shift 2 ;;
    --hw-device) HW_DEVICE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) say "unknown option $1"; usage >&2; exit 2 ;;
  esac
done

[ "${H3LIVE_LADDER_ON:-0}" = 1 ] && LADDER=1
if [ "$LADDER" = 1 ]; then
  # The picture (clock + timecode strip) is drawn once at the top rendition's
  # size and then scaled: the strip keeps its proportions (48 px of 720 ->
  # 28.8 of 432 -> 15.6 of 234; web/timecode.js's stripHeight at those sizes is
  # 28 and 16, and its decoder samples the middle half of each strip row).
  IFS=',' read -r -a RUNGS <<< "$LADDER_SPEC"
  SIZE="${RUNGS[0]%%:*}"
  for r in "${RUNGS[@]}"; do
    RS="${r%%:*}"; RW="${RS%x*}"; RH="${RS#*x}"
    case "$RW$RH" in *[!0-9]*|"") say "bad ladder rung '$r' (WxH:bitrate:preset)"; exit 2 ;; esac
    if [ $((RW % 2)) != 0 ] || [ $((RH % 2)) != 0 ] || [ $((RW * ${SIZE#*x})) != $((RH * ${SIZE%x*})) ]; then
      say "ladder rung $RS: sizes must be even and of the top rung's aspect ratio exactly (${SIZE}), e.g. 768x432 and 416x234 for 1280x720"
      exit 2
    fi
  done
fi

command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg not found (run ./run.sh, or apt-get install ffmpeg / brew install ffmpeg)"

W="${SIZE%x*}"; H="${SIZE#*x}"
case "$W$H" in *[!0-9]*|"") say "bad --size $SIZE"; exit 2 ;; esac
ORIGIN="${ORIGIN%/}"
OS="$(uname -s)"
GOP=$(awk "BEGIN{printf \"%d\", $FPS*$SEG + 0.5}")

# --- checks ----------------------------------------------------------------------
# A missing encoder, device or file stops the script with a message naming it;
# with --dry-run it is a warning and the command is printed anyway.
problem() {
  if [ "$DRY_RUN" = 1 ]; then say "warning: $*"; else die "$*"; fi
}
# in_list KIND NAME: NAME is one of ffmpeg's KIND (encoders, demuxers); the
# name column may hold aliases ("video4linux2,v4l2").
in_list() {
  ffmpeg -hide_banner "-$1" 2>/dev/null | awk -v n="$2" '
    { k = split($2, a, ","); for (i = 1; i <= k; i++) if (a[i] == n) f = 1 }
    END { exit !f }'
}
need_encoder() {
  in_list encoders "$1" || problem "this ffmpeg ($(command -v ffmpeg)) has no encoder $1 (see ffmpeg -encoders)${2:+; $2}"
}
need_demuxer() {
  in_list demuxers "$1" || problem "this ffmpeg ($(command -v ffmpeg)) has no $1 input (see ffmpeg -demuxers)${2:+; $2}"
}
# need_device PATH WHAT: PATH is a character device this user can open.
need_device() {
  if [ ! -e "$1" ]; then problem "$2: $1 not found"
  elif [ ! -c "$1" ]; then problem "$2: $1 is not a device"
  elif [ ! -r "$1" ] || [ ! -w "$1" ]; then problem "$2: $1 is not readable and writable by $(id -un) (group $(stat -c %G "$1" 2>/dev/null || echo video/render)?)"
  fi
}

# --- input ------------------------------------------------------------------------
# IN_ARGS: ffmpeg input options ending in -i (input 0); IN_AUDIO=1 when input 0
# has an audio stream worth using.
[ "$INPUT" = camera ] && { if [ "$OS" = Darwin ]; then INPUT=avfoundation:0; else INPUT=v4l2:/dev/video0; fi; }
IN_ARGS=(); IN_AUDIO=0; IN_KIND=""
INPUTS_HELP="inputs: testsrc, FILE, v4l2:/dev/videoN, avfoundation:INDEX, ffmpeg:'ARGS' (--help)"
case "$INPUT" in
  testsrc)
    IN_KIND=testsrc
    IN_ARGS=(-re -f lavfi -i "testsrc2=size=${W}x${H}:rate=${FPS}") ;;
  v4l2:*)
    IN_KIND=camera; DEV="${INPUT#v4l2:}"
    IN_ARGS=(-f v4l2 -framerate "$FPS" -video_size "${CAMERA_SIZE:-$SIZE}")
    [ -n "$CAMERA_FORMAT" ] && IN_ARGS+=(-input_format "$CAMERA_FORMAT")
    IN_ARGS+=(-i "$DEV")
    need_demuxer v4l2 "a Linux build of ffmpeg has it"
    need_device "$DEV" "camera (V4L2)" ;;
  avfoundation:*)
    IN_KIND=camera; DEV="${INPUT#avfoundation:}"
    IN_ARGS=(-f avfoundation -framerate "$FPS" -video_size "${CAMERA_SIZE:-$SIZE}")
    [ -n "$CAMERA_FORMAT" ] && IN_ARGS+=(-pixel_format "$CAMERA_FORMAT")
    IN_ARGS+=(-i "$DEV")
    case "$DEV" in *:none|*:) ;; *:*) IN_AUDIO=1 ;; esac
    [ "$OS" = Darwin ] || problem "avfoundation cameras exist only on macOS (on Linux: --input v4l2:/dev/video0)"
    need_demuxer avfoundation "macOS builds of ffmpeg have it (brew install ffmpeg)" ;;
  ffmpeg:*)
    IN_KIND=ffmpeg
    # Split like a shell would (quotes, backslashes), without running anything.
    while IFS= read -r -d '' a; do IN_ARGS+=("$a"); done < <(printf '%s' "${INPUT#ffmpeg:}" | xargs printf '%s\0')
    has_i=0; for a in ${IN_ARGS[@]+"${IN_ARGS[@]}"}; do [ "$a" = -i ] && has_i=1; done
    [ "$has_i" = 1 ] || { say "--input ffmpeg:'ARGS' needs input options ending in -i URL, e.g. ffmpeg:'-f x11grab -i :0'"; exit 2; } ;;
  *)
    IN_KIND=file; FILE="${INPUT#file:}"
    IN_ARGS=(-stream_loop -1 -re -i "$FILE")
    if [ ! -f "$FILE" ] || [ ! -r "$FILE" ]; then
      problem "--input $INPUT: no readable file $FILE ($INPUTS_HELP)"
    elif command -v ffprobe >/dev/null 2>&1; then
      streams=$(ffprobe -v error -show_entries stream=codec_type -of csv=p=0 "$FILE" 2>/dev/null || true)
      case "$streams" in *video*) ;; *) problem "$FILE: ffprobe finds no video stream in it" ;; esac
      case "$streams" in *audio*) IN_AUDIO=1 ;; esac
    fi ;;
esac

case "$AUDIO" in
  auto) USE_IN_AUDIO=$IN_AUDIO ;;
  input)
    USE_IN_AUDIO=1
    [ "$IN_KIND" = testsrc ] && { say "--audio input: the test pattern has no audio (--audio tone)"; exit 2; } ;;
  tone) USE_IN_AUDIO=0 ;;
  *) say "bad --audio $AUDIO (auto, input, tone)"; exit 2 ;;
esac

# --- video encoder -------------------------------------------------------------
# Each with its low-latency settings: no B-frames, a keyframe exactly every
# segment (GOP = fps x segment duration), constant bitrate capped at --bitrate,
# and its own zero-latency / low-delay modes.  VGLOBAL: options before the
# inputs (hardware device); VTAIL: filters after the picture is drawn (upload
# to the GPU).  Why each option: docs/sources.md.
VGLOBAL=(); VTAIL=""
RATE=(-b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE")
case "$VENC" in
  libx264)
    VCODEC=(-c:v libx264 -preset veryfast -tune zerolatency -bf 0 -g "$GOP" -keyint_min "$GOP" -sc_threshold 0
      "${RATE[@]}" -pix_fmt yuv420p) ;;
  h264_nvenc)
    VCODEC=(-c:v h264_nvenc -preset p1 -tune ull -zerolatency 1 -delay 0 -rc cbr -bf 0 -g "$GOP" -forced-idr 1
      "${RATE[@]}" -pix_fmt yuv420p)
    need_encoder h264_nvenc
    if [ "$OS" = Linux ]; then
      need_device /dev/nvidiactl "h264_nvenc needs an NVIDIA GPU with the NVIDIA driver"
      if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-encode\.so\.1'; then
        problem "h264_nvenc needs the NVIDIA driver's NVENC library libnvidia-encode.so.1 (not in ldconfig -p)"
      fi
    fi ;;
  h264_vaapi)
    VGLOBAL=(-vaapi_device "$HW_DEVICE"); VTAIL=",format=nv12,hwupload"
    VCODEC=(-c:v h264_vaapi -rc_mode CBR -async_depth 1 -bf 0 -g "$GOP" -idr_interval 0 "${RATE[@]}")
    need_encoder h264_vaapi
    need_device "$HW_DEVICE" "h264_vaapi needs a VAAPI render node (an Intel or AMD GPU with its driver; --hw-device names another)" ;;
  h264_qsv)
    VGLOBAL=(-init_hw_device "qsv=qs:hw_any,child_device=$HW_DEVICE" -filter_hw_device qs)
    VTAIL=",format=nv12,hwupload=extra_hw_frames=64,format=qsv"
    VCODEC=(-c:v h264_qsv -preset veryfast -async_depth 1 -look_ahead 0 -low_delay_brc 1 -adaptive_i 0 -adaptive_b 0
      -bf 0 -g "$GOP" -idr_interval 0 -forced_idr 1 "${RATE[@]}")
    need_encoder h264_qsv
    need_device "$HW_DEVICE" "h264_qsv needs an Intel GPU's render node (--hw-device names another)" ;;
  h264_videotoolbox)
    VCODEC=(-c:v h264_videotoolbox -realtime 1 -prio_speed 1 -profile:v high -bf 0 -g "$GOP" -flags +low_delay
      -b:v "$BITRATE" -maxrate "$BITRATE" -pix_fmt nv12)
    [ "$OS" = Darwin ] || problem "h264_videotoolbox is Apple's encoder: it runs on macOS only"
    need_encoder h264_videotoolbox "macOS builds of ffmpeg have it (brew install ffmpeg)" ;;
  *) say "unknown --video-encoder $VENC (libx264, h264_nvenc, h264_vaapi, h264_qsv, h264_videotoolbox)"; exit 2 ;;
esac
if [ "$LADDER" = 1 ] && [ "$VENC" != libx264 ]; then
  say "--ladder encodes with libx264 only (--video-encoder $VENC)"; exit 2
fi

# --- font for the burned-in clock -------------------------------------------
FONT=""
for f in /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf \
         /usr/share/fonts/dejavu/DejaVuSansMono.ttf \
         /usr/local/share/fonts/DejaVuSansMono.ttf \
         /opt/homebrew/share/fonts/DejaVuSansMono.ttf \
         "$HOME/Library/Fonts/DejaVuSansMono.ttf" \
         /System/Library/Fonts/Supplemental/Courier\ New.ttf \
         /Library/Fonts/Courier\ New.ttf; do
  if [ -f "$f" ]; then FONT="fontfile='$f'"; break; fi
done
[ -n "$FONT" ] || FONT="font=monospace"

# --- filter graph -------------------------------------------------------------
CELLS=38
ROW=$(( 2 * (H / 60) )); [ "$ROW" -lt 8 ] && ROW=8
STRIP=$(( 2 * ROW ))
FONTSIZE=$(( H / 12 ))
MARGIN=$(( H / 36 ))
V="mod(floor(T*1000),4294967296)"
BIT="mod(floor(($V)/pow(2,33-X)),2)"
CK="mod(floor(($V)/268435456),16)"
for d in 16777216 1048576 65536 4096 256 16 1; do CK="$CK+mod(floor(($V)/$d),16)"; done
CBIT="mod(floor(mod($CK,16)/pow(2,37-X)),2)"
B="if(lt(X,1),1,if(lt(X,2),0,if(lt(X,34),$BIT,$CBIT)))"
LUM="16+219*if(lt(Y,1),$B,1-($B))"
TCLOGF=""
if [ -n "$TC_LOG" ]; then
  : > "$TC_LOG"
  TCLOGF=",metadata=mode=add:key=tc:value=1,metadata=mode=print:file='$TC_LOG'"
fi
# Inputs other than the test pattern are first made the test pattern's shape:
# scaled to fit --size (aspect kept, padded black), square pixels, --fps (the
# fps filter holds one input frame: it must see the next frame's timestamp),
# yuv420p, and timestamps frame count / fps, continuous whatever the input
# does (a file's loop point, a camera's jitter): the strip branch below
# renumbers its frames the same way, so overlay pairs each frame with the
# strip made from it.
SRC="[0:v]"
if [ "$IN_KIND" != testsrc ]; then
  SRC="[src]"
  NORM="scale=${W}:${H}:force_original_aspect_ratio=decrease:force_divisible_by=2,pad=${W}:${H}:(ow-iw)/2:(oh-ih)/2"
  FG_IN="[0:v:0]${NORM},setsar=1,fps=${FPS},format=yuv420p,setpts=N/(${FPS}*TB)[src];"
fi
FG="${FG_IN:-}${SRC}split[m][s];[s]crop=${CELLS}:2:0:0,settb=1/1000000,setpts=RTCTIME,geq=lum='${LUM}':cb=128:cr=128${TCLOGF},setpts=N/(${FPS}*TB),settb=1/${FPS},scale=${W}:${STRIP}:flags=neighbor[st];"
FG="${FG}[m][st]overlay=0:H-h,drawtext=${FONT}:text='ENCODER %{localtime\:%T.%3N}':fontsize=${FONTSIZE}:fontcolor=white:box=1:boxcolor=black:boxborderw=$((FONTSIZE/6)):x=${MARGIN}:y=${MARGIN}${VTAIL}[v]"
# Audio: the input's (resampled to 48 kHz stereo; async fills gaps and trims
# overlaps from its timestamps, e.g. at a file's loop point) or the tone (input 1).
if [ "$USE_IN_AUDIO" = 1 ]; then
  AFG=";[0:a:0]aresample=48000:async=1:first_pts=0,aformat=channel_layouts=stereo[a]"
  AMAP=(-map "[a]"); TONE=()
else
  AFG=""; AMAP=(-map 1:a); TONE=(-re -f lavfi -i "sine=frequency=1000:sample_rate=48000")
fi

# Video outputs: one rendition, or the ladder (split after the strip and the
# clock are drawn, one scale + libx264 per rung; same GOP everywhere so the
# keyframes / segment boundaries line up across renditions).
VOUT=(-map "[v]" "${AMAP[@]}" "${VCODEC[@]}")
if [ "$LADDER" = 1 ]; then
  N_RUNGS=${#RUNGS[@]}
  FG="${FG%\[v\]}[vall];[vall]split=${N_RUNGS}"
  for i in "${!RUNGS[@]}"; do FG="${FG}[l$i]"; done
  VOUT=()
  for i in "${!RUNGS[@]}"; do
    IFS=':' read -r RS RB RP <<< "${RUNGS[$i]}"
    RW="${RS%x*}"; RH="${RS#*x}"
    case "$RW$RH" in *[!0-9]*|"") say "bad ladder rung ${RUNGS[$i]}"; exit 2 ;; esac
    # setsar=1: square pixels (the rungs have the top one's aspect ratio exactly),
    # so the MPD says sar="1:1" and the player WxH.
    if [ "$i" = 0 ]; then FG="${FG};[l0]setsar=1[v0]"; else FG="${FG};[l$i]scale=${RW}:${RH}:flags=bicubic,setsar=1[v$i]"; fi
    VOUT+=(-map "[v$i]" "-preset:v:$i" "${RP:-veryfast}" "-b:v:$i" "$RB" "-maxrate:v:$i" "$RB" "-bufsize:v:$i" "$RB")
  done
  VOUT+=("${AMAP[@]}" -c:v libx264 -tune zerolatency -bf 0 -g "$GOP" -keyint_min "$GOP" -sc_threshold 0 -pix_fmt yuv420p
    -adaptation_sets "id=0,streams=v id=1,streams=a")
fi

# --- DASH options --------------------------------------------------------------
if [ "$CHUNKING" = "every_frame" ]; then
  FRAG=(-frag_type every_frame)
else
  FRAG=(-frag_type duration -frag_duration "$CHUNKING")
fi

if [ -n "$OUTPUT" ]; then
  mkdir -p "$(dirname "$OUTPUT")"
  DEST=("$OUTPUT")
  REMOVE=0
  IO=(-utc_timing_url "$ORIGIN/time")
else
  DEST=("$ORIGIN/live/$STREAM/manifest.mpd")
  REMOVE=1
  HTTP_OPTS="tcp_nodelay=1"
  # http://user:TOKEN@host:port (origin started with --ingest-token): send Basic auth up front
  case "$ORIGIN" in *://*@*) HTTP_OPTS="$HTTP_OPTS:auth_type=basic" ;; esac
  IO=(-utc_timing_url "$(printf '%s' "$ORIGIN" | sed -E 's#://[^/@]*@#://#')/time" -method PUT -http_persistent 1 -ignore_io_errors 1 -http_opts "$HTTP_OPTS")
fi
DUR=(); [ -n "$DURATION" ] && DUR=(-t "$DURATION")

CMD=(ffmpeg -hide_banner -loglevel "$LOGLEVEL" -nostats ${VGLOBAL[@]+"${VGLOBAL[@]}"}
  "${IN_ARGS[@]}" ${TONE[@]+"${TONE[@]}"}
  -filter_complex "$FG$AFG" "${VOUT[@]}" ${DUR[@]+"${DUR[@]}"}
  -c:a aac -b:a 128k
  -f dash -ldash 1 -streaming 1 "${FRAG[@]}" -use_template 1 -use_timeline 0
  -seg_duration "$SEG" -update_period "$UPDATE_PERIOD" -window_size "$WINDOW" -extra_window_size "$WINDOW" -remove_at_exit "$REMOVE"
  -format_options movflags=cmaf -write_prft 1 -target_latency "$TARGET_LATENCY"
  "${IO[@]}" "${DEST[@]}")

if [ "$DRY_RUN" = 1 ]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
if [ "$EXEC" = 1 ]; then exec "${CMD[0]}" -nostdin "${CMD[@]:1}"; fi

# --- supervision ---------------------------------------------------------------
# ffmpeg reads 'q' from a FIFO on stdin: that is how it is stopped cleanly.
# It runs in its own process group (set -m), so a terminal Ctrl-C reaches only
# this script, which then asks ffmpeg to quit.
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/h3live-encoder.XXXXXX")
mkfifo "$TMPD/ctl"
exec 3<>"$TMPD/ctl"
set -m

PID=""
KILLER=""
STOPPING=0
stop() {
  [ "$STOPPING" = 1 ] && return
  STOPPING=1
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    say "stopping ffmpeg (pid $PID) cleanly"
    printf 'q' >&3
  fi
}
trap stop INT TERM HUP
cleanup() { exec 3>&-; rm -rf "$TMPD"; }
trap cleanup EXIT

[ "$LADDER" = 1 ] && say "ABR ladder: $LADDER_SPEC (one timecode drawn at ${W}x${H}, then scaled)"
say "pushing ${W}x${H}@${FPS} ${BITRATE} seg=${SEG}s chunking=${CHUNKING} to ${DEST[*]} (input ${INPUT}, audio $([ "$USE_IN_AUDIO" = 1 ] && echo input || echo tone), ${VENC})"
[ "${H3LIVE_VERBOSE:-0}" = 1 ] && say "ffmpeg command: $(printf '%q ' "${CMD[@]}")"
BACKOFF=0.5
N=0
while :; do
  START=$(date +%s)
  "${CMD[@]}" <&3 &
  PID=$!
  say "ffmpeg started (pid $PID)"
  # wait returns early (>128) when a trapped signal arrives; keep waiting, with
  # a grace period after which ffmpeg is terminated.
  GRACE=0
  while :; do
    RC=0; wait "$PID" || RC=$?
    kill -0 "$PID" 2>/dev/null || break
    if [ "$STOPPING" = 1 ]; then
      GRACE=$((GRACE + 1))
      if [ "$GRACE" -gt 1 ]; then kill -TERM "$PID" 2>/dev/null || true; fi
      if [ -z "$KILLER" ]; then
        ( sleep 5; kill -0 "$PID" 2>/dev/null && kill -TERM "$PID" 2>/dev/null ) &
        KILLER=$!
      fi
    fi
  done
  # The killer runs in its own process group (set -m): stop it and its sleep.
  if [ -n "$KILLER" ]; then kill -- "-$KILLER" 2>/dev/null || true; wait "$KILLER" 2>/dev/null || true; KILLER=""; fi
  PID=""
  RAN=$(( $(date +%s) - START ))
  if [ "$STOPPING" = 1 ]; then say "ffmpeg stopped (exit code $RC)"; exit 0; fi
  if [ "$RESTART" = 0 ] || { [ -n "$DURATION" ] && [ "$RC" = 0 ]; }; then
    say "ffmpeg exited (exit code $RC after ${RAN}s)"; exit "$RC"
  fi
  [ "$RAN" -ge 30 ] && BACKOFF=0.5
  N=$((N + 1))
  say "ffmpeg exited with code $RC after ${RAN}s (origin unreachable, or an input or encoder error above?); restart #$N in ${BACKOFF}s"
  sleep "$BACKOFF" &
  wait $! 2>/dev/null || true   # returns at once when a signal arrives
  [ "$STOPPING" = 1 ] && { say "stopped"; exit 0; }
  BACKOFF=$(awk "BEGIN{b=$BACKOFF*2; if (b>5) b=5; print b}")
done
