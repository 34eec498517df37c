// Measurement pieces shared by the h3live pages: the dash.js low-latency
// settings and player setup, per-frame timecode latency, stall tracking and
// the transport a resource actually used.  Used by player.js (index.html) and
// compare.js, so both pages measure by the same rules.
//
// Nothing here touches the DOM beyond the <video> element it is given, so a
// page can run several players side by side.

import { decodeVideo } from './timecode.js';

/** Default target latency (s): the lowest with no stall in any run of a loopback sweep
 *  (0.15 s stalled; 0.3/0.4 s had one ~15 ms stall in one of two 90 s runs under load). */
export const DEFAULT_LATENCY = 0.5;

/** The protocol each transport arm must use (performance nextHopProtocol; for the MoQ
 *  arm, ./moq.js: "moq" is a MoQ session over WebTransport). */
export const ARM_PROTOCOL = { h3: 'h3', h2: 'h2', h1: 'http/1.1', http: 'http/1.1', moq: 'moq' };

/**
 * dash.js settings for low-latency playback at `targetLatency` seconds from
 * `origin`.  ffmpeg nests its UTCTiming inside ProducerReferenceTime, where
 * dash.js does not look, so the origin's /time is given as the default timing
 * source (without it dash.js would try a public time server).
 */
export function dashSettings(dashjs, targetLatency, origin, debug = false) {
  return {
    debug: { logLevel: debug ? dashjs.Debug.LOG_LEVEL_DEBUG : dashjs.Debug.LOG_LEVEL_WARNING },
    streaming: {
      delay: { liveDelay: targetLatency },
      liveCatchup: {
        enabled: true,
        mode: 'liveCatchupModeDefault',
        maxDrift: Math.max(2, targetLatency * 2),
        playbackRate: { min: -0.3, max: 0.3 },
      },
      buffer: { bufferTimeDefault: 4, stallThreshold: 0.05, lowLatencyStallThreshold: 0.05 },
      utcSynchronization: {
        enabled: true,
        defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-xsdate:2014', value: `${origin}/time` },
      },
    },
  };
}

/**
 * Create a dash.js player with dashSettings() on `video`, playing `mpd` muted
 * (`settings` are applied on top, then `setup(player)` runs before initialize);
 * dash.js ERROR and PLAYBACK_ERROR events go to `onError(message)`.  The player
 * recovers from encoder and origin restarts by itself (keepPlaying below; its
 * state is `player.h3liveRecovery`, its status changes go to `onState`).
 */
export function startDash(dashjs, video, mpd, { targetLatency, origin, debug = false, onError, settings = null, setup = null, onState = () => {} }) {
  const player = dashjs.MediaPlayer().create();
  player.updateSettings(dashSettings(dashjs, targetLatency, origin, debug));
  if (settings) player.updateSettings(settings); // e.g. the ABR rule (./abr.js)
  if (setup) setup(player); // before initialize(): e.g. a custom ABR rule (./abr.js SegmentPace)
  const ev = dashjs.MediaPlayer.events;
  player.on(ev.ERROR, (e) => {
    const err = e.error || e;
    onError(`dash.js: ${err.code || ''} ${err.message || JSON.stringify(err).slice(0, 200)}`);
  });
  player.on(ev.PLAYBACK_ERROR, (e) => onError(`playback: ${e.error && e.error.message}`));
  player.h3liveRecovery = keepPlaying(dashjs, player, video, mpd, { targetLatency, onState });
  player.initialize(video, mpd, true);
  player.setMute(true);
  return player;
}

/** From an MPD's text: availabilityStartTime (epoch ms) and, for its first
 *  Representation with a number-based SegmentTemplate, a function giving the
 *  URL (relative to the MPD) of the segment that covers a wall-clock time.
 *  Fields are null when missing. */
export function mpdInfo(text) {
  const doc = new DOMParser().parseFromString(text, 'application/xml');
  const root = doc.documentElement;
  const t = Date.parse(root.getAttribute('availabilityStartTime') || '');
  const ast = Number.isFinite(t) ? t : null;
  let segmentAt = null;
  const rep = doc.getElementsByTagName('Representation')[0];
  const period = doc.getElementsByTagName('Period')[0];
  const tpl = rep && (rep.getElementsByTagName('SegmentTemplate')[0]
    || (rep.parentElement && rep.parentElement.getElementsByTagName('SegmentTemplate')[0]));
  if (ast !== null && tpl && tpl.getAttribute('duration') && /\$Number/.test(tpl.getAttribute('media') || '')) {
    const scale = Number(tpl.getAttribute('timescale') || 1);
    const dur = (Number(tpl.getAttribute('duration')) / scale) * 1000;
    const first = Number(tpl.getAttribute('startNumber') || 1);
    const ps = /PT(?:([\d.]+)H)?(?:([\d.]+)M)?(?:([\d.]+)S)?/.exec((period && period.getAttribute('start')) || '');
    const periodStart = ps ? ((Number(ps[1] || 0) * 60 + Number(ps[2] || 0)) * 60 + Number(ps[3] || 0)) * 1000 : 0;
    const media = tpl.getAttribute('media');
    segmentAt = (wallMs) => {
      const n = first + Math.floor((wallMs - ast - periodStart) / dur);
      return n < first ? null : media
        .replace(/\$RepresentationID\$/g, rep.getAttribute('id'))
        .replace(/\$Number(?:%0(\d+)d)?\$/g, (_, w) => String(n).padStart(Number(w || 0), '0'));
    };
  }
  return { ast, segmentAt };
}

/** fetch() that gives up after `ms`; resolves to the Response or null. */
async function fetchWithin(url, ms, init = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    return await fetch(url, { ...init, cache: 'no-store', signal: ctl.signal });
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Keep a live player playing across encoder and origin restarts, without a
 * page reload.  A restarted encoder (ffmpeg) starts a new timeline: new
 * availabilityStartTime, segment numbers from 1 again; a restarted origin
 * loses the connections dash.js was using, and ffmpeg skips a segment or two
 * before it pushes again.  dash.js recovers from neither by itself: it keeps
 * asking for the old timeline's next segment, or for a segment that will
 * never come (in low-latency mode 15 retries, each held by the origin), so:
 *   - every MPD dash.js loads is checked: a new availabilityStartTime reloads
 *     the source at once (ffmpeg writes minimumUpdatePeriod; scripts/encoder.sh
 *     sets it to 1 s, so dash.js re-reads the MPD every second);
 *   - a watchdog: when the video has not advanced for STALL_MS, it probes the
 *     MPD (no-store) every CHECK_MS.  A new availabilityStartTime reloads at
 *     once.  Otherwise it asks (HEAD, giving up after 0.8 s rather than
 *     waiting out the origin's hold) for the segment dash.js will start with,
 *     the one covering now - target latency - 0.2 s: once that exists, the
 *     encoder is pushing again and the source is reloaded.  Without a usable template, or after RETRY_MS
 *     without progress while the MPD answers, it reloads anyway;
 *     Progress is the video advancing or media segment bytes arriving: a
 *     path slower than the rendition's bitrate (an ABR ladder's top rung
 *     through a bottleneck) stalls the picture while the segment is still
 *     coming, and a reload then would abort the one download whose completion
 *     lets dash.js's throughput estimate see the slower path;
 *   - segment and init URLs carry ?run=<availabilityStartTime ms>: each
 *     encoder run gets its own URLs, so the new run's segment 1 is never
 *     answered from an HTTP cache (browser or edge) entry for the old run's
 *     segment 1 (segments are cacheable for 30 s).  The origin ignores queries.
 * The segment probe uses this machine's clock as the encoder's (as dash.js
 * does once synchronised with the origin's /time); a skewed clock only delays
 * recovery to the RETRY_MS fallback.
 * `onState(status, detail)` is told 'starting', 'playing', 'stalled',
 * 'origin unreachable', 'reloading'.  Returns the state object
 * { status, reloads, events: [{ t, reason, stalledMs }], recoveries:
 *   [{ t, stalledMs }], ast } (events and recoveries keep the last 20).
 */
export function keepPlaying(dashjs, player, video, mpd, { targetLatency = DEFAULT_LATENCY, onState = () => {} } = {}) {
  const STALL_MS = 2000, CHECK_MS = 250, RETRY_MS = 6000, MIN_GAP_MS = 2500;
  const state = { status: 'starting', reloads: 0, events: [], recoveries: [], ast: null };
  let lastTime = -1, lastProgress = performance.now(), lastReload = performance.now(), stallStart = null;
  let probing = false;
  let lastBytes = -Infinity; // when media segment bytes last arrived (dash.js's per-chunk progress)
  const ev = dashjs.MediaPlayer.events;
  const onBytes = (e) => { if (e && !e.error && e.request && e.request.type === 'MediaSegment') lastBytes = performance.now(); };
  player.on(ev.FRAGMENT_LOADING_PROGRESS, onBytes);
  player.on(ev.FRAGMENT_LOADING_COMPLETED, onBytes);
  const set = (status, detail = '') => {
    if (state.status === status) return;
    state.status = status;
    onState(status, detail);
  };
  const push = (arr, e) => { arr.push(e); if (arr.length > 20) arr.shift(); };
  const reload = (reason) => {
    const now = performance.now();
    state.reloads++;
    push(state.events, { t: Date.now(), reason, stalledMs: stallStart === null ? 0 : Math.round(now - stallStart) });
    lastReload = now;
    set('reloading', reason);
    try { player.attachSource(mpd); } catch (e) { console.warn('h3live: reload failed', e); }
  };
  const withRun = (url) => (state.ast === null || /[?&]run=/.test(url) ? url
    : `${url}${url.includes('?') ? '&' : '?'}run=${state.ast}`);

  player.on(ev.MANIFEST_LOADED, (e) => {
    const t = e && e.data && e.data.availabilityStartTime;
    const ast = t instanceof Date ? t.getTime() : t ? Date.parse(t) : NaN;
    if (!Number.isFinite(ast)) return;
    const changed = state.ast !== null && ast !== state.ast;
    state.ast = ast;
    if (changed) reload('new timeline (encoder restarted)');
  });
  player.addRequestInterceptor((req) => {
    if (req && typeof req.url === 'string' && /\.m4s(\?|$)/.test(req.url)) req.url = withRun(req.url);
    // dash.js fetches low-latency segments with credentials 'omit', and
    // Chromium keeps such requests on a connection of their own (privacy
    // mode).  After an origin restart that connection stayed dead for 5-8 s
    // while the MPD and this watchdog's probes already went over a new one.
    // 'same-origin' is what dash.js's XHRs use: one connection for all of a
    // page's requests to its own origin (cross-origin arms are unchanged).
    if (req && req.credentials === 'omit') req.credentials = 'same-origin';
    return Promise.resolve(req);
  });

  async function probe() {
    probing = true;
    try {
      const r = await fetchWithin(mpd, 1500);
      if (!r) { set('origin unreachable'); return; }
      if (!r.ok) { set('stalled', `manifest ${r.status}`); return; }
      const info = mpdInfo(await r.text());
      if (performance.now() - lastReload < MIN_GAP_MS) return;
      if (info.ast !== null && state.ast !== null && info.ast !== state.ast) {
        state.ast = info.ast;
        reload('new timeline (encoder restarted)');
        return;
      }
      const seg = info.segmentAt && info.segmentAt(Date.now() - targetLatency * 1000 - 200);
      if (seg) {
        const h = await fetchWithin(withRun(new URL(seg, r.url || mpd).href), 800, { method: 'HEAD' });
        if (h && h.ok) { reload('stream is live again'); return; }
      }
      if (!seg || performance.now() - Math.max(lastProgress, lastReload) > RETRY_MS) reload('no progress');
      else set('stalled', 'waiting for the encoder');
    } finally {
      probing = false;
    }
  }

  setInterval(() => {
    const now = performance.now();
    if (video.currentTime !== lastTime) {
      const moved = lastTime >= 0;
      lastTime = video.currentTime;
      if (moved && !video.paused) {
        lastProgress = now;
        if (stallStart !== null) {
          push(state.recoveries, { t: Date.now(), stalledMs: Math.round(now - stallStart) });
          stallStart = null;
        }
        set('playing');
      }
      return;
    }
    if (now - lastProgress < STALL_MS || probing) return;
    if (stallStart === null && state.status === 'playing') stallStart = lastProgress;
    if (now - lastBytes < STALL_MS) { set('stalled', 'media arriving slower than real time'); return; }
    probe();
  }, CHECK_MS);
  return state;
}

// ---------------------------------------------------------- frame arrival
// When each frame of a <video> reached the player: the Media Source
// Extensions append that carried it (dash.js and hls.js append every CMAF
// chunk as soon as it is complete in low-latency mode, so this is the
// network's delivery plus the player's hand-over to MSE; the MoQ arm's
// equivalent is its decode loop receiving the frame, ./moq.js).  Installed
// once per page: each video SourceBuffer logs [startS, endS, epochMs]: the
// media time an append added to the buffered end, and when appendBuffer was
// called; a presented frame's media time finds the append that brought it.
// Appends are matched to their 'updateend' in order (a player may call
// appendBuffer again before the previous append's updateend is dispatched).
const mediaSources = new Map(); // blob: URL -> MediaSource
const appendLog = new WeakMap(); // video SourceBuffer -> { log: [[startS, endS, epochMs]] (last 600), calls: [epochMs], end }
let appendsHooked = false;
function hookAppends() {
  if (appendsHooked || typeof MediaSource === 'undefined' || typeof SourceBuffer === 'undefined') return;
  appendsHooked = true;
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = function h3liveCreateObjectURL(obj) {
    const url = createObjectURL.call(URL, obj);
    if (obj instanceof MediaSource) mediaSources.set(url, obj);
    return url;
  };
  const addSourceBuffer = MediaSource.prototype.addSourceBuffer;
  MediaSource.prototype.addSourceBuffer = function h3liveAddSourceBuffer(type) {
    const sb = addSourceBuffer.call(this, type);
    if (!/^video\//i.test(type)) return sb;
    const st = { log: [], calls: [], end: null };
    appendLog.set(sb, st);
    sb.addEventListener('updateend', () => {
      const at = st.calls.shift();
      const b = sb.buffered;
      if (at === undefined || !b.length) return; // the end of a remove(), or nothing buffered
      const end = b.end(b.length - 1), rangeStart = b.start(b.length - 1);
      const from = st.end !== null && st.end >= rangeStart - 1e-3 && st.end < end ? st.end : rangeStart;
      if (st.end === null || end > st.end + 1e-4 || end < st.end - 1) {
        st.log.push([from, end, at]);
        if (st.log.length > 600) st.log.shift();
      }
      st.end = end;
    });
    return sb;
  };
  const appendBuffer = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function h3liveAppendBuffer(data) {
    const st = appendLog.get(this);
    const r = appendBuffer.call(this, data); // throws when the player may not append now: not logged then
    if (st) st.calls.push(performance.timeOrigin + performance.now());
    return r;
  };
}

/** Epoch ms at which the frame at `mediaTime` (s) of `video` was appended to its MediaSource, or null. */
function arrivalOf(video, mediaTime) {
  const ms = mediaSources.get(video.currentSrc || video.src);
  if (!ms || !Number.isFinite(mediaTime)) return null;
  for (const sb of ms.sourceBuffers) {
    const st = appendLog.get(sb);
    if (!st) continue;
    for (let i = st.log.length - 1; i >= 0; i--) {
      const [start, end, at] = st.log[i];
      if (mediaTime >= start - 1e-3 && mediaTime < end - 1e-3) return at;
    }
  }
  return null;
}

/**
 * Call `onSample(shownAtMs, latencyMs, arrivalLatencyMs | null)` for every
 * presented frame whose timecode strip decodes; `onFirstFrame(msSinceNavigation)`
 * once; and `onError(message)` for frames that do not decode.  shownAtMs is
 * the wall clock (epoch ms) at which the frame is expected on screen; latency
 * is that minus the encoder's wall clock decoded from the frame; arrival
 * latency the wall clock at which the frame reached the player (its MSE
 * append, above) minus the same encoder clock (null when not known).
 * Returns false when the browser has no requestVideoFrameCallback.
 */
export function watchFrames(video, { onSample, onFirstFrame = () => {}, onError = () => {} }) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return false;
  hookAppends();
  const scratch = document.createElement('canvas');
  let first = true;
  const onFrame = (now, meta) => {
    if (first) {
      first = false;
      onFirstFrame(Math.round(performance.now()));
    }
    const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
    const r = decodeVideo(video, scratch, shownAt);
    if (r.ok) {
      const at = arrivalOf(video, meta.mediaTime);
      onSample(shownAt, shownAt - r.ms, at === null ? null : at - r.ms);
    } else onError(r.error);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
}

/**
 * Stall tracking: a stall is a 'waiting' event after the first frame, until
 * the next 'playing'.  `state` gets { count, totalMs, events: [[startEpochMs,
 * durationMs]] }; `stalledNowMs()` includes a stall still in progress.
 * `onStallEnd(startEpochMs, durationMs)`, if given, is called as each stall ends.
 */
export function watchStalls(video, hasStarted, onStallEnd = () => {}) {
  const state = { count: 0, totalMs: 0, events: [] };
  let since = null;
  video.addEventListener('waiting', () => {
    if (hasStarted() && since === null) {
      since = performance.now();
      state.count++;
    }
  });
  video.addEventListener('playing', () => {
    if (since !== null) {
      const d = Math.round(performance.now() - since);
      state.totalMs += d;
      const start = Math.round(performance.timeOrigin + since);
      state.events.push([start, d]);
      since = null;
      onStallEnd(start, d);
    }
  });
  return {
    state,
    stalledNowMs: () => state.totalMs + (since !== null ? performance.now() - since : 0),
  };
}

/**
 * Take the finished resource timing entries whose URL starts with one of
 * `origins` (keys: arm names), and clear the buffer.  For each arm adds to
 * acc[arm] = { counts: {protocol: n} (media segments only), last, bytes }
 * (bytes: encodedBodySize of every finished request of that origin; streams
 * still downloading are counted when they end).  Protocol 'none': aborted or
 * failed before a response.  `pick(entry, candidateArms)`, if given, chooses
 * among several arms sharing one origin (e.g. LL-DASH and LL-HLS over h3).
 */
export function scanResources(origins, acc, pick = null) {
  for (const e of performance.getEntriesByType('resource')) {
    const candidates = Object.keys(origins).filter((a) => e.name.startsWith(`${origins[a]}/`));
    const arm = pick && candidates.length > 1 ? pick(e, candidates) : candidates[0];
    if (!arm) continue;
    const a = acc[arm];
    a.bytes += e.encodedBodySize || 0;
    if (!/\.m4s(\?|$)/.test(e.name)) continue;
    // No protocol: the request was aborted or failed before a response.
    const p = e.nextHopProtocol || 'none';
    a.counts[p] = (a.counts[p] || 0) + 1;
    a.last = p;
  }
  performance.clearResourceTimings();
}
