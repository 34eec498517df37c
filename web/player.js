// h3live player page: dash.js 5.x in low-latency mode, the player's wall
// clock drawn in the same style as the encoder's, and live measurements.
// The dash.js settings, the default latency and the measurement rules come
// from ./measure.js, shared with the transport A/B page (compare.html).
//
// Query parameters:
//   stream=NAME      stream to play (default "test"): <origin>/live/NAME/manifest.mpd
//   latency=SECONDS  target live latency for dash.js catch-up (default DEFAULT_LATENCY)
//   origin=URL       origin (transport arm) to fetch the manifest and media from
//                    (default: the page's own origin, so the page's URL picks the arm)
//   mpd=URL          full manifest URL (overrides stream/origin)
//   format=hls       play the origin's LL-HLS (hls.js, ./hls-player.js) instead of LL-DASH;
//                    mpd= is then the playlist URL; native=1 uses the browser's own HLS
//   debug=1          dash.js debug logging
//   abr=RULE, abrmax=KBPS, abrstart=KBPS   ABR rule and caps (see ./abr.js)
//
// window.h3liveStats (read by automation, e.g. web/e2e/e2e.js) — shape, version 1:
// {
//   version: 1,
//   config: { stream, origin, mpd, targetLatency, format },   // targetLatency in s;
//                                 // format "dash" | "hls" (mpd is then the playlist URL)
//   pageStart: epoch ms at script start,
//   firstFrameMs: ms from navigation start to the first presented frame | null,
//   playing: bool, currentTime: s, videoSize: "WxH",
//   latency: {
//     timecodeMs: number | null,  // player wall clock at the displayed frame's
//                                 // presentation minus the encoder clock decoded
//                                 // from that frame (last decoded frame)
//     timecodeAvgMs: number|null, // mean over the last 2 s
//     dashMs: number | null,      // 1000 * player.getCurrentLiveLatency() (format=hls:
//                                 // hls.js's own latency estimate, hls.latency)
//     dashAvgMs: number | null,   // mean over the last 2 s
//   },
//   bufferS: number | null, playbackRate: number,
//   stalls: { count, totalMs,     // 'waiting' after the first frame, until 'playing'
//             events: [ { t, sinceFirstFrameMs, ms } ] },  // last 20
//   transport: { last: "h3" | "h2" | "http/1.1" | "none" | null, counts: {proto: n},
//                bytes },         // nextHopProtocol of finished segment requests (.m4s)
//                                 // from the manifest's origin; "none": aborted or
//                                 // failed before a response; bytes: encodedBodySize
//                                 // of every finished request to that origin
//   frames: { presented, decoded, decodeErrors, lastError },
//   errors: [ { t: epoch ms, message } ],   // dash.js ERROR events, video errors
//   history: [ { t, tcMs, dashMs, bufferS, rate } ],  // 2 samples/s, last 120 s
//   recovery: { status,           // 'starting' | 'playing' | 'stalled' | 'origin unreachable' | 'reloading'
//               reloads,          // source reloads after a restart or a stall (no page reload)
//               events: [ { t, reason, stalledMs } ],   // each reload (last 20)
//               recoveries: [ { t, stalledMs } ],       // each stall that ended (last 20)
//               ast },            // availabilityStartTime (epoch ms) of the timeline playing
//   abr: { rule, representations, current: {id, width, height, kbps} | null,
//          switches, up, down, events: [...], playedKbpsMean }   // see ./abr.js
//                                 // (format=dash only; one rendition: switches stay 0)
// }

import { DEFAULT_LATENCY, scanResources, startDash, watchFrames, watchStalls } from './measure.js';
import { hlsUrl, startHls } from './hls-player.js';
import { abrRule, abrSettings, watchAbr } from './abr.js';

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || 'test';
const origin = (q.get('origin') || location.origin).replace(/\/$/, '');
const format = q.get('format') === 'hls' ? 'hls' : 'dash';
const mpd = q.get('mpd') || (format === 'hls' ? hlsUrl(origin, stream)
  : `${origin}/live/${encodeURIComponent(stream)}/manifest.mpd`);
const mediaOrigin = new URL(mpd, location.href).origin;
const targetLatency = Number(q.get('latency')) > 0 ? Number(q.get('latency')) : DEFAULT_LATENCY;

const $ = (id) => document.getElementById(id);
const video = $('video');
const stage = $('stage');
const clockEl = $('playerClock');

const stats = {
  version: 1,
  config: { stream, origin, mpd, targetLatency, format },
  pageStart: Date.now(),
  firstFrameMs: null,
  playing: false,
  currentTime: 0,
  videoSize: null,
  latency: { timecodeMs: null, timecodeAvgMs: null, dashMs: null, dashAvgMs: null },
  bufferS: null,
  playbackRate: 1,
  stalls: null, // below, from watchStalls
  transport: { last: null, counts: {}, bytes: 0 },
  frames: { presented: 0, decoded: 0, decodeErrors: 0, lastError: null },
  errors: [],
  history: [],
  recovery: null, // below, from measure.js keepPlaying
  abr: { rule: null, representations: [], current: null, switches: 0, up: 0, down: 0, events: [], playedKbpsMean: null },
};
window.h3liveStats = stats;
$('streamName').textContent = stream;
$('s-target').textContent = `${targetLatency.toFixed(2)} s`;
$('compareLink').search = location.search; // same stream and latency on the A/B page

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
const recent = { tc: [], dash: [] }; // [t, value] for 2 s averages
function pushRecent(arr, v) {
  const now = Date.now();
  arr.push([now, v]);
  while (arr.length && arr[0][0] < now - 2000) arr.shift();
  return arr.reduce((s, x) => s + x[1], 0) / arr.length;
}
const hasFrames = watchFrames(video, {
  onFirstFrame: (ms) => {
    stats.firstFrameMs = ms;
    $('s-first').textContent = `${ms} ms`;
  },
  onSample: (shownAt, lat) => {
    stats.frames.presented++;
    stats.frames.decoded++;
    stats.latency.timecodeMs = Math.round(lat);
    stats.latency.timecodeAvgMs = Math.round(pushRecent(recent.tc, lat));
  },
  onError: (err) => {
    stats.frames.presented++;
    stats.frames.decodeErrors++;
    stats.frames.lastError = err;
  },
});
if (!hasFrames) addError('requestVideoFrameCallback not supported: no timecode latency');

// ---------------------------------------------------------------- stalls
const stalls = watchStalls(video, () => stats.firstFrameMs !== null, (startMs, ms) => {
  const sinceFirstFrameMs = Math.round(startMs - performance.timeOrigin - stats.firstFrameMs);
  stats.stalls.events.push({ t: Date.now(), sinceFirstFrameMs, ms });
  if (stats.stalls.events.length > 20) stats.stalls.events.shift();
});
// count and totalMs read through to measure.js's state, so they are current
// between ticks (JSON.stringify includes getters).
stats.stalls = {
  get count() { return stalls.state.count; },
  get totalMs() { return stalls.state.totalMs; },
  events: [],
};
video.addEventListener('playing', () => { stats.playing = true; });
video.addEventListener('pause', () => { stats.playing = false; });
video.addEventListener('error', () => addError(`video element: ${video.error && video.error.message}`));

// ------------------------------------------------------------- transport
performance.setResourceTimingBufferSize(1000);

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
async function start() {
  if (format === 'hls') {
    // LL-HLS: same page, same measurements; hls.js's latency in the "dash" slot.
    $('s-dash').previousElementSibling.textContent = 'latency (hls.js)';
    const latency = q.get('latency') ? targetLatency : null; // else PART-HOLD-BACK
    const player = await startHls(video, mpd, { targetLatency: latency, debug: !!q.get('debug'), native: !!q.get('native'), onError: addError });
    if (player) run(player);
    return;
  }
  if (!window.dashjs) {
    addError('dash.js did not load (run npm ci in web/)');
    $('notice').hidden = false;
    $('notice').textContent = 'dash.js did not load: run "npm ci" in web/';
    return;
  }
  const settings = abrSettings(stats.abr.rule = abrRule(q), { maxKbps: Number(q.get('abrmax')), startKbps: Number(q.get('abrstart')) });
  const player = startDash(dashjs, video, mpd, { targetLatency, origin, debug: !!q.get('debug'), onError: addError, settings, onState: showState });
  startAbrStats(player);
  run(player);
}

// ------------------------------------------------------------------- ABR
// The rendition dash.js renders and its switches (ladder streams), kept apart
// from the rest of the stats: stats.abr and the "rendition" row.
function startAbrStats(player) {
  const abr = watchAbr(dashjs, player, stats.abr, renderAbr);
  setInterval(() => { abr.tick(); renderAbr(); }, 500);
}
function renderAbr() {
  const a = stats.abr, c = a.current;
  $('s-abr').textContent = c ? `${c.height}p ${c.kbps} kbit/s · ${a.rule} · ${a.switches} sw` : `– · ${a.rule}`;
}

function run(player) {
  window.h3livePlayer = player;
  stats.recovery = player.h3liveRecovery;

  setInterval(() => {
    scanResources({ media: mediaOrigin }, { media: stats.transport });
    stats.currentTime = video.currentTime;
    stats.videoSize = video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : null;
    stats.playbackRate = video.playbackRate;
    if (player.getTargetLatency && player.getTargetLatency() > 0) {
      stats.config.targetLatency = player.getTargetLatency();
      $('s-target').textContent = `${stats.config.targetLatency.toFixed(2)} s`;
    }
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

// What the page shows while the stream is interrupted (encoder or origin
// restarting): the player keeps retrying by itself, no reload needed.
const STATE_TEXT = {
  stalled: 'Stream interrupted: waiting for the encoder…',
  'origin unreachable': 'Origin unreachable: retrying…',
  reloading: 'Stream restarted: reloading…',
};
function showState(status, detail) {
  const n = $('notice');
  const text = STATE_TEXT[status];
  n.hidden = !text;
  if (text) n.textContent = text;
  if (status !== 'playing' && status !== 'starting') console.info(`h3live: ${status}${detail ? ` (${detail})` : ''}`);
}

function render() {
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  $('s-tc').textContent = ms(stats.latency.timecodeAvgMs);
  $('s-dash').textContent = ms(stats.latency.dashAvgMs);
  $('s-buffer').textContent = stats.bufferS == null ? '–' : `${stats.bufferS.toFixed(2)} s`;
  $('s-rate').textContent = `${stats.playbackRate.toFixed(2)}×`;
  $('s-stalls').textContent = `${stats.stalls.count} / ${(stalls.stalledNowMs() / 1000).toFixed(1)} s`;
  $('s-proto').textContent = stats.transport.last || '–';
  drawChart();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
