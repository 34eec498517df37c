// ABR (adaptive bitrate) for the ladder stream (scripts/encoder.sh --ladder):
// which of dash.js 5's ABR rules decides, from the page's query parameters,
// and a record of the renditions actually played, for the page and for
// window.h3liveStats.abr.
//
// Query parameters:
//   abr=throughput|l2a|lolp|dynamic   ABR rule (default DEFAULT_ABR_RULE):
//       throughput  dash.js's ThroughputRule alone (its throughput estimate;
//                   for low-latency chunked downloads dash.js measures from the
//                   moof/mdat arrival times of each chunk)
//       l2a         Learn2Adapt-LowLatency (L2ARule)
//       lolp        LoL+ (LoLPRule)
//       dynamic     dash.js's default: throughput and BOLA, switched by buffer level
//     The safety rules (insufficient buffer, switch history, dropped frames,
//     abandon requests) stay at dash.js's defaults in every mode.
//   abrmax=KBPS     cap on the video bitrate (streaming.abr.maxBitrate.video)
//   abrstart=KBPS   initial video bitrate (streaming.abr.initialBitrate.video)
//   pace=0          without the segment-pace rule (SegmentPace below; on by default)
//   drift=S         catch-up seek threshold (dash.js liveCatchup.maxDrift, seconds;
//                   0 = never seek): by default LADDER_MAX_DRIFT when the stream has
//                   more than one video rendition, else measure.js's max(2, 2 x target)
export const ABR_RULES = ['throughput', 'l2a', 'lolp', 'dynamic'];
/** dash.js's own throughput rule: the rule comparison (docs/results/2026-12-01-abr-rule-choice.md) justified no other. */
export const DEFAULT_ABR_RULE = 'throughput';

/**
 * Catch-up seek threshold (s) for a stream with more than one video rendition.
 * dash.js seeks to the live edge once the latency exceeds maxDrift, and the seek
 * aborts the segment request in flight. dash.js's throughput estimate only gets a
 * sample from a completed request, so when the path drops below the rendition's
 * bitrate, a seek every few seconds keeps every sample out and the player never
 * sees the drop (docs/abr.md). With a ladder the segment is let finish, and
 * the latency it costs is won back by the catch-up playback rate.
 */
export const LADDER_MAX_DRIFT = 8;

/** The page's ?drift= (seconds, >= 0), or null when absent or not a number. */
function driftParam(q) {
  const v = q.get('drift');
  const n = v === null || v === '' ? NaN : Number(v);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/** dash.js's HttpList record of a video segment request from a METRIC_ADDED event, or null. */
function videoSegmentRecord(e) {
  const r = e.value;
  return e.metric === 'HttpList' && e.mediaType === 'video' && r && r.type === 'MediaSegment' ? r : null;
}
/** Bytes of an HttpList record (the sum of its trace; 0 for an aborted fetch). */
const traceBytes = (r) => (r.trace || []).reduce((sum, x) => sum + (x.b ? x.b[0] : 0), 0);

/**
 * The segment-pace rule: a dash.js custom quality rule for chunked low-latency
 * delivery, on beside whichever rule ?abr= picks (?pace=0 turns it off).
 *
 * At the live edge a segment arrives at the encoder's pace: it takes its own
 * duration to download whatever the link, so a finished download says nothing
 * about spare capacity, and dash.js's per-chunk estimate (bytes over the moof to
 * mdat times) reads the bursts in which chunks arrive, not the path: through a
 * 700 kbit/s bottleneck it read 2.4-6 Mbit/s over TCP (docs/abr.md).
 * What a chunked download does show is when the path is *slower* than the
 * rendition: the segment then takes longer than its duration. So:
 *   - a video segment whose first byte to last byte took more than SLOW x its
 *     media duration was limited by the path, which delivered bytes x 8 / that
 *     time (kbit/s) of video;
 *   - for HOLD_MS after such a segment the rule asks for the best rendition at
 *     or below SAFETY x that rate. dash.js takes the lowest request of equal
 *     priority, so this caps the other rules' choice; it raises nothing.
 *   - segments that keep pace set no cap: going up is left to the other rules.
 *   - the same test on the segment in flight (an abandon rule, which dash.js
 *     asks on every chunk): once ABANDON_AFTER_MS have passed since its first
 *     byte and fewer than ABANDON_RATIO of the bytes its bitrate would have
 *     delivered by then arrived, the request is abandoned for the best
 *     rendition at SAFETY x the rate seen, and that cap holds HOLD_MS. dash.js's
 *     own abandon rule needs the segment's size, which a growing segment does
 *     not have (no Content-Length), so it never fires here. This turns a drop
 *     into a switch about a second after it instead of after the whole slow
 *     segment, and makes a failed probe upwards cost a second, not a stall.
 * `state` (for window.h3liveStats.abr.pace): { on, slow: segments that were too
 * slow, abandoned: requests abandoned, capKbps, capUntil (epoch ms),
 * last: [finished ms, kbit/s, wall s, media s] }.
 */
export class SegmentPace {
  static SLOW = 1.25;
  static SAFETY = 0.8;
  static HOLD_MS = 10000;
  static ABANDON_AFTER_MS = 1000;
  static ABANDON_RATIO = 0.6;
  constructor() {
    this.state = { on: true, slow: 0, abandoned: 0, capKbps: null, capUntil: 0, last: null };
    this.inFlight = new WeakMap(); // dash.js FragmentRequest -> { first: ms, bytes, abandoned }
  }

  cap(kbps, now) {
    this.state.capKbps = Math.round(kbps * SegmentPace.SAFETY);
    this.state.capUntil = now + SegmentPace.HOLD_MS;
  }

  /** The abandon test for a video segment request in flight: the kbit/s it got (and the cap
   *  is set), or null when it keeps pace. */
  tooSlow(req, now) {
    const f = this.inFlight.get(req);
    const kbps = req && req.representation && req.representation.bitrateInKbit;
    if (!f || f.abandoned || !(kbps > 0) || !(req.duration > 0)) return null;
    const ms = now - f.first;
    if (ms < SegmentPace.ABANDON_AFTER_MS) return null;
    const expected = (kbps * Math.min(ms, req.duration * 1000)) / 8; // bytes at the rendition's bitrate
    if (f.bytes >= SegmentPace.ABANDON_RATIO * expected) return null;
    f.abandoned = true;
    const seen = (8 * f.bytes) / ms;
    this.state.abandoned++;
    this.cap(seen, now);
    return seen;
  }

  /** Account one finished HttpList record of a video segment (dash.js METRIC_ADDED). */
  observe(r) {
    const bytes = traceBytes(r);
    const t1 = r.tresponse && new Date(r.tresponse).getTime();
    const t2 = r._tfinish && new Date(r._tfinish).getTime();
    const media = Number(r._mediaduration);
    if (!bytes || !t1 || !t2 || !(media > 0) || t2 <= t1) return;
    const wall = (t2 - t1) / 1000;
    const kbps = Math.round((8 * bytes) / (t2 - t1));
    this.state.last = [t2, kbps, Math.round(wall * 100) / 100, media];
    if (wall <= media * SegmentPace.SLOW) return;
    this.state.slow++;
    this.cap(kbps, t2);
  }

  /** Register the rule and its observer on `player` (before player.initialize()). */
  attach(dashjs, player) {
    const pace = this;
    const NAME = 'SegmentPaceRule';
    const getSwitchRequest = (ctx) => {
      const none = { representation: null, reason: null, rule: NAME, priority: 0.5 };
      try {
        if (!ctx || ctx.getMediaType() !== 'video' || Date.now() >= pace.state.capUntil) return none;
        const rep = ctx.getAbrController().getOptimalRepresentationForBitrate(ctx.getMediaInfo(), pace.state.capKbps, true);
        return rep ? { ...none, representation: rep, reason: { message: `segments slower than real time: path ~${Math.round(pace.state.capKbps / SegmentPace.SAFETY)} kbit/s` } } : none;
      } catch (e) {
        return none;
      }
    };
    const rule = () => ({ create: () => ({ getSwitchRequest, getClassName: () => NAME, reset() {} }) });
    player.addABRCustomRule('qualitySwitchRules', NAME, rule);
    const ABANDON = 'SegmentPaceAbandonRule';
    const shouldAbandon = (ctx) => {
      const none = { representation: null, reason: null, rule: ABANDON, priority: 0.5 };
      try {
        const req = ctx && ctx.getCurrentRequest();
        if (!req || req.mediaType !== 'video' || ctx.getAbrController().isPlayingAtLowestQuality(req.representation)) return none;
        const now = Date.now();
        const seen = pace.tooSlow(req, now);
        if (seen === null) return none;
        const rep = ctx.getAbrController().getOptimalRepresentationForBitrate(ctx.getMediaInfo(), pace.state.capKbps, true);
        return rep ? { ...none, representation: rep, reason: { message: `segment arriving slower than real time: ~${Math.round(seen)} kbit/s` } } : none;
      } catch (e) {
        return none;
      }
    };
    // (reason must be an object: dash.js marks it forceAbandon, which makes the switch abort
    // and repeat the request at the new rendition.)
    const abandon = () => ({ create: () => ({ shouldAbandon, getClassName: () => ABANDON, reset() {} }) });
    player.addABRCustomRule('abandonFragmentRules', ABANDON, abandon);
    // Bytes per request in flight (dash.js's own bytesLoaded stays NaN without a Content-Length).
    player.on(dashjs.MediaPlayer.events.FRAGMENT_LOADING_PROGRESS, (e) => {
      const req = e && e.request;
      if (!req || req.mediaType !== 'video' || !e.response) return;
      const f = pace.inFlight.get(req) || { first: Date.now(), bytes: 0, abandoned: false };
      f.bytes += e.response.byteLength || 0;
      pace.inFlight.set(req, f);
    });
    player.on(dashjs.MediaPlayer.events.METRIC_ADDED, (e) => {
      const r = videoSegmentRecord(e);
      if (r && r.responsecode === 200) pace.observe(r);
    });
  }
}

/**
 * The ABR part of a dash.js page (player.js, compare.js), from its query
 * parameters (top of this file). `stats` (window.h3liveStats.abr or a compare
 * arm's abr) gets its initial fields here. Returns `settings` and `setup` for
 * measure.js startDash(), and `watch(player, onChange)`, which starts watchAbr().
 */
export function abrFromQuery(dashjs, q, stats) {
  const rule = abrRule(q);
  const pace = q.get('pace') === '0' ? null : new SegmentPace();
  Object.assign(stats, { rule, representations: [], current: null, switches: 0, up: 0, down: 0, events: [],
    playedKbpsMean: null, maxDrift: null, pace: pace ? pace.state : { on: false } });
  return {
    settings: abrSettings(rule, { maxKbps: Number(q.get('abrmax')), startKbps: Number(q.get('abrstart')) }),
    setup: (player) => { if (pace) pace.attach(dashjs, player); },
    watch: (player, onChange = () => {}) => watchAbr(dashjs, player, stats, onChange, { drift: driftParam(q) }),
  };
}

/** The ABR rule named by the page's query (unknown names fall back to the default). */
export function abrRule(q) {
  const r = (q.get('abr') || '').toLowerCase();
  return ABR_RULES.includes(r) ? r : DEFAULT_ABR_RULE;
}

/** dash.js settings (for player.updateSettings) selecting `rule`, with optional caps. */
export function abrSettings(rule, { maxKbps = null, startKbps = null } = {}) {
  const on = (name) => ({ active: rule === name || (rule === 'dynamic' && (name === 'throughput' || name === 'bola')) });
  const abr = {
    rules: {
      throughputRule: on('throughput'),
      bolaRule: on('bola'),
      l2ARule: on('l2a'),
      loLPRule: on('lolp'),
    },
    autoSwitchBitrate: { video: true },
  };
  if (maxKbps > 0) abr.maxBitrate = { video: maxKbps };
  if (startKbps > 0) abr.initialBitrate = { video: startKbps };
  return { streaming: { abr } };
}

/**
 * Record the video renditions dash.js renders: `stats` (an object that goes
 * into window.h3liveStats.abr) gets
 *   { rule, representations: [{id, width, height, kbps}],
 *     current: {id, width, height, kbps} | null,
 *     switches, up, down,                      // QUALITY_CHANGE_RENDERED, video
 *     events: [{t, from, to, height, kbps}],   // last 50 switches (epoch ms, ids)
 *     playedKbpsMean: number | null,           // time-weighted mean of the rendered
 *                                              // rendition's bitrate since the first one
 *     maxDrift: number | null }                // catch-up seek threshold set here (s)
 * `onChange()` is called after each switch. `drift` (s, from ?drift=) sets the
 * catch-up seek threshold; without it a ladder gets LADDER_MAX_DRIFT.
 */
export function watchAbr(dashjs, player, stats, onChange = () => {}, { drift = null } = {}) {
  const ev = dashjs.MediaPlayer.events;
  const desc = (r) => (r ? { id: String(r.id), width: r.width, height: r.height, kbps: Math.round(r.bandwidth / 1000) } : null);
  let first = null; // epoch ms when the first rendition was known
  let since = null;
  let weighted = 0; // sum of kbps * ms since `first`
  const account = (now) => {
    if (since !== null && stats.current) weighted += stats.current.kbps * (now - since);
    if (first === null) first = now;
    since = now;
  };
  const start = () => {
    try {
      const reps = player.getRepresentationsByType ? player.getRepresentationsByType('video') : [];
      stats.representations = (reps || []).map(desc);
    } catch (e) { /* not ready */ }
    const d = drift !== null ? drift : stats.representations.length > 1 ? LADDER_MAX_DRIFT : null;
    if (d !== null && stats.maxDrift !== d) {
      player.updateSettings({ streaming: { liveCatchup: { maxDrift: d } } });
      stats.maxDrift = d;
    }
    if (!stats.current) {
      try { stats.current = desc(player.getCurrentRepresentationForType('video')); } catch (e) { /* not ready */ }
      if (stats.current) account(Date.now());
    }
  };
  player.on(ev.STREAM_INITIALIZED, start);
  // Every video segment request dash.js recorded (its HttpList metric, which is also
  // what feeds its throughput estimate): [request sent, first byte, finished (epoch ms),
  // bytes, download ms as dash.js counts it (sum of its trace), HTTP status, last two
  // URL parts]. Tells whether segments still complete when the path slows down. An
  // aborted request is recorded with 0 bytes (dash.js traces a fetch only at its end).
  stats.fetches = [];
  const epoch = (d) => (d == null ? null : new Date(d).getTime());
  player.on(ev.METRIC_ADDED, (e) => {
    const r = videoSegmentRecord(e);
    if (!r) return;
    const ms = (r.trace || []).reduce((sum, x) => sum + (x.d || 0), 0);
    stats.fetches.push([epoch(r.trequest), epoch(r.tresponse), epoch(r._tfinish), traceBytes(r), ms, r.responsecode, String(r.url || '').split('/').slice(-2).join('/')]);
    if (stats.fetches.length > 600) stats.fetches.shift();
  });
  player.on(ev.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType !== 'video') return;
    const now = Date.now();
    const to = desc(e.newRepresentation);
    const from = stats.current || desc(e.oldRepresentation);
    account(now);
    if (from && to && from.id !== to.id) {
      stats.switches++;
      if (to.kbps < from.kbps) stats.down++; else stats.up++;
      stats.events.push({ t: now, from: from.id, to: to.id, height: to.height, kbps: to.kbps });
      if (stats.events.length > 50) stats.events.shift();
    }
    stats.current = to;
    onChange();
  });
  return {
    /** Update playedKbpsMean (call before reading it). */
    tick() {
      if (!stats.current) start();
      if (!stats.current) return;
      const now = Date.now();
      account(now);
      if (now > first) stats.playedKbpsMean = Math.round(weighted / (now - first));
    },
  };
}
