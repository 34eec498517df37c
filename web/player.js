// h3live player page: dash.js 5.x in low-latency mode, the player's wall
// clock drawn in the same style as the encoder's (text and machine-readable
// strip, ./clock.js), and live measurements.  Shared with the transport A/B
// page (compare.html): the dash.js settings, the default latency and the
// measurement rules (./measure.js), the clock, the per-player samples and the
// latency chart (./samples.js).
//
// Query parameters:
//   stream=NAME      stream to play (default "test"): <origin>/live/NAME/manifest.mpd
//   latency=SECONDS  target live latency for dash.js catch-up (default DEFAULT_LATENCY)
//   origin=URL       origin (transport arm) to fetch the manifest and media from
//                    (default: the page's own origin, so the page's URL picks the arm)
//   mpd=URL          full manifest URL (overrides stream/origin)
//   format=hls       play the origin's LL-HLS (hls.js, ./hls-player.js) instead of LL-DASH;
//                    mpd= is then the playlist URL; native=1 uses the browser's own HLS
//   format=moq       play the origin's Media over QUIC broadcast of the stream with the MoQ
//                    project's <moq-watch> element (./moq.js): moq-lite over WebTransport,
//                    WebCodecs, painted on a canvas; latency=S is then the element's jitter
//                    buffer (default: its real-time mode)
//   moq=URL, moqport=N   the MoQ endpoint (default https://<page host>:4435/); its certificate
//                    hash is read from the origin (origin=, default the page's), at
//                    /certificate.sha256, or given as moqcert=HEX
//   debug=1          dash.js debug logging
//   abr=RULE, abrmax=KBPS, abrstart=KBPS, pace=0, drift=S   ABR rule, caps, segment-pace rule, catch-up seek threshold (see ./abr.js)
//
// window.h3liveStats (read by automation, e.g. web/e2e/e2e.js) — shape, version 1:
// {
//   version: 1,
//   config: { stream, origin, mpd, targetLatency, format, ...(moq ? { moq } : {}) },   // targetLatency in s;
//                                 // format "dash" | "hls" (mpd is then the playlist URL)
//                                 // | "moq" (mpd null, moq: endpoint URL, targetLatency:
//                                 // jitter buffer in s or "real-time")
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
//     arrivalMs, arrivalAvgMs,    // the wall clock when the last decoded frame reached the
//                                 // player (its MSE append; format=moq: moq-lite delivered it
//                                 // to the player's decode loop) minus the encoder clock
//                                 // decoded from it: the network's share of timecodeMs
//   },
//   bufferS: number | null, playbackRate: number,
//   stalls: { count, totalMs,     // 'waiting' after the first frame, until 'playing'
//             events: [ { t, sinceFirstFrameMs, ms } ] },  // last 20
//   transport: { last: "h3" | "h2" | "http/1.1" | "none" | null, counts: {proto: n},
//                bytes },         // nextHopProtocol of finished segment requests (.m4s)
//                                 // from the manifest's origin; "none": aborted or
//                                 // failed before a response; bytes: encodedBodySize
//                                 // of every finished request to that origin.
//                                 // format=moq: "moq" (a session over WebTransport) or
//                                 // "moq-websocket"; counts: frames received over each;
//                                 // bytes: media sample bytes the decoder received
//   moq: { url, name, jitter, certificate, certificateChanges, status, broadcast, transport, version,   // format=moq
//          recovery: { restarts, reconnects, events: [{ t, reason }] },   // new players / sessions reopened after restarts, ./moq.js
//          sessions, websocketSessions, framesArrived, framesWebSocket, samplesExcluded,
//          rttMs, bytes, bufferMs }   // see ./moq.js (samples over WebSocket are left out
//                                 // of latency; stalls: picture not updated for > 200 ms)
//   frames: { presented, decoded, decodeErrors, lastError },
//   errors: [ { t: epoch ms, message } ],   // dash.js ERROR events, video errors
//   history: [ { t, tcMs, dashMs, bufferS, rate } ],  // 2 samples/s, last 120 s
//   recovery: { status,           // 'starting' | 'playing' | 'stalled' | 'origin unreachable' | 'reloading'
//               reloads,          // source reloads after a restart or a stall (no page reload)
//               events: [ { t, reason, stalledMs } ],   // each reload (last 20)
//               recoveries: [ { t, stalledMs } ],       // each stall that ended (last 20)
//               ast },            // availabilityStartTime (epoch ms) of the timeline playing
//   abr: { rule, representations, current: {id, width, height, kbps} | null,
//          switches, up, down, events: [...], playedKbpsMean, maxDrift, pace }   // see ./abr.js
//                                 // (format=dash only; one rendition: switches stay 0)
// }

import { PlayerClock } from './clock.js';
import { DEFAULT_LATENCY, scanResources, startDash, watchStalls } from './measure.js';
import { RollingMean, drawChart as drawLatencyChart, pushError, readPlayer, watchVideo } from './samples.js';
import { hlsUrl, startHls } from './hls-player.js';
import { abrFromQuery } from './abr.js';
import { MoqPlayer, certificateHash, jitterOf, loadWatch, moqUrl } from './moq.js';

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || 'test';
const origin = (q.get('origin') || location.origin).replace(/\/$/, '');
const format = ['hls', 'moq'].includes(q.get('format')) ? q.get('format') : 'dash';
const moq = format === 'moq' ? (q.get('moq') || moqUrl(location.hostname, q.get('moqport') || undefined)) : null;
const mpd = format === 'moq' ? null : q.get('mpd') || (format === 'hls' ? hlsUrl(origin, stream)
  : `${origin}/live/${encodeURIComponent(stream)}/manifest.mpd`);
const mediaOrigin = mpd ? new URL(mpd, location.href).origin : null;
const jitter = jitterOf(q.get('latency'));
const targetLatency = format === 'moq' ? (jitter === 'real-time' ? jitter : jitter / 1000)
  : Number(q.get('latency')) > 0 ? Number(q.get('latency')) : DEFAULT_LATENCY;

const $ = (id) => document.getElementById(id);
const video = $('video');
const stage = $('stage');

const stats = {
  version: 1,
  config: { stream, origin, mpd, targetLatency, format, ...(moq ? { moq } : {}) },
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
  abr: { rule: null, representations: [], current: null, switches: 0, up: 0, down: 0, events: [], playedKbpsMean: null, maxDrift: null, pace: null },
};
window.h3liveStats = stats;
$('streamName').textContent = stream;
$('s-target').textContent = typeof targetLatency === 'number' ? `${targetLatency.toFixed(2)} s` : targetLatency;
$('compareLink').search = location.search; // same stream and latency on the A/B page

function addError(message) {
  pushError(stats.errors, 'h3live player', message);
  $('s-errors').textContent = String(stats.errors.length);
}

// ---------------------------------------------------------------- clock
// The player's wall clock over the picture, as text and as a machine-readable
// strip (./clock.js), so a screenshot of the page carries both clocks.
let moqPlayer = null; // format=moq: the <moq-watch> player (./moq.js), painting a canvas
const clock = new PlayerClock(stage, video, () => (moqPlayer ? moqPlayer.pictureHeight : video.videoHeight));
function tickClock() {
  clock.draw(Date.now());
  requestAnimationFrame(tickClock);
}
requestAnimationFrame(tickClock);

// ------------------------------------------------- timecode at each frame
const onFirstFrame = (ms) => {
  stats.firstFrameMs = ms;
  $('s-first').textContent = `${ms} ms`;
};
if (format !== 'moq') watchVideo(video, stats, { addError, onFirstFrame });

// ---------------------------------------------------------------- stalls
const stallEvent = (startMs, ms) => {
  const sinceFirstFrameMs = Math.round(startMs - performance.timeOrigin - stats.firstFrameMs);
  stats.stalls.events.push({ t: Date.now(), sinceFirstFrameMs, ms });
  if (stats.stalls.events.length > 20) stats.stalls.events.shift();
};
// format=moq: the player's own stall state (./moq.js), set in startMoq().
let stalls = format === 'moq' ? null : watchStalls(video, () => stats.firstFrameMs !== null, stallEvent);
// count and totalMs read through to measure.js's state, so they are current
// between ticks (JSON.stringify includes getters).
stats.stalls = {
  get count() { return stalls ? stalls.state.count : 0; },
  get totalMs() { return stalls ? stalls.state.totalMs : 0; },
  events: [],
};

// ------------------------------------------------------------- transport
performance.setResourceTimingBufferSize(1000);

// ------------------------------------------------------------------ chart
const chart = $('chart');
const drawChart = () => drawLatencyChart(chart, {
  series: [
    { color: '#4af', points: stats.history.map((h) => [h.t, format === 'moq' ? h.arrivalMs : h.dashMs]) },
    { color: '#4f4', points: stats.history.map((h) => [h.t, h.tcMs]) },
  ],
  targetMs: typeof targetLatency === 'number' ? targetLatency * 1000 : 0,
});

// ------------------------------------------------------------------ dash.js
async function start() {
  if (format === 'moq') {
    startMoq();
    return;
  }
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
  const abrq = abrFromQuery(dashjs, q, stats.abr);
  const player = startDash(dashjs, video, mpd, { targetLatency, origin, debug: !!q.get('debug'), onError: addError, onState: showState,
    settings: abrq.settings, setup: abrq.setup });
  startAbrStats(abrq.watch(player, renderAbr));
  run(player);
}

// ------------------------------------------------------------------- ABR
// The rendition dash.js renders and its switches (ladder streams), kept apart
// from the rest of the stats: stats.abr and the "rendition" row.
function startAbrStats(abr) {
  setInterval(() => { abr.tick(); renderAbr(); }, 500);
}
function renderAbr() {
  const a = stats.abr, c = a.current;
  const cap = a.pace && a.pace.on && a.pace.capUntil > Date.now() ? ` · pace cap ${a.pace.capKbps}` : '';
  $('s-abr').textContent = c ? `${c.height}p ${c.kbps} kbit/s · ${a.rule} · ${a.switches} sw${cap}` : `– · ${a.rule}`;
}

// ------------------------------------------------------------------- MoQ
// The <moq-watch> element on a canvas in the stage (./moq.js), the same
// clocks over it; the stats rows that have no MoQ meaning show the MoQ
// session instead (the labels say which).
async function startMoq() {
  video.remove(); // the picture is the element's canvas
  const label = (id, text, title = '') => {
    const th = $(id).previousElementSibling;
    th.textContent = text;
    th.title = title;
  };
  $('s-dash').parentElement.hidden = true; // no player latency estimate
  label('s-target', 'jitter buffer', 'the MoQ player\'s latency setting (?latency=S, default real-time: 1.25 x the lowest RTT)');
  label('s-buffer', 'player delay', 'the MoQ player\'s playout delay over the lowest transit seen (jitter + frame buffer)');
  label('s-rate', 'MoQ session', 'negotiated moq-lite version, RTT');
  label('s-abr', 'broadcast', 'the broadcast (stream) and its status');
  label('s-proto', 'transport', 'moq: a MoQ session over WebTransport; moq-websocket: over the WebSocket fallback (samples left out)');
  $('compareLink').hidden = true;
  document.querySelector('.legend .k-dash').nextSibling.textContent = ' arrival ';
  const fail = (message) => {
    addError(message);
    showState('error', message);
  };
  const why = await loadWatch();
  if (why) return fail(why);
  let certHash = q.get('moqcert');
  if (!certHash && moq.startsWith('https:')) {
    try { certHash = await certificateHash(origin); } catch (e) { return fail(e.message); }
  }
  moqPlayer = new MoqPlayer(stage, {
    url: moq, name: stream, jitter, certHash, p: stats,
    refreshCertHash: q.get('moqcert') ? null : () => certificateHash(origin),
    onFirstFrame, onError: addError, onState: showState, onPicture: () => clock.layout(),
  });
  stalls = { state: moqPlayer.stalls };
  let reported = 0;
  setInterval(() => {
    const m = stats.moq;
    const ws = m.framesWebSocket;
    stats.transport.counts = { ...(m.framesArrived - ws ? { moq: m.framesArrived - ws } : {}), ...(ws ? { 'moq-websocket': ws } : {}) };
    stats.transport.last = m.transport === 'websocket' ? 'moq-websocket' : m.transport ? 'moq' : stats.transport.last;
    stats.transport.bytes = m.bytes;
    stats.bufferS = m.bufferMs == null ? null : m.bufferMs / 1000;
    stats.videoSize = moqPlayer.canvas.height ? `${moqPlayer.canvas.width}x${moqPlayer.canvas.height}` : null;
    stats.currentTime = moqPlayer.el.renderer.out.timestamp.peek() / 1000 || stats.currentTime;
    const st = moqPlayer.stalls; // new stalls since the last tick, into stats.stalls.events
    for (const e of st.events.slice(st.events.length - Math.min(st.events.length, st.count - reported))) stallEvent(e[0], e[1]);
    reported = st.count;
    stats.history.push({ t: Date.now(), tcMs: stats.latency.timecodeMs, dashMs: null, arrivalMs: stats.latency.arrivalMs, bufferS: stats.bufferS, rate: 1 });
    if (stats.history.length > 240) stats.history.shift();
    renderMoq();
  }, 500);
}

function renderMoq() {
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  const m = stats.moq;
  $('s-tc').textContent = ms(stats.latency.timecodeAvgMs);
  $('s-arrival').textContent = ms(stats.latency.arrivalAvgMs);
  $('s-buffer').textContent = ms(m.bufferMs);
  $('s-rate').textContent = m.version ? `${m.version}${m.rttMs != null ? ` · RTT ${m.rttMs} ms` : ''}` : m.status;
  $('s-abr').textContent = `${stream} · ${m.broadcast}`;
  $('s-stalls').textContent = `${stats.stalls.count} / ${(moqPlayer.stalledNowMs() / 1000).toFixed(1)} s`;
  $('s-proto').textContent = stats.transport.last ? `${stats.transport.last} (${m.transport === 'websocket' ? 'WebSocket' : 'WebTransport'})` : '–';
  $('s-proto').className = m.websocketSessions ? 'bad' : '';
  drawChart();
}

const dashMean = new RollingMean(2000); // stats.latency.dashAvgMs

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
    const r = readPlayer(player);
    if (r.latencyMs !== null) {
      stats.latency.dashMs = r.latencyMs;
      stats.latency.dashAvgMs = Math.round(dashMean.push(Date.now(), r.latencyMs));
    }
    stats.bufferS = r.bufferS;
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
  connecting: 'Connecting: MoQ over WebTransport…',
  websocket: 'MoQ over WebSocket, not WebTransport: these samples are left out of the latency',
};
function showState(status, detail) {
  const n = $('notice');
  const text = status === 'error' ? detail : STATE_TEXT[status];
  n.hidden = !text;
  if (text) n.textContent = text;
  if (status !== 'playing' && status !== 'starting') console.info(`h3live: ${status}${detail ? ` (${detail})` : ''}`);
}

function render() {
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  $('s-tc').textContent = ms(stats.latency.timecodeAvgMs);
  $('s-arrival').textContent = ms(stats.latency.arrivalAvgMs);
  $('s-dash').textContent = ms(stats.latency.dashAvgMs);
  $('s-buffer').textContent = stats.bufferS == null ? '–' : `${stats.bufferS.toFixed(2)} s`;
  $('s-rate').textContent = `${stats.playbackRate.toFixed(2)}×`;
  $('s-stalls').textContent = `${stats.stalls.count} / ${(stalls.stalledNowMs() / 1000).toFixed(1)} s`;
  $('s-proto').textContent = stats.transport.last || '–';
  drawChart();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
