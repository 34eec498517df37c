// Latency samples of one playing <video> and the live latency chart, shared
// by the player page (player.js) and the transport A/B page (compare.js).
// What is measured and how (timecode decoding, stalls, transport) is in
// ./measure.js; this module keeps the samples in a page's stats object and
// draws them.
import { watchFrames } from './measure.js';

/** Mean of the values pushed during the last `windowMs` (by their time stamps). */
export class RollingMean {
  constructor(windowMs = 2000) {
    /** How far back values count. */
    this.windowMs = windowMs;
    /** [t, value] pairs inside the window, oldest first. */
    this.values = [];
  }

  /** Add `v` seen at epoch ms `t`; returns the mean over the window ending at t. */
  push(t, v) {
    this.values.push([t, v]);
    while (this.values.length && this.values[0][0] < t - this.windowMs) this.values.shift();
    return this.values.reduce((s, x) => s + x[1], 0) / this.values.length;
  }
}

/** Append { t, message } to `errors` (the last 50 kept) and log it with `label`. */
export function pushError(errors, label, message) {
  errors.push({ t: Date.now(), message: String(message).slice(0, 500) });
  if (errors.length > 50) errors.shift();
  console.warn(`${label} error:`, message);
}

/**
 * Keep one player's per-frame readings in `p` (a page's stats object):
 * p.frames { presented, decoded, decodeErrors, lastError }, p.latency.timecodeMs
 * (last decoded frame) and p.latency.timecodeAvgMs (mean of the last 2 s),
 * p.latency.arrivalMs / arrivalAvgMs (the same for the frame's arrival,
 * measure.js watchFrames), p.playing; video errors go to `addError`.
 * `onFirstFrame(msSinceNavigation)` and `onSample(shownAtEpochMs, latencyMs,
 * arrivalLatencyMs | null)` are called as well.
 */
export function watchVideo(video, p, { addError, onFirstFrame = () => {}, onSample = () => {} }) {
  const mean = new RollingMean(2000);
  const arrivalMean = new RollingMean(2000);
  p.latency.arrivalMs = null;
  p.latency.arrivalAvgMs = null;
  const hasFrames = watchFrames(video, {
    onFirstFrame,
    onSample: (shownAt, lat, arrival) => {
      p.frames.presented++;
      p.frames.decoded++;
      p.latency.timecodeMs = Math.round(lat);
      p.latency.timecodeAvgMs = Math.round(mean.push(shownAt, lat));
      if (arrival !== null) {
        p.latency.arrivalMs = Math.round(arrival);
        p.latency.arrivalAvgMs = Math.round(arrivalMean.push(shownAt, arrival));
      }
      onSample(shownAt, lat, arrival);
    },
    onError: (err) => {
      p.frames.presented++;
      p.frames.decodeErrors++;
      p.frames.lastError = err;
    },
  });
  if (!hasFrames) addError('requestVideoFrameCallback not supported: no timecode latency');
  video.addEventListener('playing', () => { p.playing = true; });
  video.addEventListener('pause', () => { p.playing = false; });
  video.addEventListener('error', () => addError(`video element: ${video.error && video.error.message}`));
}

/**
 * The player library's own readings, null while it has none: { latencyMs:
 * dash.js getCurrentLiveLatency() (hls.js: its latency estimate) in ms,
 * bufferS: video buffer length in s (ms precision) }.
 */
export function readPlayer(player) {
  let dl = null;
  try { dl = player.getCurrentLiveLatency(); } catch { /* not ready */ }
  let buf = null;
  try { buf = player.getBufferLength('video'); } catch { /* not ready */ }
  return {
    latencyMs: typeof dl === 'number' && Number.isFinite(dl) && dl > 0 ? Math.round(dl * 1000) : null,
    bufferS: Number.isFinite(buf) ? Math.round(buf * 1000) / 1000 : null,
  };
}

/**
 * Latency over the last `spanMs` on `canvas`, sized to its CSS box (device
 * pixels): one line per series ({ color, points: [[epochMs, ms | null]] }; a
 * null or a gap over `gapMs` breaks the line), the target as a dashed line,
 * a scale in quarters (rounded up to 500 ms, at least 1.5 x the target) and
 * an optional caption bottom right.
 */
export function drawChart(canvas, { series, targetMs, spanMs = 60000, gapMs = 1000, caption = '' }) {
  const ctx = canvas.getContext('2d');
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
  if (!w || !h) return;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const fontPx = parseFloat(getComputedStyle(canvas).fontSize) * 0.8 * dpr;
  const now = Date.now();
  ctx.clearRect(0, 0, w, h);
  let max = Math.max(targetMs * 1.5, 500);
  for (const s of series) for (const [t, v] of s.points) if (v != null && t > now - spanMs) max = Math.max(max, v);
  max = Math.ceil(max / 500) * 500;
  const bottom = fontPx * 1.3;
  const x = (t) => w - ((now - t) / spanMs) * w;
  const y = (v) => h - bottom - (v / max) * (h - bottom - fontPx * 1.2);
  ctx.fillStyle = '#777';
  ctx.font = `${fontPx}px sans-serif`;
  for (let v = 0; v <= max; v += max / 4) {
    ctx.fillText(`${v} ms`, 2, y(v) - 2 * dpr);
    ctx.fillRect(0, y(v), w, 0.5 * dpr);
  }
  if (caption) ctx.fillText(caption, w - ctx.measureText(caption).width - 2, h - fontPx * 0.25);
  ctx.strokeStyle = '#f84';
  ctx.lineWidth = dpr;
  ctx.setLineDash([4 * dpr, 3 * dpr]);
  ctx.beginPath(); ctx.moveTo(0, y(targetMs)); ctx.lineTo(w, y(targetMs)); ctx.stroke();
  ctx.setLineDash([]);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.beginPath();
    let prev = null;
    for (const [t, v] of s.points) {
      if (v == null || t <= now - spanMs) { prev = null; continue; }
      if (prev === null || t - prev > gapMs) ctx.moveTo(x(t), y(v)); else ctx.lineTo(x(t), y(v));
      prev = t;
    }
    ctx.stroke();
  }
}
