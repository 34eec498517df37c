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

/** The protocol each transport arm must use (performance nextHopProtocol). */
export const ARM_PROTOCOL = { h3: 'h3', h2: 'h2', h1: 'http/1.1', http: 'http/1.1' };

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
 * Create a dash.js player with dashSettings() on `video`, playing `mpd` muted;
 * dash.js ERROR and PLAYBACK_ERROR events go to `onError(message)`.
 */
export function startDash(dashjs, video, mpd, { targetLatency, origin, debug = false, onError, settings = null }) {
  const player = dashjs.MediaPlayer().create();
  player.updateSettings(dashSettings(dashjs, targetLatency, origin, debug));
  if (settings) player.updateSettings(settings); // e.g. the ABR rule (./abr.js)
  const ev = dashjs.MediaPlayer.events;
  player.on(ev.ERROR, (e) => {
    const err = e.error || e;
    onError(`dash.js: ${err.code || ''} ${err.message || JSON.stringify(err).slice(0, 200)}`);
  });
  player.on(ev.PLAYBACK_ERROR, (e) => onError(`playback: ${e.error && e.error.message}`));
  player.initialize(video, mpd, true);
  player.setMute(true);
  return player;
}

/**
 * Call `onSample(shownAtMs, latencyMs)` for every presented frame whose
 * timecode strip decodes; `onFirstFrame(msSinceNavigation)` once; and
 * `onError(message)` for frames that do not decode.  shownAtMs is the wall
 * clock (epoch ms) at which the frame is expected on screen; latency is that
 * minus the encoder's wall clock decoded from the frame.
 * Returns false when the browser has no requestVideoFrameCallback.
 */
export function watchFrames(video, { onSample, onFirstFrame = () => {}, onError = () => {} }) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return false;
  const scratch = document.createElement('canvas');
  let first = true;
  const onFrame = (now, meta) => {
    if (first) {
      first = false;
      onFirstFrame(Math.round(performance.now()));
    }
    const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
    const r = decodeVideo(video, scratch, shownAt);
    if (r.ok) onSample(shownAt, shownAt - r.ms);
    else onError(r.error);
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
