#!/usr/bin/env node
// Restart test: an open player page must resume by itself, without a page
// reload, after the encoder and after the origin is restarted, and a new
// viewer must be able to start afterwards.  Real parts only: h3live origin
// (with --state-dir) and scripts/encoder.sh (real ffmpeg), started by
// web/e2e/stack.js like every browser test (ports chosen by the kernel),
// headless Chromium with the QUIC flags playing web/index.html over h3.
//
// Scenarios, in order, on one playing page:
//   encoder: kill -9 of ffmpeg (scripts/encoder.sh restarts it; the new run
//            numbers segments from 1 with a new availabilityStartTime).
//            "Back" = the origin has the new run (its /streams run number
//            went up: the new ffmpeg sent its init segment).
//   origin:  kill -9 of the origin, started again 2 s later on the same
//            ports and state directory (ffmpeg keeps running, never re-sends
//            its init segments).  "Back" = /healthz answers again.  The
//            encoder pushes through the encoder relay (encoder.sh's default),
//            so no segment number may be missing on the restarted origin from
//            the one in flight at the kill (killed just after a video segment
//            started) to the newest.
//   origin-direct: the same with ffmpeg pushing straight to the origin
//            (encoder.sh --direct; the encoder is restarted that way first):
//            its stall and the segments it loses are printed next to the
//            relay's (ffmpeg loses the one in flight and the next); the time
//            from the kill to the video playing again through the relay must
//            not be longer than direct (the origin is down 2 s both times).
// For each: recovery = time from "back" to the video advancing again (a new
// frame shown and currentTime moving for the next 3 s); it must be within
// --bound segment durations (default 2, i.e. 4 s with 2 s segments; the test
// command passes 4 as a sanity bound for a loaded machine), and the timecode
// latency must settle under 3 s (polled up to 15 s).  Then a
// new page must start playing within 15 s.  The page must not have reloaded,
// and must show the interruption (window.h3liveStats.recovery: a source
// reload), except after an origin restart through the relay, where nothing
// was lost and dash.js usually carries on by itself.
// --arm moq: the page plays the origin's Media over QUIC broadcast (?format=moq,
// the origin with --moq); after an encoder restart (a new broadcast generation:
// new init segments in the catalog, media times from 0) the page starts a new
// MoQ player (new session, subscriptions and playout clock, web/moq.js); after
// an origin restart the player's session ends (the MoQ endpoint's short QUIC
// idle timeout) and the player reconnects and subscribes again.  "Noticed" is
// h3liveStats.moq.recovery (restarts + reconnects) instead of a source reload.
// Its default scenarios are encoder,origin.
//
// Usage (repository root, after cargo build --release and npm ci in web/):
//   node web/e2e/restart.js [--bin target/release/h3live] [--scenarios encoder,origin,origin-direct]
//                           [--bound 2] [--seg 2] [--arm h3|h1|moq] [--keep-logs] [--json FILE]
//   --root DIR, --no-state-dir: test another checkout's web/ and scripts/ (e.g. the old code)
//   RESTART_DEBUG=1: log the video element, dash.js and resource timing every 0.5 s after 'back'
// Soak mode (scripts/soak.sh): --soak SECONDS --period SECONDS [--load N] --out DIR
//   repeats the scenarios in turn, one every PERIOD, for SECONDS; --load N runs N viewers
//   of `h3live load` split over h3, h2, h1-tls and h1-clear (and moq with --arm moq) meanwhile; every 10 s it samples
//   the origin's RSS, its /metrics counters and the page's stats into DIR/samples.csv;
//   DIR/restarts.json gets every check and recovery, DIR/load-*.json the load reports.
//   --encoder-args='ARGS' passes more options to scripts/encoder.sh (e.g. --encoder-args='--size 640x360';
//   the = is needed for a value that starts with a dash).
// Ends with "restart: N passed, N failed"; exits non-zero on failure.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch, open, watch } from './chromium.js';
import { cli } from './cli.js';
import { ROOT, Stack, exited, sleep, stopChild, streamInfo } from './stack.js';

const t0 = Date.now();
const log = (...a) => console.log(`[restart +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const { values: o } = cli(import.meta.url, {
  bin: { type: 'string', default: join(ROOT, 'target', 'release', 'h3live') },
  scenarios: { type: 'string' },
  bound: { type: 'string', default: '2' },
  seg: { type: 'string', default: '2' },
  'keep-logs': { type: 'boolean', default: false },
  arm: { type: 'string', default: 'h3' },
  root: { type: 'string' },
  'no-state-dir': { type: 'boolean', default: false },
  soak: { type: 'string' },
  period: { type: 'string' },
  load: { type: 'string' },
  out: { type: 'string' },
  'encoder-args': { type: 'string', default: '' },
  json: { type: 'string' },
});
const num = (v) => (v === undefined ? undefined : Number(v));
const opts = {
  bin: resolve(o.bin), scenarios: o.scenarios || (o.soak || o.arm === 'moq' ? 'encoder,origin' : 'encoder,origin,origin-direct'), bound: Number(o.bound), seg: Number(o.seg), keepLogs: o['keep-logs'],
  arm: o.arm, noStateDir: o['no-state-dir'], soak: num(o.soak), period: num(o.period), load: num(o.load),
  out: o.out ? resolve(o.out) : undefined, encoderArgs: o['encoder-args'].split(' ').filter(Boolean), json: o.json ? resolve(o.json) : null,
};
const boundMs = opts.bound * opts.seg * 1000;

// ------------------------------------------------------------ child processes
// Origin, encoder and load tools: web/e2e/stack.js (the same start, ports and
// stop as every browser test), from another checkout with --root.
const stack = new Stack({ bin: opts.bin, log, keepLogs: opts.keepLogs, root: o.root ? resolve(o.root) : ROOT });
let browser = null;
/** What the playing page logged (console, exceptions), for failure details. */
let seen = { console: [], exceptions: [] };
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  stopSampler();
  await stack.stop();
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, async () => { await cleanup(); process.exit(130); });

async function get(url, timeoutMs = 1000) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return r.ok ? await r.text() : null;
  } catch { return null; }
}
async function waitFor(what, fn, timeoutMs, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// ------------------------------------------------------------------- checks
const results = [];
function check(scenario, name, ok, detail) {
  results.push({ scenario, name, ok, detail });
  log(`${ok ? 'PASS' : 'FAIL'} [${scenario}] ${name}${detail ? ` — ${detail}` : ''}`);
}
const statsOf = (page) => page.evaluate('window.h3liveStats ? JSON.parse(JSON.stringify(window.h3liveStats)) : null').catch(() => null);
// The media time of the picture on screen: the <video>'s, or the MoQ player's last painted frame.
const PICTURE_TIME = `(() => { const v = document.querySelector('video'); if (v) return v.currentTime;
  const m = document.querySelector('moq-watch'); const t = m && m.renderer.out.timestamp.peek(); return typeof t === 'number' ? t / 1000 : null; })()`;

/** Wait until the page's video advances for `spanMs` (currentTime moves by at least half of it, never
 *  standing still for more than 700 ms). Returns { startedAt: wall ms when that stretch began, stats }. */
async function playsFor(page, spanMs, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let base = null; // { wall, ct }: where the current advancing stretch began
  let prev = null; // { wall, ct }: last change seen
  while (Date.now() < end) {
    const ct = await page.evaluate(PICTURE_TIME).catch(() => null);
    const now = Date.now();
    if (typeof ct === 'number') {
      if (prev !== null && ct !== prev.ct && ct > 0) {
        if (base === null) base = { wall: now, ct: prev.ct };
        prev = { ct, changedAt: now };
        if (now - base.wall >= spanMs) {
          if (ct - base.ct >= (spanMs / 1000) * 0.5) return { startedAt: base.wall, stats: await statsOf(page) };
          base = null;
        }
      } else if (prev === null || ct !== prev.ct) {
        prev = { ct, changedAt: null };
      } else if (base !== null && now - (prev.changedAt || 0) > 700) {
        base = null;
      }
    }
    await sleep(100);
  }
  return null;
}

const stream = `restart${process.pid}`;
/** Numbers of the stream's video segments on the origin: Map number -> { state, bytes }. */
async function videoSegments() {
  const s = await streamInfo(stack.base, stream);
  const out = new Map();
  for (const ob of (s && s.objects) || []) {
    const m = /^chunk-stream0-(\d+)\.m4s$/.exec(ob.name);
    if (m) out.set(Number(m[1]), { state: ob.state, bytes: ob.bytes });
  }
  return out;
}
/** Kill -9 the origin just after a video segment started (so that one is surely in flight);
 *  returns { inFlight: its number, old: the killed process }. */
async function killAtSegmentStart() {
  const inFlight = await waitFor('a video segment that just started', async () => {
    const segs = await videoSegments();
    const n = Math.max(...segs.keys());
    const seg = segs.get(n);
    return seg && seg.state === 'growing' && seg.bytes < 100000 ? n : null;
  }, 15000, 20);
  const old = stack.child('origin').p;
  old.kill('SIGKILL');
  return { inFlight, old };
}
async function streamsRun() {
  const s = await streamInfo(stack.base, stream);
  return s ? s.run : null;
}

// ------------------------------------------------------------ soak sampling
let sampler = null;
let samplerFile = null;
function stopSampler() { if (sampler) clearInterval(sampler); sampler = null; }
/** Prometheus counters summed over label sets, by metric name prefix. */
function metricSums(text) {
  const m = {};
  for (const line of (text || '').split('\n')) {
    const x = /^([a-zA-Z0-9_:]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!x) continue;
    let key = x[1];
    if (key === 'h3live_responses_total') key += /status="[45]/.test(x[2] || '') ? '_err' : '_ok';
    m[key] = (m[key] || 0) + Number(x[3]);
  }
  return m;
}
function startSampler(page, file) {
  samplerFile = file;
  const cols = ['t', 'elapsed_s', 'origin_pid', 'origin_rss_kb', 'origin_responses_ok', 'origin_responses_err', 'aborted_uploads',
    'ingest_rejected', 'active_readers', 'store_bytes', 'allocated_bytes', 'page_status', 'page_reloads', 'page_stalls',
    'page_errors', 'page_latency_ms', 'page_current_time'];
  writeFileSync(file, `${cols.join(',')}\n`);
  const began = Date.now();
  sampler = setInterval(async () => {
    const pid = stack.child('origin') && stack.child('origin').p.pid;
    let rss = '';
    try { rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]; } catch { /* restarting */ }
    const m = metricSums(await get(`${stack.base}/metrics`, 2000));
    const s = await statsOf(page);
    const row = [new Date().toISOString(), Math.round((Date.now() - began) / 1000), pid, rss, m.h3live_responses_total_ok ?? '',
      m.h3live_responses_total_err ?? '', m.h3live_aborted_uploads_total ?? '', m.h3live_ingest_rejected_total ?? 0,
      m.h3live_active_readers ?? '', m.h3live_store_bytes ?? '', m.h3live_allocated_bytes ?? '',
      s && s.recovery ? s.recovery.status : '', s && s.recovery ? s.recovery.reloads : '', s ? s.stalls.count : '',
      s ? s.errors.length : '', s ? s.latency.timecodeAvgMs ?? '' : '', s ? s.currentTime.toFixed(1) : ''];
    appendFileSync(samplerFile, `${row.join(',')}\n`);
  }, 10000);
}

async function scenario(name, page, restart, { expectReload = true } = {}) {
  const before = await statsOf(page);
  if (process.env.RESTART_DEBUG) {
    await page.evaluate(`window.__res = []; new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__res.push([Math.round(performance.timeOrigin + e.startTime) % 100000, Math.round(e.duration), e.responseStatus, e.nextHopProtocol, e.name.split('/').pop()]))).observe({ type: 'resource' }); 1`);
  }
  const info = await restart(); // resolves at "back"
  const back = info.backAt;
  // The video must advance again: a 3 s stretch of moving currentTime that began after "back".
  if (process.env.RESTART_DEBUG) {
    for (let i = 0; i < 40; i++) {
      const d = opts.arm === 'moq' ? await page.evaluate(`JSON.stringify({ t: ${PICTURE_TIME}, ...(({ status, broadcast, sessions, framesArrived, recovery }) => ({ status, broadcast, sessions, framesArrived, restarts: recovery.restarts }))(window.h3liveStats.moq), painted: window.h3liveStats.frames.presented })`).catch((e) => String(e)) : await page.evaluate(`(() => { const v = document.querySelector('video'); const p = window.h3livePlayer; let b = null, t = null, paused = null;
        try { b = p.getBufferLength('video'); t = p.time(); paused = p.isPaused(); } catch (e) { b = String(e); }
        const r = []; for (let i = 0; i < v.buffered.length; i++) r.push([v.buffered.start(i).toFixed(2), v.buffered.end(i).toFixed(2)]);
        return JSON.stringify({ ct: v.currentTime.toFixed(2), rs: v.readyState, ns: v.networkState, vp: v.paused, err: v.error && v.error.message, buf: r, b, t, paused, st: window.h3liveStats.recovery.status, rl: window.h3liveStats.recovery.reloads }); })()`).catch((e) => String(e));
      log(`[${name}] ${Date.now() - info.backAt} ms after back (${Date.now() % 100000}): ${d}`);
      log(JSON.stringify(await page.evaluate('JSON.stringify(window.__res.splice(0))')));
      await sleep(500);
    }
  }
  const played = await playsFor(page, 3000, 30000);
  const s = await statsOf(page);
  const recovery = played ? Math.max(0, played.startedAt - back) : null;
  check(name, 'video advances again', played !== null, played ? `recovered ${recovery} ms after back` : `stats ${JSON.stringify(s && { ct: s.currentTime, recovery: s.recovery, errors: s.errors.slice(-3) })}`);
  if (played) check(name, `within ${opts.bound} segment durations (${boundMs} ms)`, recovery <= boundMs, `${recovery} ms`);
  if (process.env.RESTART_DEBUG) log(`[${name}] console: ${seen.console.slice(-40).map((c) => `${c.type}: ${c.text.slice(0, 300)}`).join('\n')}`);
  check(name, 'no page reload', s && before && s.pageStart === before.pageStart, '');
  const rec = (x) => (x && x.recovery) || { reloads: 0, events: [] };
  const reloads = rec(s).reloads - rec(before).reloads;
  if (opts.arm === 'moq') {
    const d = (f) => (s && before ? f(s.moq) - f(before.moq) : 0);
    const restarts = d((m) => m.recovery.restarts);
    const reconnects = d((m) => m.recovery.reconnects || 0);
    check(name, 'page noticed the interruption (a new MoQ player or session)', restarts + reconnects > 0,
      `new players +${restarts}, sessions reopened +${reconnects}, sessions +${d((m) => m.sessions)}, certificate changes +${d((m) => m.certificateChanges)}; ${JSON.stringify(s && s.moq.recovery.events.slice(-3))}; transport ${s && s.moq.transport}, WebSocket sessions ${s && s.moq.websocketSessions}`);
  } else if (expectReload) {
    check(name, 'page noticed the interruption (source reloaded)', reloads > 0,
      `reloads ${reloads}: ${JSON.stringify(rec(s).events.slice(-reloads))}`);
  } else {
    // Through the relay nothing is lost: dash.js usually carries on without a reload.
    log(`[${name}] source reloads: ${reloads}`);
  }
  // Back at the live edge: the timecode latency (the page's mean over its last 2 s, all
  // after the recovery by now) settles under 3 s; polled for up to 15 s.
  const settled = (x) => x && x.latency.timecodeAvgMs !== null && x.latency.timecodeAvgMs < 3000;
  const tSettle = Date.now();
  let s2 = await statsOf(page);
  while (!settled(s2) && Date.now() - tSettle < 15000) {
    await sleep(250);
    s2 = await statsOf(page);
  }
  check(name, 'latency back under 3 s', settled(s2),
    `timecode ${s2 && s2.latency.timecodeAvgMs} ms after ${Date.now() - tSettle} ms more, dash.js ${s2 && s2.latency.dashAvgMs} ms`);
  // A new viewer starts.
  const fresh = await browser.newPage();
  const tNew = Date.now();
  await open(fresh, page.url(), log);
  const fp = await playsFor(fresh, 3000, 20000);
  check(name, 'a new viewer starts', fp !== null, fp ? `first frame ${fp.stats.firstFrameMs} ms after navigation, playing ${fp.startedAt - tNew} ms after it` : '');
  await fresh.close();
  // moq: the page's own recoveries (subscribed again, reconnected), in ms after "back".
  const moqEvents = opts.arm === 'moq' && s && before ? s.moq.recovery.events.filter((e) => e.t > info.backAt - (info.detail.downMs || 0))
    .map((e) => ({ atMs: e.t - back, reason: e.reason })) : undefined;
  return { scenario: name, ...info.detail, recoveryMs: recovery, reloads, events: reloads > 0 ? rec(s).events.slice(-reloads) : [], moqEvents };
}

/** Whether the running encoder pushes straight to the origin (encoder.sh --direct), not through the relay. */
let encoderDirect = false;
/** scripts/encoder.sh pushing the test stream (through the relay unless `extra` says --direct); waits until it is live. */
async function startEncoder(extra) {
  const args = ['--seg-duration', String(opts.seg), ...opts.encoderArgs, ...extra];
  encoderDirect = args.includes('--direct');
  await stack.startEncoder(stream, args);
}

async function main() {
  await stack.startOrigin({ moq: opts.arm === 'moq', extra: opts.noStateDir ? [] : ['--state-dir', join(stack.work, 'state')] });
  const { http: httpPort, tls: tlsPort, h1: h1Port, h2: h2Port, moq: moqPort } = stack.ports;
  const cert = stack.cert;
  await startEncoder([]);

  browser = await launch(stack.chromiumFlags(), { log });
  const page = await browser.newPage();
  seen = watch(page);
  await open(page, `https://localhost:${opts.arm === 'h1' ? h1Port : tlsPort}/?stream=${stream}${moqPort ? `&format=moq&moqport=${moqPort}` : ''}`, log);
  const warm = await playsFor(page, 8000, 30000);
  check('setup', 'the page plays before any restart', warm !== null, warm ? '' :
    `stats ${JSON.stringify(await statsOf(page))}; console ${JSON.stringify(seen.console.slice(-10))}; exceptions ${JSON.stringify(seen.exceptions.slice(-3))}`);
  if (!warm) return [];

  const out = [];
  const names = opts.scenarios.split(',');
  let soakEnd = null;
  if (opts.soak) {
    mkdirSync(opts.out, { recursive: true });
    soakEnd = Date.now() + opts.soak * 1000;
    const addr = { h3: `127.0.0.1:${tlsPort}`, h2: `127.0.0.1:${h2Port}`, 'h1-tls': `127.0.0.1:${h1Port}`, 'h1-clear': `127.0.0.1:${httpPort}`,
      ...(moqPort ? { moq: `127.0.0.1:${moqPort}` } : {}) };
    const per = Math.ceil((opts.load || 0) / Object.keys(addr).length);
    for (const t of per > 0 ? Object.keys(addr) : []) {
      stack.start(`load-${t}`, opts.bin, ['load', '-t', t, '--addr', addr[t], '--ca', cert, '--stream', stream, '-n', String(per),
        '-d', `${Math.max(10, Math.round((soakEnd - Date.now()) / 1000))}s`, '--ramp', '5s', '--wait', '60s', '-q', '--json', join(opts.out, `load-${t}.json`)]);
    }
    startSampler(page, join(opts.out, 'samples.csv'));
  }
  const soakNames = [];
  if (opts.soak) {
    // A restart every PERIOD, the last one at least 20 s before the end.
    const n = Math.floor((opts.soak - 20) / opts.period);
    for (let i = 0; i < n; i++) soakNames.push(names[i % names.length]);
  }
  for (const name of opts.soak ? soakNames : names) {
    if (opts.soak) {
      // One restart every PERIOD, counted from the start of the soak.
      const at = soakEnd - opts.soak * 1000 + (out.length + 1) * opts.period * 1000;
      await sleep(Math.max(0, at - Date.now()));
      log(`soak: restart ${out.length + 1} (${name})`);
    }
    if (name === 'encoder') {
      out.push(await scenario('encoder', page, async () => {
        const runBefore = await streamsRun();
        const astOf = async () => { const m = await get(`${stack.base}/live/${stream}/manifest.mpd`); const x = m && /availabilityStartTime="([^"]+)"/.exec(m); return x ? x[1] : null; };
        const astBefore = await astOf();
        const enc = stack.child('encoder').p.pid;
        const ff = execFileSync('pgrep', ['-P', String(enc), 'ffmpeg']).toString().trim().split('\n')[0];
        const killedAt = Date.now();
        process.kill(Number(ff), 'SIGKILL');
        log(`[encoder] kill -9 ffmpeg (pid ${ff})`);
        // Back: the origin has the new run (its run number went up), or, with an
        // origin that has no run number, serves the new run's manifest.
        await waitFor('the new encoder run', async () => {
          const r = await streamsRun();
          if (r !== null && runBefore !== null && r > runBefore) return true;
          const a = await astOf();
          return a !== null && a !== astBefore;
        }, 30000, 50);
        const backAt = Date.now();
        log(`[encoder] new run on the origin ${backAt - killedAt} ms after the kill`);
        return { backAt, detail: { downMs: backAt - killedAt } };
      }));
    } else if (name === 'origin' || name === 'origin-direct') {
      const direct = name === 'origin-direct';
      if (direct && !encoderDirect) {
        // The encoder again, pushing straight to the origin: a new encoder run the page follows.
        log('[origin-direct] restarting the encoder with --direct');
        const runBefore = await streamsRun();
        await stopChild(stack.child('encoder').p);
        await startEncoder(['--direct']);
        await waitFor('the direct encoder run', async () => {
          const r = await streamsRun();
          return r !== null && runBefore !== null && r > runBefore;
        }, 20000);
        if (!(await playsFor(page, 3000, 30000))) throw new Error('the page did not play again after the encoder switch');
      }
      const stallsBefore = ((await statsOf(page)) || {}).stalls || { totalMs: 0 };
      let inFlight = null;
      out.push(await scenario(name, page, async () => {
        const killed = await killAtSegmentStart();
        const killedAt = Date.now();
        inFlight = killed.inFlight;
        log(`[${name}] kill -9 origin (pid ${killed.old.pid}) while video segment ${inFlight} is written`);
        // Down for 2 s, counted from the kill, once the killed process is gone.
        await exited(killed.old, 10000);
        await sleep(Math.max(0, killedAt + 2000 - Date.now()));
        await stack.startOriginAgain(15000);
        const backAt = Date.now();
        log(`[${name}] answering again ${backAt - killedAt} ms after the kill`);
        return { backAt, detail: { downMs: backAt - killedAt } };
      }, { expectReload: encoderDirect }));
      const m = out[out.length - 1];
      const s2 = (await statsOf(page)) || {};
      m.pageStallMs = ((s2.stalls || {}).totalMs || 0) - (stallsBefore.totalMs || 0);
      m.killToPlayingMs = m.recoveryMs === null ? null : m.downMs + m.recoveryMs;
      // Segments on the restarted origin, from the one in flight at the kill to the newest.
      const segs = await videoSegments();
      const newest = Math.max(...segs.keys());
      const missing = [];
      for (let n = inFlight; n <= newest; n++) if (!segs.has(n)) missing.push(n);
      m.inFlight = inFlight;
      m.missingSegments = missing;
      const detail = `segment ${inFlight} in flight at the kill; origin now has ${[...segs.keys()].sort((a, b) => a - b).join(',')}`;
      if (encoderDirect) log(`[${name}] segments missing on the restarted origin (ffmpeg direct): ${missing.length ? missing.join(',') : 'none'} (${detail})`);
      else check(name, 'no segment missing on the restarted origin (through the relay)', missing.length === 0, detail);
    } else throw new Error(`unknown scenario ${name}`);
    out[out.length - 1].at = new Date().toISOString();
    if (opts.soak) writeFileSync(join(opts.out, 'restarts.json'), JSON.stringify({ results, measured: out }, null, 2));
  }
  if (soakEnd) {
    await sleep(Math.max(0, soakEnd - Date.now()));
    stopSampler();
    for (const t of ['h3', 'h2', 'h1-tls', 'h1-clear', 'moq']) {
      const c = stack.child(`load-${t}`);
      if (c && !(await exited(c.p, 30000))) await stopChild(c.p);
    }
  }
  const [r, d] = [out.find((m) => m.scenario === 'origin'), out.find((m) => m.scenario === 'origin-direct')];
  if (r && d && r.killToPlayingMs !== null && d.killToPlayingMs !== null) {
    // The origin was down as long both times; direct, ffmpeg lost the segment in flight and skipped the
    // next. Printed, not asserted: one sample each, paced by dash.js's retry timers, on a shared
    // machine (relay 2.0-6.0 s, direct 4.7-5.7 s in runs of this test); the relay's guarantee, no
    // segment missing, is checked above, and the stalls are compared over many restarts in
    // docs/results (relay).
    log(`[origin] kill -> playing: relay ${r.killToPlayingMs} ms (page stalled ${r.pageStallMs} ms), direct ${d.killToPlayingMs} ms (page stalled ${d.pageStallMs} ms)`);
  }
  await page.close();
  return out;
}

let measured = [];
try {
  measured = await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  results.push({ scenario: 'setup', name: 'setup', ok: false, detail: String(e.message || e) });
}
await cleanup();
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log('\n==== h3live restart test summary ====');
for (const r of results) console.log(`  ${r.ok ? 'PASS' : 'FAIL'}  [${r.scenario}] ${r.name}${r.ok ? '' : ` — ${r.detail}`}`);
for (const m of measured) console.log(`  [${m.scenario}] measured: ${JSON.stringify(m)}`);
const stallOf = (name) => measured.find((m) => m.scenario === name);
const [viaRelay, direct] = [stallOf('origin'), stallOf('origin-direct')];
if (viaRelay && direct) {
  const fmt = (m) => `page stall ${m.pageStallMs} ms, kill -> playing ${m.killToPlayingMs} ms, back -> playing ${m.recoveryMs} ms, missing segments ${JSON.stringify(m.missingSegments)}`;
  console.log(`  origin kill -9, through the relay: ${fmt(viaRelay)}`);
  console.log(`  origin kill -9, ffmpeg direct:     ${fmt(direct)}`);
}
if (opts.json) writeFileSync(opts.json, JSON.stringify({ results, measured }, null, 2));
console.log(`restart: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
