// h3live transport A/B page: one dash.js player per transport arm, all on the
// same stream and target latency, each fetching manifest and media from its
// own absolute origin (h3 :4433, HTTP/1.1-over-TLS :4443, h2 :4444 by default).
//
// Query parameters:
//   stream=NAME        stream (default "test")
//   arms=h3,h1,h2      arms to show, in order (default h3,h1,h2)
//   latency=SECONDS    target latency for every player (default DEFAULT_LATENCY)
//   host=NAME          host of every arm (default: this page's host)
//   h3port, h1port, h2port   ports (defaults 4433, 4443, 4444)
//   h3=URL, h1=URL, h2=URL   full origin of one arm (overrides host/port)
//   debug=1            dash.js debug logging
//
// window.h3liveCompare (read by scripts/ab/driver.mjs) — shape, version 1:
// {
//   version: 1,
//   config: { stream, targetLatency, arms: { ARM: { origin, mpd, expect } } },
//   players: { ARM: {
//     firstFrameMs: ms from navigation start to this player's first frame | null,
//     playing, currentTime, playbackRate, bufferS,
//     latency: { timecodeMs, timecodeAvgMs (last 2 s), dashMs },
//     stalls: { count, totalMs, events: [[startEpochMs, durationMs]] },
//     transport: { last, counts: { protocol: n } },   // media segments' nextHopProtocol
//     bytes,                                          // encodedBodySize of finished requests
//     frames: { presented, decoded, decodeErrors, lastError },
//     errors: [ { t, message } ] } },
//   take(): { ARM: { frames: [[shownAtEpochMs, latencyMs]],
//                    dash: [[epochMs, dashLatencyMs|null, playbackRate, bufferS|null, screenMs|null]] } }
//           returns the samples gathered since the previous take() and forgets them
//           (per-frame timecode latency; 4 times a second: dash.js latency, rate, buffer
//           and screenMs = now minus the encoder time of the frame on screen, which keeps
//           growing while the picture is frozen).  The live chart plots screenMs.
// }

import { ARM_PROTOCOL, DEFAULT_LATENCY, scanResources, startDash, watchFrames, watchStalls } from './measure.js';

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || 'test';
const targetLatency = Number(q.get('latency')) > 0 ? Number(q.get('latency')) : DEFAULT_LATENCY;
const host = q.get('host') || location.hostname;
const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
const DEFAULT_PORTS = { h3: 4433, h1: 4443, h2: 4444 };
const COLORS = { h3: '#4f4', h2: '#fc4', h1: '#4af', http: '#f6c' };
const LABELS = { h3: 'HTTP/3', h2: 'HTTP/2', h1: 'HTTP/1.1 + TLS', http: 'HTTP/1.1 clear' };
const arms = (q.get('arms') || 'h3,h1,h2').split(',').map((s) => s.trim()).filter((a) => a in ARM_PROTOCOL);
const MAX_BUFFERED = 36000; // per-frame samples kept per arm between take() calls

const $ = (id) => document.getElementById(id);
$('streamName').textContent = stream;
$('target').textContent = `${targetLatency} s`;

const config = { stream, targetLatency, arms: {} };
const origins = {};
for (const arm of arms) {
  const port = q.get(`${arm}port`) || DEFAULT_PORTS[arm];
  const scheme = arm === 'http' ? 'http' : 'https';
  const origin = (q.get(arm) || `${scheme}://${hostPart}:${port}`).replace(/\/$/, '');
  origins[arm] = origin;
  config.arms[arm] = { origin, mpd: `${origin}/live/${encodeURIComponent(stream)}/manifest.mpd`, expect: ARM_PROTOCOL[arm] };
}

const players = {};
const pending = {};
const resources = {};
const chartHistory = {}; // arm -> [[t, latencyMs]] at 4 Hz, last 60 s
window.h3liveCompare = {
  version: 1,
  config,
  players,
  take() {
    const out = {};
    for (const arm of arms) {
      out[arm] = pending[arm];
      pending[arm] = { frames: [], dash: [] };
    }
    return out;
  },
};

function el(tag, attrs = {}, text = '') {
  const e = document.createElement(tag);
  Object.assign(e, attrs);
  if (text) e.textContent = text;
  return e;
}

function setupArm(arm) {
  const p = {
    firstFrameMs: null, playing: false, currentTime: 0, playbackRate: 1, bufferS: null,
    latency: { timecodeMs: null, timecodeAvgMs: null, dashMs: null, screenMs: null },
    lastEncoderMs: null, // encoder wall clock of the last decoded frame
    stalls: null, transport: { last: null, counts: {} }, bytes: 0,
    frames: { presented: 0, decoded: 0, decodeErrors: 0, lastError: null },
    errors: [],
  };
  players[arm] = p;
  pending[arm] = { frames: [], dash: [] };
  resources[arm] = { counts: p.transport.counts, last: null, bytes: 0 };
  chartHistory[arm] = [];

  const box = el('div', { className: 'arm' });
  const h = el('h2');
  h.append(el('span', { style: `color:${COLORS[arm]}` }, `■ ${LABELS[arm]}`), ' ', el('small', {}, config.arms[arm].origin));
  const video = el('video', { muted: true, playsInline: true, autoplay: true });
  const table = el('table');
  const cells = {};
  for (const [key, label, title] of [
    ['tc', 'latency (timecode)', 'player wall clock at the displayed frame minus the encoder clock decoded from it; mean of the last 2 s'],
    ['dash', 'latency (dash.js)', 'getCurrentLiveLatency()'],
    ['rate', 'playback rate', ''],
    ['buffer', 'buffer', ''],
    ['stalls', 'stalls / stalled', "'waiting' after the first frame until 'playing'"],
    ['proto', 'transport', `nextHopProtocol of media segments; expected ${ARM_PROTOCOL[arm]}`],
    ['bytes', 'bytes received', 'encodedBodySize of finished requests'],
    ['first', 'first frame', 'from navigation start'],
    ['errors', 'errors', ''],
  ]) {
    const tr = el('tr');
    tr.append(el('th', { title }, label));
    cells[key] = el('td', {}, '–');
    tr.append(cells[key]);
    table.append(tr);
  }
  box.append(h, video, table);
  $('arms').append(box);
  $('legend').append(el('span', { style: `color:${COLORS[arm]}` }, `■ ${LABELS[arm]}`));

  const addError = (message) => {
    p.errors.push({ t: Date.now(), message: String(message).slice(0, 500) });
    if (p.errors.length > 50) p.errors.shift();
    console.warn(`h3live compare [${arm}] error:`, message);
  };
  const recent = [];
  const hasFrames = watchFrames(video, {
    onFirstFrame: (ms) => { p.firstFrameMs = ms; },
    onSample: (shownAt, lat) => {
      p.frames.presented++;
      p.frames.decoded++;
      p.latency.timecodeMs = Math.round(lat);
      p.lastEncoderMs = shownAt - lat;
      recent.push([shownAt, lat]);
      while (recent.length && recent[0][0] < shownAt - 2000) recent.shift();
      p.latency.timecodeAvgMs = Math.round(recent.reduce((s, x) => s + x[1], 0) / recent.length);
      const buf = pending[arm].frames;
      buf.push([Math.round(shownAt), Math.round(lat)]);
      if (buf.length > MAX_BUFFERED) buf.shift();
    },
    onError: (err) => { p.frames.presented++; p.frames.decodeErrors++; p.frames.lastError = err; },
  });
  if (!hasFrames) addError('requestVideoFrameCallback not supported: no timecode latency');
  const stalls = watchStalls(video, () => p.firstFrameMs !== null);
  p.stalls = stalls.state;
  video.addEventListener('playing', () => { p.playing = true; });
  video.addEventListener('pause', () => { p.playing = false; });
  video.addEventListener('error', () => addError(`video element: ${video.error && video.error.message}`));

  const { origin, mpd } = config.arms[arm];
  const player = startDash(dashjs, video, mpd, { targetLatency, origin, debug: !!q.get('debug'), onError: addError });

  return { arm, p, video, player, cells, stalls };
}

function sample(s) {
  const { arm, p, video, player } = s;
  p.currentTime = video.currentTime;
  p.playbackRate = video.playbackRate;
  let dl = null;
  try { dl = player.getCurrentLiveLatency(); } catch { /* not ready */ }
  p.latency.dashMs = typeof dl === 'number' && Number.isFinite(dl) && dl > 0 ? Math.round(dl * 1000) : null;
  let buf = null;
  try { buf = player.getBufferLength('video'); } catch { /* not ready */ }
  p.bufferS = Number.isFinite(buf) ? Math.round(buf * 1000) / 1000 : null;
  const now = Date.now();
  p.latency.screenMs = p.lastEncoderMs === null ? null : Math.round(now - p.lastEncoderMs);
  if (p.firstFrameMs !== null) {
    const d = pending[arm].dash;
    d.push([now, p.latency.dashMs, p.playbackRate, p.bufferS, p.latency.screenMs]);
    if (d.length > MAX_BUFFERED) d.shift();
  }
  const hist = chartHistory[arm];
  if (p.latency.screenMs !== null) hist.push([now, p.latency.screenMs]);
  while (hist.length && hist[0][0] < now - 60000) hist.shift();
}

function render(s) {
  const { p, cells, stalls, arm } = s;
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  cells.tc.textContent = ms(p.latency.timecodeAvgMs);
  cells.dash.textContent = ms(p.latency.dashMs);
  cells.rate.textContent = `${p.playbackRate.toFixed(2)}×`;
  cells.buffer.textContent = p.bufferS == null ? '–' : `${p.bufferS.toFixed(2)} s`;
  cells.stalls.textContent = `${p.stalls.count} / ${(stalls.stalledNowMs() / 1000).toFixed(1)} s`;
  cells.proto.textContent = p.transport.last || '–';
  cells.proto.className = p.transport.last && p.transport.last !== ARM_PROTOCOL[arm] ? 'bad' : '';
  cells.bytes.textContent = `${(p.bytes / 1e6).toFixed(2)} MB`;
  cells.first.textContent = ms(p.firstFrameMs);
  cells.errors.textContent = String(p.errors.length);
  cells.errors.className = p.errors.length ? 'bad' : '';
}

const chart = $('chart');
const cctx = chart.getContext('2d');
function drawChart() {
  const w = chart.width, h = chart.height, now = Date.now(), span = 60000;
  cctx.clearRect(0, 0, w, h);
  let max = Math.max(targetLatency * 1500, 500);
  for (const arm of arms) for (const [, v] of chartHistory[arm]) max = Math.max(max, v);
  max = Math.ceil(max / 500) * 500;
  const x = (t) => w - ((now - t) / span) * w;
  const y = (v) => h - 14 - (v / max) * (h - 24);
  cctx.fillStyle = '#777';
  cctx.font = '11px sans-serif';
  for (let v = 0; v <= max; v += max / 4) {
    cctx.fillText(`${v} ms`, 2, y(v) - 2);
    cctx.fillRect(0, y(v), w, 0.5);
  }
  cctx.fillText('on-screen latency, last 60 s', w - 160, h - 2);
  cctx.strokeStyle = '#f84';
  cctx.setLineDash([4, 3]);
  cctx.beginPath(); cctx.moveTo(0, y(targetLatency * 1000)); cctx.lineTo(w, y(targetLatency * 1000)); cctx.stroke();
  cctx.setLineDash([]);
  for (const arm of arms) {
    cctx.strokeStyle = COLORS[arm];
    cctx.lineWidth = 1.5;
    cctx.beginPath();
    let prev = null;
    for (const [t, v] of chartHistory[arm]) {
      if (prev === null || t - prev > 1000) cctx.moveTo(x(t), y(v)); else cctx.lineTo(x(t), y(v));
      prev = t;
    }
    cctx.stroke();
  }
}

function start() {
  if (!window.dashjs) {
    document.body.prepend(el('p', { style: 'color:#fc6; padding: 12px' }, 'dash.js did not load: run "npm ci" in web/'));
    return;
  }
  performance.setResourceTimingBufferSize(2000);
  const all = arms.map(setupArm);
  let tick = 0;
  setInterval(() => {
    for (const s of all) sample(s);
    if (++tick % 2 === 0) {
      scanResources(origins, resources);
      for (const s of all) {
        s.p.bytes = resources[s.arm].bytes;
        s.p.transport.last = resources[s.arm].last;
        render(s);
      }
      drawChart();
    }
  }, 250);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
