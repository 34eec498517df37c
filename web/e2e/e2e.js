#!/usr/bin/env node
// End-to-end test: h3live origin + the real encoder + a headless browser
// (--browser chromium, the default, or firefox: web/e2e/browser.js) playing
// web/index.html, on free ports (so it never collides with a running demo).
// For each transport arm it plays for --duration seconds and checks:
//   - the video plays (currentTime advances), no player errors;
//   - the segment requests used the arm's protocol (h3, http/1.1) per
//     performance resource entries' nextHopProtocol, as the page counts them,
//     and every media response (manifest or playlist, init and media
//     segments) per a PerformanceObserver the test installs before the page
//     loads (it sees what the page's own buffer clearing hides);
//   - both latency readings (decoded timecode, dash.js getCurrentLiveLatency)
//     are present, below 3 s, and agree within 250 ms;
//   - a screenshot of the page shows both clocks machine-readably (the
//     encoder's strip and the player's, web/clock.js): both decode, the player
//     clock is the capture time and player minus encoder is below --max-latency.
// With --format hls the page plays the origin's LL-HLS with hls.js
// (?format=hls) and the second reading is hls.js's own latency (hls.latency).
// With --format moq (arm name moq; the origin runs with --moq) the page plays the
// origin's Media over QUIC broadcast with the MoQ player (?format=moq, web/moq.js),
// served over h3; instead of the transport and second-reading checks it checks
// that every frame came over a MoQ session on WebTransport (moq-lite, certificate
// by serverCertificateHashes), that the page never opened a WebSocket, and that
// the per-frame arrival latency is present and below the glass-to-glass latency;
// then a second page whose WebTransport session cannot open (a wrong certificate
// hash, moqcert=) must not fall back to WebSocket either: no WebSocket within
// 4 s (the player's fallback would start after 0.5 s), no frame, and the page
// says it is still connecting.
// Prints a summary ending in "N passed, N failed"; exits non-zero on failure.
//
// In Firefox the h3 arm first waits until the origin answers over h3 (Alt-Svc
// learned, QUIC connection up; firefox.js warmH3), so that the player's own
// requests are h3 from the first, as in Chromium with QUIC forced.
//
// Usage (from the repository root, after cargo build --release and npm ci in web/):
//   node web/e2e/e2e.js [--browser chromium|firefox] [--duration 20] [--arms h3,h1] [--bin target/release/h3live]
//                        [--latency S] [--stream NAME] [--screenshot docs/player.png] [--keep-logs]
//                        [--format dash|hls|moq] [--max-latency MS] [--agree MS]
//   node web/e2e/e2e.js --format moq --max-latency 1000   (the moq arm; --arms is ignored)
//   node web/e2e/e2e.js --url 'https://localhost:4433/?stream=test' --expect h3 \
//                        --spki BASE64 --quic localhost:4433   (against a running origin)
//   node web/e2e/e2e.js --browser firefox --url 'https://localhost:4433/?stream=test' --expect h3 \
//                        --cert certs/cert.pem                 (the same in Firefox)
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BROWSERS, launchBrowser, observeProtocols, open, prepareH3, protocolsSeen, watch } from './browser.js';
import { launch, waitForStats } from './chromium.js';
import { cli } from './cli.js';
import { decodePng, pictureClocks } from './png.js';
import { ROOT as root, Stack, sleep } from './stack.js';

const t0 = Date.now();
const log = (...a) => console.log(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

// ------------------------------------------------------------------ options
const { values: o } = cli(import.meta.url, {
  duration: { type: 'string', default: '20' },
  arms: { type: 'string', default: 'h3,h1' },
  bin: { type: 'string', default: join(root, 'target', 'release', 'h3live') },
  screenshot: { type: 'string' },
  'keep-logs': { type: 'boolean', default: false },
  url: { type: 'string' },
  expect: { type: 'string' },
  spki: { type: 'string' },
  quic: { type: 'string' },
  'max-latency': { type: 'string', default: '3000' },
  latency: { type: 'string' },
  stream: { type: 'string' },
  format: { type: 'string', default: 'dash' },
  agree: { type: 'string', default: '250' },
  browser: { type: 'string', default: 'chromium' },
  cert: { type: 'string' },
});
if (!BROWSERS.includes(o.browser)) {
  console.error(`e2e: --browser ${BROWSERS.join(' or ')}`);
  process.exit(2);
}
if (o.format === 'moq' && o.browser !== 'chromium') {
  // Firefox's WebTransport exposes no negotiated subprotocol (docs/player.md).
  console.error('e2e: --format moq plays in Chromium only');
  process.exit(2);
}
const opts = {
  ...o, duration: Number(o.duration), bin: resolve(o.bin), screenshot: o.screenshot ? resolve(o.screenshot) : null,
  keepLogs: o['keep-logs'], maxLatency: Number(o['max-latency']), agree: Number(o.agree),
};

// ------------------------------------------------------------ child processes
const stack = new Stack({ bin: opts.bin, log, keepLogs: opts.keepLogs });
let browser = null;
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (browser) await browser.close().catch(() => {});
  await stack.stop();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { log(`${sig}: cleaning up`); await cleanup(); process.exit(130); });
}

// ------------------------------------------------------------- one test arm
const results = [];
let shotTaken = false;
function check(arm, name, ok, detail) {
  results.push({ arm, name, ok, detail });
  log(`${ok ? 'PASS' : 'FAIL'} [${arm}] ${name}${detail ? ` — ${detail}` : ''}`);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };

async function runArm(arm, url, expectProto) {
  const page = await browser.newPage();
  const seen = watch(page);
  const moq = opts.format === 'moq';
  // The MoQ page must never fall back to WebSocket: count every WebSocket the page opens.
  if (moq) await page.evaluateOnNewDocument(countWebSockets);
  const origin = new URL(url).origin;
  if (expectProto === 'h3') await prepareH3(opts.browser, page, origin, log);
  await observeProtocols(page);
  log(`[${arm}] opening ${url}`);
  await open(page, url, log);
  const samples = [];
  let stats = null;
  const deadline = Date.now() + opts.duration * 1000;
  let firstTime = null;
  while (Date.now() < deadline) {
    await sleep(1000);
    stats = await page.evaluate('window.h3liveStats ? JSON.parse(JSON.stringify(window.h3liveStats)) : null').catch(() => null);
    if (!stats) continue;
    if (firstTime === null && stats.currentTime > 0) firstTime = { wall: Date.now(), media: stats.currentTime };
    samples.push({ t: Date.now(), tc: stats.latency.timecodeAvgMs, dash: stats.latency.dashAvgMs, arrival: stats.latency.arrivalAvgMs, ct: stats.currentTime });
  }
  // Both clocks read back from a screenshot of the page: the encoder's strip
  // in the picture and the player's (web/clock.js) right above it.  Up to 5
  // tries 1 s apart: while the player reloads its source the picture is blank.
  let clocks, before, after, tries = 0;
  do {
    if (tries++) await sleep(1000);
    // The picture: the <video>, or the MoQ player's canvas.
    const geo = await page.evaluate(`(() => { const v = document.querySelector('video') || document.querySelector('moq-watch canvas'); const b = v.getBoundingClientRect();
      return { box: { x: b.left, y: b.top, w: b.width, h: b.height }, srcH: v.videoHeight || v.height }; })()`);
    before = Date.now();
    const img = decodePng(Buffer.from(await page.screenshot({ captureBeyondViewport: false })));
    after = Date.now();
    clocks = pictureClocks(img, geo.box, geo.srcH || 720, before);
  } while (!(clocks.encoder.ok && clocks.player.ok) && tries < 5);
  check(arm, 'both clocks decode from a screenshot of the page', clocks.encoder.ok && clocks.player.ok,
    `encoder ${clocks.encoder.error || 'ok'}, player ${clocks.player.error || 'ok'} (screenshot ${tries} of at most 5)`);
  if (clocks.encoder.ok && clocks.player.ok) {
    const lat = clocks.player.ms - clocks.encoder.ms;
    check(arm, 'screenshot: PLAYER clock is the capture time, PLAYER - ENCODER a plausible latency',
      clocks.player.ms >= before - 1000 && clocks.player.ms <= after && lat > 0 && lat < opts.maxLatency,
      `player ${clocks.player.ms - before} ms after the capture request (took ${after - before} ms), player - encoder ${lat} ms`);
  }
  if (opts.screenshot && !shotTaken) {
    shotTaken = true;
    mkdirSync(dirname(opts.screenshot), { recursive: true });
    await page.setViewport({ width: 1040, height: 440 });
    const png = await page.screenshot({ captureBeyondViewport: false });
    writeFileSync(opts.screenshot, png);
    log(`[${arm}] screenshot ${opts.screenshot} (${png.length} bytes)`);
  }
  if (!stats) {
    check(arm, 'page exposes window.h3liveStats', false, `console: ${JSON.stringify(seen.console.slice(-5))}`);
    await page.close();
    return;
  }
  log(`[${arm}] final stats: ${JSON.stringify({ ...stats, history: undefined })}`);
  // plays
  const advanced = firstTime ? stats.currentTime - firstTime.media : 0;
  const wallS = firstTime ? (Date.now() - firstTime.wall) / 1000 : 0;
  check(arm, 'video plays (currentTime advances)', firstTime !== null && advanced > wallS * 0.5 && wallS > 3,
    `advanced ${advanced.toFixed(1)} s in ${wallS.toFixed(1)} s; first frame ${stats.firstFrameMs} ms after navigation`);
  if (moq) {
    await checkMoq(arm, page, stats, samples, seen);
    await page.close();
    return;
  }
  // transport
  const counts = { ...stats.transport.counts };
  // hls.js aborts a part request now and then (superseded by a playlist
  // update): no response, so no protocol to judge ('none').
  if (opts.format === 'hls') delete counts.none;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  check(arm, `segment requests used ${expectProto}`, total > 0 && counts[expectProto] === total,
    `nextHopProtocol counts ${JSON.stringify(counts)}`);
  const resp = await protocolsSeen(page, origin);
  const media = { ...resp.media };
  if (opts.format === 'hls') delete media.none;
  const nMedia = Object.values(media).reduce((a, b) => a + b, 0);
  check(arm, `every media response used ${expectProto} (observed from before the page loaded)`, nMedia > 0 && media[expectProto] === nMedia,
    `media ${JSON.stringify(resp.media)}; document ${resp.document}, other responses ${JSON.stringify(resp.other)}`);
  // latency: use the second half of the run (after catch-up settled)
  const late = samples.slice(Math.floor(samples.length / 2));
  const tc = late.map((s) => s.tc).filter((v) => v != null);
  const dash = late.map((s) => s.dash).filter((v) => v != null);
  const diffs = late.filter((s) => s.tc != null && s.dash != null).map((s) => Math.abs(s.tc - s.dash));
  const mtc = median(tc), mdash = median(dash), mdiff = median(diffs);
  check(arm, `timecode latency present and < ${opts.maxLatency / 1000} s`, tc.length > 0 && mtc < opts.maxLatency && Math.max(...tc) < opts.maxLatency,
    `median ${mtc} ms, max ${tc.length ? Math.max(...tc) : null} ms; frames decoded ${stats.frames.decoded}, errors ${stats.frames.decodeErrors}`);
  const lib = opts.format === 'hls' ? 'hls.js' : 'dash.js';
  check(arm, `${lib} latency present and < ${opts.maxLatency / 1000} s`, dash.length > 0 && mdash < opts.maxLatency && Math.max(...dash) < opts.maxLatency,
    `median ${mdash} ms, max ${dash.length ? Math.max(...dash) : null} ms`);
  check(arm, `latency readings agree within ${opts.agree} ms`, diffs.length > 0 && mdiff <= opts.agree,
    `median |timecode - ${lib}| ${mdiff} ms (max ${diffs.length ? Math.max(...diffs) : null})`);
  check(arm, 'no player errors', stats.errors.length === 0 && seen.exceptions.length === 0,
    `${JSON.stringify(stats.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}`);
  results.push({ arm, info: { browser: opts.browser, format: opts.format, latencyTimecodeMs: mtc, latencyPlayerMs: mdash, stalls: stats.stalls, firstFrameMs: stats.firstFrameMs, transport: counts, buffer: stats.bufferS, rate: stats.playbackRate } });
  await page.close();
}

/** The moq arm's checks (the video-element arms' transport and player-latency checks do not apply). */
async function checkMoq(arm, page, stats, samples, seen) {
  const m = stats.moq || {};
  const counts = stats.transport.counts;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  check(arm, 'every frame came over a MoQ session on WebTransport', total > 0 && counts.moq === total && m.transport === 'webtransport' && m.websocketSessions === 0,
    `frames by transport ${JSON.stringify(counts)}, session ${m.transport} ${m.version}, ${m.sessions} session(s), ${m.websocketSessions} over WebSocket, certificate by ${m.certificate}`);
  check(arm, 'moq-lite negotiated, certificate pinned by serverCertificateHashes', /^moq-lite-/.test(m.version || '') && m.certificate === 'serverCertificateHashes',
    `version ${m.version}, certificate ${m.certificate}`);
  const ws = await page.evaluate('window.h3liveWebSockets || null').catch(() => null);
  check(arm, 'the page opened no WebSocket', Array.isArray(ws) && ws.length === 0, `WebSockets: ${JSON.stringify(ws)}`);
  const late = samples.slice(Math.floor(samples.length / 2));
  const tc = late.map((x) => x.tc).filter((v) => v != null);
  const arr = late.map((x) => x.arrival).filter((v) => v != null);
  const mtc = median(tc), marr = median(arr);
  check(arm, `timecode latency present and < ${opts.maxLatency / 1000} s`, tc.length > 0 && mtc < opts.maxLatency && Math.max(...tc) < opts.maxLatency,
    `median ${mtc} ms, max ${tc.length ? Math.max(...tc) : null} ms; frames painted ${stats.frames.presented}, decoded ${stats.frames.decoded}, errors ${stats.frames.decodeErrors}; stalls ${stats.stalls.count}`);
  check(arm, 'arrival latency present and below the glass-to-glass latency', arr.length > 0 && marr > 0 && marr <= mtc,
    `arrival median ${marr} ms, glass-to-glass median ${mtc} ms`);
  check(arm, 'no player errors', stats.errors.length === 0 && seen.exceptions.length === 0,
    `${JSON.stringify(stats.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}`);
  results.push({ arm, info: { format: 'moq', latencyTimecodeMs: mtc, arrivalMs: marr, stalls: stats.stalls, firstFrameMs: stats.firstFrameMs, transport: counts, session: `${m.transport} ${m.version}`, playerDelayMs: m.bufferMs } });
}

/**
 * In the page, before its scripts: window.h3liveWebSockets lists the URL of every
 * WebSocket and WebSocketStream the page creates (the MoQ player's fallback uses
 * WebSocketStream where the browser has it).
 */
function countWebSockets() {
  window.h3liveWebSockets = [];
  for (const name of ['WebSocket', 'WebSocketStream']) {
    const Orig = window[name];
    if (!Orig) continue;
    const Wrapped = function (...a) { window.h3liveWebSockets.push(`${name} ${a[0]}`); return new Orig(...a); };
    Wrapped.prototype = Orig.prototype;
    Object.assign(Wrapped, Orig);
    window[name] = Wrapped;
  }
}

/** A MoQ page whose WebTransport session fails must not fall back to WebSocket. */
async function noFallback(url) {
  const page = await browser.newPage();
  await page.evaluateOnNewDocument(countWebSockets);
  log(`[moq-no-fallback] opening ${url}`);
  await open(page, url, log);
  // Until the page has tried WebTransport and the fallback's 0.5 s head start has long passed.
  const { s } = await waitForStats(page, (x) => x.moq && x.moq.status === 'disconnected' && Date.now() - x.pageStart > 4000, 15000);
  const ws = await page.evaluate('window.h3liveWebSockets || null').catch(() => null);
  const notice = await page.evaluate("document.getElementById('notice').hidden ? '' : document.getElementById('notice').textContent").catch(() => '');
  check('moq-no-fallback', 'WebTransport refused (wrong certificate hash): no WebSocket fallback, no frame, the page says it is connecting',
    !!s && Array.isArray(ws) && ws.length === 0 && s.frames.presented === 0 && s.moq.sessions === 0 && /Connecting/.test(notice),
    `WebSockets ${JSON.stringify(ws)}, frames ${s && s.frames.presented}, sessions ${s && s.moq && s.moq.sessions}, status ${s && s.moq && s.moq.status}, notice "${notice}"`);
  await page.close();
}

// --------------------------------------------------------------------- main
async function main() {
  if (opts.url) {
    // Against an already running origin.
    if (opts.browser === 'firefox') {
      if (!opts.cert) throw new Error('--browser firefox --url needs --cert (the origin certificate, PEM)');
      browser = await launchBrowser('firefox', { cert: resolve(opts.cert), log });
    } else {
      const flags = [];
      if (opts.quic) flags.push(`--origin-to-force-quic-on=${opts.quic}`);
      if (opts.spki) flags.push(`--ignore-certificate-errors-spki-list=${opts.spki}`);
      browser = await launch(flags, { log });
    }
    log(`browser: ${await browser.version()}`);
    await runArm(opts.expect || 'url', opts.url, opts.expect || 'h3');
    return;
  }
  await stack.startOrigin({ moq: opts.format === 'moq' });
  const stream = opts.stream || `e2e${process.pid}`;
  await stack.startEncoder(stream);

  browser = await launchBrowser(opts.browser, { ...stack.browserOptions(), log });
  log(`browser: ${await browser.version()}`);

  const { tls: tlsPort, h1: h1Port, h2: h2Port, http: httpPort, moq: moqPort } = stack.ports;
  if (opts.format === 'moq') {
    // The page over h3 from the origin, the media from its MoQ endpoint.
    const url = `https://localhost:${tlsPort}/?stream=${stream}&format=moq&moqport=${moqPort}`;
    await runArm('moq', opts.latency ? `${url}&latency=${opts.latency}` : url, 'moq');
    await noFallback(`${url}&moqcert=${'00'.repeat(32)}`);
    return;
  }
  const arms = {
    h3: [`https://localhost:${tlsPort}/?stream=${stream}`, 'h3'],
    h1: [`https://localhost:${h1Port}/?stream=${stream}`, 'http/1.1'],
    h2: [`https://localhost:${h2Port}/?stream=${stream}`, 'h2'],
    http: [`http://127.0.0.1:${httpPort}/?stream=${stream}`, 'http/1.1'],
  };
  for (const arm of opts.arms.split(',')) {
    if (!arms[arm]) throw new Error(`unknown arm ${arm}`);
    let [url, proto] = arms[arm];
    if (opts.format === 'hls') url += '&format=hls';
    await runArm(opts.format === 'hls' ? `hls-${arm}` : arm, opts.latency ? `${url}&latency=${opts.latency}` : url, proto);
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  results.push({ arm: 'setup', name: 'setup', ok: false, detail: String(e.message || e) });
}
await cleanup();
const checks = results.filter((r) => r.name);
const passed = checks.filter((r) => r.ok).length;
const failed = checks.length - passed;
console.log(`\n==== h3live browser e2e summary (${opts.browser}) ====`);
for (const r of results) {
  if (r.info) console.log(`  [${r.arm}] measured: ${JSON.stringify(r.info)}`);
  else console.log(`  ${r.ok ? 'PASS' : 'FAIL'}  [${r.arm}] ${r.name}${r.ok ? '' : ` — ${r.detail}`}`);
}
if (failed > 0) code = 1;
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(code);
