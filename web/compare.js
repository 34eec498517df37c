// h3live transport A/B page: one dash.js player per transport arm, all on the
// same stream and target latency, each fetching manifest and media from its
// own absolute origin (h3 :4433, HTTP/1.1-over-TLS :4443, h2 :4444 by default).
//
// Layout: every arm's picture, its one-line verdict and the latency chart fit
// the window without scrolling (layout() below picks the column count that
// gives the largest pictures; the chart takes an empty grid cell or a row of
// its own).  Each picture carries the encoder's burned-in clock and the
// player's clock drawn by web/clock.js (text + machine-readable strip), so a
// screenshot shows every arm's latency.  Details per arm are in a table below.
//
// Query parameters:
//   stream=NAME        stream (default "test")
//   arms=h3,h1,h2      arms to show, in order (default h3,h1,h2)
//   latency=SECONDS    target latency for every player (default DEFAULT_LATENCY)
//   host=NAME          host of every arm (default: this page's host)
//   h3port, h1port, h2port   ports (defaults 4433, 4443, 4444)
//   h3=URL, h1=URL, h2=URL   full origin of one arm (overrides host/port)
//   h3latency=SECONDS, ...   target latency of one arm (overrides latency=; e.g. to see
//                      what a bigger buffer costs, or to check the verdict's highlight)
//   profile=NAME       network path profile (shown in the header; scripts/ab.sh)
//   path=DESCRIPTION   what that profile does, e.g. "3 % random loss each way"
//   debug=1            dash.js debug logging
//
// window.h3liveCompare (read by scripts/ab/driver.mjs) — shape, version 1:
// {
//   version: 1,
//   config: { stream, targetLatency, profile, path, arms: { ARM: { origin, mpd, expect, targetLatency } } },
//   players: { ARM: {
//     firstFrameMs: ms from navigation start to this player's first frame | null,
//     playing, currentTime, playbackRate, bufferS,
//     latency: { timecodeMs, timecodeAvgMs (last 2 s), dashMs, screenMs },
//     stalls: { count, totalMs, events: [[startEpochMs, durationMs]] },
//     transport: { last, counts: { protocol: n } },   // media segments' nextHopProtocol
//     bytes,                                          // encodedBodySize of finished requests
//     frames: { presented, decoded, decodeErrors, lastError },
//     errors: [ { t, message } ] } },
//   verdict: { lowest: ARM | null,                    // web/verdict.js, updated twice a second
//              arms: { ARM: { state: 'pending'|'lowest'|'higher'|'same', deltaMs,
//                             nowMs, p25, p50, p75, n, spanMs } } },
//   layout: { columns, videoWidth, videoHeight, chartInGrid, verdictLines },
//   take(): { ARM: { frames: [[shownAtEpochMs, latencyMs]],
//                    dash: [[epochMs, dashLatencyMs|null, playbackRate, bufferS|null, screenMs|null]] } }
//           returns the samples gathered since the previous take() and forgets them
//           (per-frame timecode latency; 4 times a second: dash.js latency, rate, buffer
//           and screenMs = now minus the encoder time of the frame on screen, which keeps
//           growing while the picture is frozen).  The live chart and the verdict use screenMs.
// }

import { PlayerClock } from './clock.js';
import { ARM_PROTOCOL, DEFAULT_LATENCY, scanResources, startDash, watchFrames, watchStalls } from './measure.js';
import { WINDOW_MS, compareArms, summarize } from './verdict.js';

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || 'test';
const targetLatency = Number(q.get('latency')) > 0 ? Number(q.get('latency')) : DEFAULT_LATENCY;
const host = q.get('host') || location.hostname;
const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
const profile = q.get('profile');
const pathDesc = q.get('path');
const DEFAULT_PORTS = { h3: 4433, h1: 4443, h2: 4444 };
const COLORS = { h3: '#4f4', h2: '#fc4', h1: '#4af', http: '#f6c' };
const LABELS = { h3: 'HTTP/3', h2: 'HTTP/2', h1: 'HTTP/1.1 + TLS', http: 'HTTP/1.1 clear' };
const arms = (q.get('arms') || 'h3,h1,h2').split(',').map((s) => s.trim()).filter((a) => a in ARM_PROTOCOL);
const MAX_BUFFERED = 36000; // per-frame samples kept per arm between take() calls

const $ = (id) => document.getElementById(id);
$('streamName').textContent = stream;
$('target').textContent = `${targetLatency} s`;
if (profile || pathDesc) {
  $('path').hidden = false;
  $('profileName').textContent = profile || '';
  $('pathDesc').textContent = pathDesc ? (profile ? `— ${pathDesc}` : pathDesc) : '';
  $('path').title = $('path').textContent.replace(/\s+/g, ' ').trim(); // one line, cut on narrow screens
}

const config = { stream, targetLatency, profile, path: pathDesc, arms: {} };
const origins = {};
for (const arm of arms) {
  const port = q.get(`${arm}port`) || DEFAULT_PORTS[arm];
  const scheme = arm === 'http' ? 'http' : 'https';
  const origin = (q.get(arm) || `${scheme}://${hostPart}:${port}`).replace(/\/$/, '');
  origins[arm] = origin;
  const armLatency = Number(q.get(`${arm}latency`)) > 0 ? Number(q.get(`${arm}latency`)) : targetLatency;
  config.arms[arm] = {
    origin, mpd: `${origin}/live/${encodeURIComponent(stream)}/manifest.mpd`, expect: ARM_PROTOCOL[arm], targetLatency: armLatency,
  };
}

const players = {};
const pending = {};
const resources = {};
const chartHistory = {}; // arm -> [[t, screenMs]] at 4 Hz, last 60 s
const verdict = { lowest: null, arms: {} };
const layoutState = { columns: 0, videoWidth: 0, videoHeight: 0, chartInGrid: false, verdictLines: 1 };
window.h3liveCompare = {
  version: 1,
  config,
  players,
  verdict,
  layout: layoutState,
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

// ------------------------------------------------------------ detail table
const DETAILS = [
  ['tc', 'latency (timecode)', 'player wall clock at the displayed frame minus the encoder clock decoded from it; mean of the last 2 s'],
  ['dash', 'latency (dash.js)', 'getCurrentLiveLatency()'],
  ['rate', 'playback rate', ''],
  ['buffer', 'buffer', ''],
  ['stalls', 'stalls / stalled', "'waiting' after the first frame until 'playing'"],
  ['proto', 'transport', 'nextHopProtocol of media segments'],
  ['bytes', 'bytes received', 'encodedBodySize of finished requests'],
  ['first', 'first frame', 'from navigation start'],
  ['errors', 'errors', ''],
  ['origin', 'origin', 'where this arm fetches manifest and media'],
];
const detailRows = {};
for (const [key, label, title] of DETAILS) {
  const tr = el('tr');
  tr.append(el('th', { title }, label));
  detailRows[key] = tr;
  $('detailTable').tBodies[0].append(tr);
}

// --------------------------------------------------------------- one arm
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

  const tile = el('section', { className: 'arm' });
  tile.dataset.arm = arm;
  const head = el('div', { className: 'arm-head', title: config.arms[arm].origin });
  const proto = el('span', { className: 'proto' }, '–');
  const badge = el('span', { className: 'badge' });
  const title = el('span', { className: 'title' });
  title.append(el('span', { className: 'name', style: `color:${COLORS[arm]}` }, `■ ${LABELS[arm]}`), ' ', proto);
  if (config.arms[arm].targetLatency !== targetLatency) title.append(' ', el('span', { className: 'target' }, `target ${config.arms[arm].targetLatency} s`));
  head.append(title, badge);
  const stage = el('div', { className: 'stage' });
  const video = el('video', { muted: true, playsInline: true, autoplay: true });
  stage.append(video);
  const clock = new PlayerClock(stage, video);
  const line = el('div', { className: 'verdict' });
  const vNow = el('b', {}, '–');
  const vP50 = el('b', {}, '–');
  const vStalls = el('span', {}, '0 stalls');
  line.append(vNow, ' now · p50 ', vP50, ' · ', vStalls);
  line.title = `latency now (now minus the encoder time of the frame on screen) · median over the last ${WINDOW_MS / 1000} s · stalls since the page opened`;
  tile.append(head, stage, line);
  $('grid').insertBefore(tile, $('chartBox'));
  $('legend').append(el('span', { style: `color:${COLORS[arm]}` }, `■ ${LABELS[arm]}`), ' ');
  $('detailTable').tHead.rows[0].append(el('th', { style: `color:${COLORS[arm]}` }, LABELS[arm]));
  const cells = {};
  for (const [key] of DETAILS) {
    cells[key] = el('td', {}, '–');
    detailRows[key].append(cells[key]);
  }
  cells.origin.textContent = config.arms[arm].origin;

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
  video.addEventListener('loadedmetadata', () => layout());

  const { origin, mpd } = config.arms[arm];
  const player = startDash(dashjs, video, mpd, { targetLatency: config.arms[arm].targetLatency, origin, debug: !!q.get('debug'), onError: addError });

  return { arm, p, tile, head, stage, video, clock, player, cells, stalls, proto, badge, vNow, vP50, vStalls };
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

const ms = (v) => (v == null ? '–' : `${Math.round(v)} ms`);

function updateVerdict(all) {
  const now = Date.now();
  const sums = {};
  for (const s of all) sums[s.arm] = summarize(chartHistory[s.arm], now);
  const v = compareArms(sums);
  verdict.lowest = v.lowest;
  for (const s of all) {
    const sum = sums[s.arm] || { n: 0, spanMs: 0, p25: null, p50: null, p75: null };
    verdict.arms[s.arm] = { ...v.arms[s.arm], nowMs: s.p.latency.screenMs, ...sum };
  }
}

function render(s) {
  const { p, cells, stalls, arm } = s;
  cells.tc.textContent = ms(p.latency.timecodeAvgMs);
  cells.dash.textContent = ms(p.latency.dashMs);
  cells.rate.textContent = `${p.playbackRate.toFixed(2)}×`;
  cells.buffer.textContent = p.bufferS == null ? '–' : `${p.bufferS.toFixed(2)} s`;
  const stalledS = (stalls.stalledNowMs() / 1000).toFixed(1);
  cells.stalls.textContent = `${p.stalls.count} / ${stalledS} s`;
  const wrongProto = !!p.transport.last && p.transport.last !== ARM_PROTOCOL[arm];
  cells.proto.textContent = p.transport.last || '–';
  cells.proto.className = wrongProto ? 'bad' : '';
  s.proto.textContent = p.transport.last || '–';
  s.proto.className = `proto${wrongProto ? ' bad' : ''}`;
  s.proto.title = `nextHopProtocol of the media segments; this arm expects ${ARM_PROTOCOL[arm]}`;
  cells.bytes.textContent = `${(p.bytes / 1e6).toFixed(2)} MB`;
  cells.first.textContent = ms(p.firstFrameMs);
  cells.errors.textContent = String(p.errors.length);
  cells.errors.className = p.errors.length ? 'bad' : '';

  const v = verdict.arms[arm];
  s.vNow.textContent = ms(p.latency.screenMs);
  s.vP50.textContent = v && v.p50 != null ? ms(v.p50) : '–';
  s.vStalls.textContent = p.stalls.count ? `${p.stalls.count} stall${p.stalls.count > 1 ? 's' : ''} ${stalledS} s` : '0 stalls';
  s.vStalls.className = p.stalls.count ? 'bad' : '';
  const state = v ? v.state : 'pending';
  s.tile.dataset.state = state;
  const sign = (d) => (d > 0 ? `+${d}` : `${d}`);
  s.badge.textContent = arms.length < 2 ? '' : {
    pending: 'collecting…',
    lowest: 'lowest',
    higher: `+${v && v.deltaMs} ms`,
    same: v && v.deltaMs ? `≈ ${sign(v.deltaMs)} ms` : '≈',
  }[state];
  s.badge.title = {
    pending: 'fewer than 10 s of latency samples yet',
    lowest: `lowest p50 over the last ${WINDOW_MS / 1000} s; some arm is higher beyond the spread`,
    higher: `p50 higher than the lowest arm's, beyond both arms' spread (its 25th percentile is above the lowest arm's 75th)`,
    same: 'within the spread of the lowest arm (middle halves overlap)',
  }[state];
}

function overallText() {
  if (!verdict.lowest) return arms.length > 1 ? 'verdict after 10 s of playback' : '';
  const higher = arms.filter((a) => verdict.arms[a].state === 'higher');
  if (!higher.length) return `no arm differs beyond its spread (last ${WINDOW_MS / 1000} s)`;
  return `${higher.map((a) => `${LABELS[a]} +${verdict.arms[a].deltaMs} ms`).join(', ')} vs ${LABELS[verdict.lowest]}, beyond the spread`;
}

// ------------------------------------------------------------------ chart
const chart = $('chart');
const cctx = chart.getContext('2d');
function drawChart() {
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(chart.clientWidth * dpr), ch = Math.round(chart.clientHeight * dpr);
  if (!cw || !ch) return;
  if (chart.width !== cw) chart.width = cw;
  if (chart.height !== ch) chart.height = ch;
  const fontPx = parseFloat(getComputedStyle(document.body).fontSize) * 0.8 * dpr;
  const w = cw, h = ch, now = Date.now(), span = 60000;
  cctx.clearRect(0, 0, w, h);
  let max = Math.max(targetLatency * 1500, 500);
  for (const arm of arms) for (const [, v] of chartHistory[arm]) max = Math.max(max, v);
  max = Math.ceil(max / 500) * 500;
  const bottom = fontPx * 1.3;
  const x = (t) => w - ((now - t) / span) * w;
  const y = (v) => h - bottom - (v / max) * (h - bottom - fontPx * 1.2);
  cctx.fillStyle = '#777';
  cctx.font = `${fontPx}px sans-serif`;
  for (let v = 0; v <= max; v += max / 4) {
    cctx.fillText(`${v} ms`, 2, y(v) - 2 * dpr);
    cctx.fillRect(0, y(v), w, 0.5 * dpr);
  }
  const caption = 'on-screen latency, last 60 s';
  cctx.fillText(caption, w - cctx.measureText(caption).width - 2, h - fontPx * 0.25);
  cctx.strokeStyle = '#f84';
  cctx.lineWidth = dpr;
  cctx.setLineDash([4 * dpr, 3 * dpr]);
  cctx.beginPath(); cctx.moveTo(0, y(targetLatency * 1000)); cctx.lineTo(w, y(targetLatency * 1000)); cctx.stroke();
  cctx.setLineDash([]);
  for (const arm of arms) {
    cctx.strokeStyle = COLORS[arm];
    cctx.lineWidth = 1.5 * dpr;
    cctx.beginPath();
    let prev = null;
    for (const [t, v] of chartHistory[arm]) {
      if (prev === null || t - prev > 1000) cctx.moveTo(x(t), y(v)); else cctx.lineTo(x(t), y(v));
      prev = t;
    }
    cctx.stroke();
  }
}

// ----------------------------------------------------------------- layout
// Choose the number of columns that gives the largest pictures while every
// tile (head line, picture, verdict line) and the chart fit the window: the
// chart takes the grid's empty cells when the last row is not full, else a
// row of its own (at least CHART_MIN of the window height).  A verdict line
// wider than its tile (tiny tiles: many arms on a small phone) wraps onto a
// second line, reserved for every tile (class "narrow"), so heights never jump.
const CHART_MIN = 0.16;
const VERDICT_PROBE = '1888 ms now · p50 1888 ms · 8 stalls 8.8 s';
let tiles = [];
let probe = null;
function layout() {
  if (!tiles.length) return;
  const grid = $('grid');
  const box = $('chartBox');
  const vw = document.documentElement.clientWidth;
  const vh = window.innerHeight;
  const cs = getComputedStyle(grid);
  const gap = parseFloat(cs.columnGap) || 0;
  const padX = parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight);
  const padY = parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom);
  const headerH = $('top').getBoundingClientRect().height;
  const t0 = tiles[0];
  if (!probe) {
    probe = el('div', { className: 'verdict probe' }, VERDICT_PROBE);
    t0.tile.append(probe);
  }
  const verdictW = probe.scrollWidth; // the longest verdict line, on one line
  const lineH = parseFloat(getComputedStyle(probe).lineHeight) || probe.getBoundingClientRect().height;
  const headH = Math.max(...tiles.map((s) => s.head.getBoundingClientRect().height));
  const v0 = tiles.find((s) => s.video.videoWidth) || t0;
  const aspect = v0.video.videoWidth ? v0.video.videoWidth / v0.video.videoHeight : 16 / 9;
  const n = tiles.length;
  const legendH = $('legend').parentElement.getBoundingClientRect().height;
  const chartMin = Math.max(vh * CHART_MIN, legendH * 4);
  let best = null;
  for (let c = 1; c <= n; c++) {
    const rows = Math.ceil(n / c);
    const chartInGrid = rows * c > n;
    const cellW = (vw - padX - gap * (c - 1)) / c;
    const availH = vh - headerH - padY - gap * (rows - 1) - (chartInGrid ? 0 : chartMin + gap);
    const fit = (extra) => Math.floor(Math.min(cellW, (availH / rows - extra) * aspect));
    let narrow = false;
    let w = fit(headH + lineH);
    if (w < verdictW) {
      narrow = true;
      w = fit(headH + 2 * lineH);
    }
    if (w > 0 && (!best || w > best.w)) best = { c, rows, w, chartInGrid, narrow, extra: headH + (narrow ? 2 : 1) * lineH };
  }
  if (!best) best = { c: 1, rows: n, w: Math.floor(vw - padX), chartInGrid: false, narrow: true, extra: headH + 2 * lineH };
  const h = best.w / aspect;
  grid.classList.toggle('narrow', best.narrow);
  grid.style.gridTemplateColumns = `repeat(${best.c}, ${best.w}px)`;
  for (const s of tiles) s.stage.style.height = `${h}px`;
  if (best.chartInGrid) {
    box.style.gridColumn = `span ${best.rows * best.c - n}`;
    box.style.height = `${h + best.extra}px`;
  } else {
    box.style.gridColumn = '1 / -1';
    const used = headerH + padY + best.rows * (h + best.extra) + gap * best.rows;
    box.style.height = `${Math.max(chartMin, vh - used - 1)}px`;
  }
  Object.assign(layoutState, {
    columns: best.c, videoWidth: best.w, videoHeight: Math.round(h), chartInGrid: best.chartInGrid, verdictLines: best.narrow ? 2 : 1,
  });
  drawChart();
}

function start() {
  if (!window.dashjs) {
    document.body.prepend(el('p', { style: 'color:#fc6; padding: 12px' }, 'dash.js did not load: run "npm ci" in web/'));
    return;
  }
  performance.setResourceTimingBufferSize(2000);
  tiles = arms.map(setupArm);
  layout();
  window.addEventListener('resize', layout);
  new ResizeObserver(layout).observe($('top'));
  const tickClocks = () => {
    const now = Date.now();
    for (const s of tiles) s.clock.draw(now);
    requestAnimationFrame(tickClocks);
  };
  requestAnimationFrame(tickClocks);
  let tick = 0;
  setInterval(() => {
    for (const s of tiles) sample(s);
    if (++tick % 2 === 0) {
      scanResources(origins, resources);
      updateVerdict(tiles);
      for (const s of tiles) {
        s.p.bytes = resources[s.arm].bytes;
        s.p.transport.last = resources[s.arm].last;
        render(s);
      }
      $('overall').textContent = overallText();
      drawChart();
    }
  }, 250);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
