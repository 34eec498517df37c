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
export const ABR_RULES = ['throughput', 'l2a', 'lolp', 'dynamic'];
/** dash.js's own throughput rule: the one comparison run (README "ABR ladder", loaded machine) justified no other. */
export const DEFAULT_ABR_RULE = 'throughput';

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
 *     playedKbpsMean: number | null }          // time-weighted mean of the rendered
 *                                              // rendition's bitrate since the first one
 * `onChange()` is called after each switch.
 */
export function watchAbr(dashjs, player, stats, onChange = () => {}) {
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
    const r = e.value;
    if (e.metric !== 'HttpList' || e.mediaType !== 'video' || !r || r.type !== 'MediaSegment') return;
    const trace = r.trace || [];
    const bytes = trace.reduce((s, x) => s + (x.b ? x.b[0] : 0), 0);
    const ms = trace.reduce((s, x) => s + (x.d || 0), 0);
    stats.fetches.push([epoch(r.trequest), epoch(r.tresponse), epoch(r._tfinish), bytes, ms, r.responsecode, String(r.url || '').split('/').slice(-2).join('/')]);
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
