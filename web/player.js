// h3live player page: dash.js 5.x in low-latency mode, the player's wall
// clock drawn in the same style as the encoder's, and live measurements.
//
// Query parameters:
//   stream=NAME      stream to play (default "test"): <origin>/live/NAME/manifest.mpd
//   latency=SECONDS  target live latency for dash.js catch-up (default DEFAULT_LATENCY)
//   origin=URL       origin (transport arm) to fetch the manifest and media from
//                    (default: the page's own origin, so the page's URL picks the arm)
//   mpd=URL          full manifest URL (overrides stream/origin)
//   debug=1          dash.js debug logging
//
// window.h3liveStats (read by automation, e.g. web/e2e/e2e.js) — shape, version 1:
// {
//   version: 1,
//   config: { stream, origin, mpd, targetLatency },   // targetLatency in s
//   pageStart: epoch ms at script start,
//   firstFrameMs: ms from navigation start to the first presented frame | null,
//   playing: bool, currentTime: s, videoSize: "WxH",
//   latency: {
//     timecodeMs: number | null,  // player wall clock at the displayed frame's
//                                 // presentation minus the encoder clock decoded
//                                 // from that frame (last decoded frame)
//     timecodeAvgMs: number|null, // mean over the last 2 s
//     dashMs: number | null,      // 1000 * player.getCurrentLiveLatency()
//     dashAvgMs: number | null,   // mean over the last 2 s
//   },
//   bufferS: number | null, playbackRate: number,
//   stalls: { count, totalMs,     // 'waiting' after the first frame, until 'playing'
//             events: [ { t, sinceFirstFrameMs, ms } ] },  // last 20
//   transport: { last: "h3" | "h2" | "http/1.1" | null, counts: {proto: n} },
//                                 // nextHopProtocol of finished segment requests (.m4s)
//   frames: { presented, decoded, decodeErrors, lastError },
//   errors: [ { t: epoch ms, message } ],   // dash.js ERROR events, video errors
//   history: [ { t, tcMs, dashMs, bufferS, rate } ],  // 2 samples/s, last 120 s
// }

import { decodeVideo } from './timecode.js';

/** Default target latency (s): the lowest with no stall in any run of a loopback sweep
 *  (0.15 s stalled; 0.3/0.4 s had one ~15 ms stall in one of two 90 s runs under load). */
export const DEFAULT_LATENCY = 0.5;

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || 'test';
const origin = (q.get('origin') || location.origin).replace(/\/$/, '');
const mpd = q.get('mpd') || `${origin}/live/${encodeURIComponent(stream)}/manifest.mpd`;
const targetLatency = Number(q.get('latency')) > 0 ? Number(q.get('latency')) : DEFAULT_LATENCY;

const $ = (id) => document.getElementById(id);
const video = $('video');
const stage = $('stage');
const clockEl = $('playerClock');

const stats = {
  version: 1,
  config: { stream, origin, mpd, targetLatency },
  pageStart: Date.now(),
  firstFrameMs: null,
  playing: false,
  currentTime: 0,
  videoSize: null,
  latency: { timecodeMs: null, timecodeAvgMs: null, dashMs: null, dashAvgMs: null },
  bufferS: null,
  playbackRate: 1,
  stalls: { count: 0, totalMs: 0, events: [] },
  transport: { last: null, counts: {} },
  frames: { presented: 0, decoded: 0, decodeErrors: 0, lastError: null },
  errors: [],
  history: [],
};
window.h3liveStats = stats;
$('streamName').textContent = stream;
$('s-target').textContent = `${targetLatency.toFixed(2)} s`;

function addError(message) {
  stats.errors.push({ t: Date.now(), message: String(message).slice(0, 500) });
  if (stats.errors.length > 50) stats.errors.shift();
  $('s-errors').textContent = String(stats.errors.length);
  console.warn('h3live player error:', message);
}

// ---------------------------------------------------------------- clock
const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtClock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
// Match scripts/encoder.sh: font size H/12, margin H/36, box border fontsize/6.
function layoutClock() {
  const h = stage.clientHeight;
  const fs = h / 12, border = fs / 6, margin = h / 36;
  clockEl.style.fontSize = `${fs}px`;
  clockEl.style.padding = `0 ${border}px`;
  clockEl.style.left = `${margin - border}px`;
  clockEl.style.top = `${margin + fs * 1.45}px`;
}
new ResizeObserver(layoutClock).observe(stage);
layoutClock();
function tickClock() {
  clockEl.textContent = `PLAYER  ${fmtClock(Date.now())}`;
  requestAnimationFrame(tickClock);
}
requestAnimationFrame(tickClock);

// ------------------------------------------------- timecode at each frame
const scratch = document.createElement('canvas');
const recent = { tc: [], dash: [] }; // [t, value] for 2 s averages
function pushRecent(arr, v) {
  const now = Date.now();
  arr.push([now, v]);
  while (arr.length && arr[0][0] < now - 2000) arr.shift();
  return arr.reduce((s, x) => s + x[1], 0) / arr.length;
}
function onFrame(now, meta) {
  stats.frames.presented++;
  if (stats.firstFrameMs === null) {
    stats.firstFrameMs = Math.round(performance.now());
    $('s-first').textContent = `${stats.firstFrameMs} ms`;
  }
  // Wall-clock time at which this frame is (expected to be) on screen.
  const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
  const r = decodeVideo(video, scratch, shownAt);
  if (r.ok) {
    stats.frames.decoded++;
    const lat = shownAt - r.ms;
    stats.latency.timecodeMs = Math.round(lat);
    stats.latency.timecodeAvgMs = Math.round(pushRecent(recent.tc, lat));
  } else {
    stats.frames.decodeErrors++;
    stats.frames.lastError = r.error;
  }
  video.requestVideoFrameCallback(onFrame);
}
if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
  video.requestVideoFrameCallback(onFrame);
} else {
  addError('requestVideoFrameCallback not supported: no timecode latency');
}

// ---------------------------------------------------------------- stalls
let stallStart = null;
video.addEventListener('waiting', () => {
  if (stats.firstFrameMs !== null && stallStart === null) {
    stallStart = performance.now();
    stats.stalls.count++;
  }
});
const endStall = () => {
  if (stallStart !== null) {
    const ms = Math.round(performance.now() - stallStart);
    stats.stalls.totalMs += ms;
    stats.stalls.events.push({ t: Date.now(), sinceFirstFrameMs: Math.round(stallStart - stats.firstFrameMs), ms });
    if (stats.stalls.events.length > 20) stats.stalls.events.shift();
    stallStart = null;
  }
};
video.addEventListener('playing', () => { stats.playing = true; endStall(); });
video.addEventListener('pause', () => { stats.playing = false; });
video.addEventListener('error', () => addError(`video element: ${video.error && video.error.message}`));

// ------------------------------------------------------------- transport
performance.setResourceTimingBufferSize(1000);
function scanResources() {
  for (const e of performance.getEntriesByType('resource')) {
    if (!/\.m4s(\?|$)/.test(e.name)) continue;
    const p = e.nextHopProtocol || 'unknown';
    stats.transport.counts[p] = (stats.transport.counts[p] || 0) + 1;
    stats.transport.last = p;
  }
  performance.clearResourceTimings();
}

// ------------------------------------------------------------------ chart
const chart = $('chart');
const cctx = chart.getContext('2d');
function drawChart() {
  const w = chart.width, h = chart.height;
  cctx.clearRect(0, 0, w, h);
  const now = Date.now(), span = 60000;
  const pts = stats.history.filter((s) => s.t > now - span);
  let max = Math.max(targetLatency * 1000 * 1.5, 500);
  for (const s of pts) max = Math.max(max, s.tcMs || 0, s.dashMs || 0);
  max = Math.ceil(max / 500) * 500;
  const x = (t) => w - ((now - t) / span) * w;
  const y = (v) => h - 12 - (v / max) * (h - 20);
  cctx.fillStyle = '#777';
  cctx.font = '10px sans-serif';
  cctx.fillText(`${max} ms`, 2, 10);
  cctx.fillText('0', 2, h - 2);
  cctx.strokeStyle = '#f84';
  cctx.setLineDash([4, 3]);
  cctx.beginPath(); cctx.moveTo(0, y(targetLatency * 1000)); cctx.lineTo(w, y(targetLatency * 1000)); cctx.stroke();
  cctx.setLineDash([]);
  for (const [key, color] of [['dashMs', '#4af'], ['tcMs', '#4f4']]) {
    cctx.strokeStyle = color;
    cctx.beginPath();
    let started = false;
    for (const s of pts) {
      if (s[key] == null) { started = false; continue; }
      if (!started) { cctx.moveTo(x(s.t), y(s[key])); started = true; } else cctx.lineTo(x(s.t), y(s[key]));
    }
    cctx.stroke();
  }
}

// ------------------------------------------------------------------ dash.js
function start() {
  if (!window.dashjs) {
    addError('dash.js did not load (run npm ci in web/)');
    $('notice').hidden = false;
    $('notice').textContent = 'dash.js did not load: run "npm ci" in web/';
    return;
  }
  const player = dashjs.MediaPlayer().create();
  window.h3livePlayer = player;
  player.updateSettings({
    debug: { logLevel: q.get('debug') ? dashjs.Debug.LOG_LEVEL_DEBUG : dashjs.Debug.LOG_LEVEL_WARNING },
    streaming: {
      delay: { liveDelay: targetLatency },
      liveCatchup: {
        enabled: true,
        mode: 'liveCatchupModeDefault',
        maxDrift: Math.max(2, targetLatency * 2),
        playbackRate: { min: -0.3, max: 0.3 },
      },
      buffer: { bufferTimeDefault: 4, stallThreshold: 0.05, lowLatencyStallThreshold: 0.05 },
      // ffmpeg nests its UTCTiming inside ProducerReferenceTime, where dash.js
      // does not look; without this dash.js would try a public time server.
      utcSynchronization: {
        enabled: true,
        defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-xsdate:2014', value: `${origin}/time` },
      },
    },
  });
  const ev = dashjs.MediaPlayer.events;
  player.on(ev.ERROR, (e) => {
    const err = e.error || e;
    addError(`dash.js: ${err.code || ''} ${err.message || JSON.stringify(err).slice(0, 200)}`);
  });
  player.on(ev.PLAYBACK_ERROR, (e) => addError(`playback: ${e.error && e.error.message}`));
  player.initialize(video, mpd, true);
  player.setMute(true);

  setInterval(() => {
    scanResources();
    stats.currentTime = video.currentTime;
    stats.videoSize = video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : null;
    stats.playbackRate = video.playbackRate;
    let dl = null;
    try { dl = player.getCurrentLiveLatency(); } catch (e) { /* not ready */ }
    if (typeof dl === 'number' && Number.isFinite(dl) && dl > 0) {
      stats.latency.dashMs = Math.round(dl * 1000);
      stats.latency.dashAvgMs = Math.round(pushRecent(recent.dash, dl * 1000));
    }
    let buf = null;
    try { buf = player.getBufferLength('video'); } catch (e) { /* not ready */ }
    stats.bufferS = Number.isFinite(buf) ? Math.round(buf * 1000) / 1000 : null;
    stats.history.push({ t: Date.now(), tcMs: stats.latency.timecodeMs, dashMs: stats.latency.dashMs, bufferS: stats.bufferS, rate: stats.playbackRate });
    if (stats.history.length > 240) stats.history.shift();
    render();
  }, 500);
}

function render() {
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  $('s-tc').textContent = ms(stats.latency.timecodeAvgMs);
  $('s-dash').textContent = ms(stats.latency.dashAvgMs);
  $('s-buffer').textContent = stats.bufferS == null ? '–' : `${stats.bufferS.toFixed(2)} s`;
  $('s-rate').textContent = `${stats.playbackRate.toFixed(2)}×`;
  const stallMs = stats.stalls.totalMs + (stallStart !== null ? performance.now() - stallStart : 0);
  $('s-stalls').textContent = `${stats.stalls.count} / ${(stallMs / 1000).toFixed(1)} s`;
  $('s-proto').textContent = stats.transport.last || '–';
  drawChart();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
