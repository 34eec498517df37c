#!/usr/bin/env bash
# scripts/test-clip.sh OUT.mp4 — a short media file for the tests of
# `scripts/encoder.sh --input FILE` (scripts/test-sources.sh, web/e2e/sources.js):
# 4 s of real content shape, not the encoder's own test pattern: 640x360 at
# 25 fps (not the encoder's 30: the fps filter converts), 2.5 s of testsrc2
# (motion) then a hard scene cut to a zooming Mandelbrot (1.5 s), H.264 with a
# keyframe every 2 s (the cut is not on a keyframe), and a 440 Hz tone in
# 44.1 kHz stereo AAC (the encoder resamples to 48 kHz); the video track is one
# frame longer than the audio, so looping exercises both gap filling and trimming.
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 OUT.mp4" >&2; exit 2; }
exec ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=2.5" \
  -f lavfi -i "mandelbrot=size=640x360:rate=25,trim=duration=1.5" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=4" \
  -filter_complex "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v];[2:a]aformat=channel_layouts=stereo[a]" \
  -map "[v]" -map "[a]" -c:v libx264 -preset ultrafast -g 50 -c:a aac -b:a 96k "$1"
