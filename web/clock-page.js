// The clock page (clock.html): this machine's wall clock, large, in ms, and
// the same machine-readable strip the player draws (./clock.js) along the
// bottom of the window, both written in every animation frame from one
// Date.now().  A camera films this page for a glass-to-glass measurement
// (docs/sources.md): the player then shows the filmed clock in the picture
// next to its own PLAYER clock.
//
// The strip has the proportion it has in a 720-line picture (48 of 720 lines,
// web/timecode.js stripHeight) of the window's height, the full width, so a
// screenshot of the page decodes like a video frame.  The line under the clock
// says how often the screen repaints: a value stays on screen that long, the
// resolution of any reading taken from a photo of it.
//
// window.h3liveClock (read by web/e2e/sources.js): { ms, text, frameMs } of the
// last painted frame.
import { drawStrip, fmtClock, stripCanvas } from './clock.js';
import { stripHeight } from './timecode.js';

const text = document.getElementById('clockText');
const info = document.getElementById('clockInfo');
const { canvas, ctx } = stripCanvas('player-strip clock-strip');
document.body.append(canvas);
const baseInfo = info.textContent;

function layout() {
  const h = window.innerHeight;
  canvas.style.height = `${(stripHeight(720) / 720) * h}px`;
  canvas.style.bottom = '0';
  text.style.fontSize = `${Math.min(window.innerWidth / 7.5, h / 3)}px`;
}
window.addEventListener('resize', layout);
layout();

const state = { ms: null, text: null, frameMs: null };
window.h3liveClock = state;
let last = null;
const intervals = [];
function tick(t) {
  const now = Date.now();
  state.ms = now;
  state.text = fmtClock(now);
  text.textContent = state.text;
  drawStrip(ctx, now);
  if (last !== null) {
    intervals.push(t - last);
    if (intervals.length > 120) intervals.shift();
    const sorted = [...intervals].sort((a, b) => a - b);
    state.frameMs = sorted[Math.floor(sorted.length / 2)];
    if (intervals.length % 30 === 0) {
      info.textContent = `${baseInfo} The screen repaints every ${state.frameMs.toFixed(1)} ms (${(1000 / state.frameMs).toFixed(0)} Hz).`;
    }
  }
  last = t;
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);
