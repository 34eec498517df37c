#!/usr/bin/env node
// ABR ladder end-to-end: h3live origin + scripts/encoder.sh --ladder (720p,
// 432p, 234p in one MPD) + headless Chromium (QUIC flags) playing
// web/index.html over h3, on free ports.  Checks:
//   - the page sees the 3 video renditions and starts on the top one (abrstart);
//   - a down-switch forced by a rate limit: Chromium's own network throttling
//     (DevTools Network.emulateNetworkConditions, which paces h3 too) at 700 kbit/s,
//     below the 432p rung with audio: the player renders 234p within 30 s (the
//     segment-pace rule of web/abr.js sees the segments arrive slower than real
//     time), the timecode decodes there, and the rule's own record says why
//     (stats.abr.pace: a slow or abandoned segment); the limit is then lifted;
//   - on a second page, a switch forced by capping the video bitrate through the dash.js API
//     (streaming.abr.maxBitrate.video = 600 kbit/s, below the 432p rung):
//     window.h3liveStats.abr records a down-switch to 234p, the video element
//     reports 416x234, and the timecode keeps decoding at 234p;
//   - dash.js's video segment request records reach the stats (abr.fetches);
//   - lifting the cap again: the up-switch time is reported (not asserted: it
//     depends on the rule's throughput estimate);
//   - no player errors.
// The kernel rate limit (tc tbf between network namespaces) is tested by
// scripts/test-ab.sh (rate-step, every transport).
// Usage: node web/e2e/abr.js [--bin target/release/h3live] [--abr throughput|l2a|lolp|dynamic] [--keep-logs]
import { join, resolve } from 'node:path';
import { launch, open, playerStats, waitForStats, watch } from './chromium.js';
import { cli } from './cli.js';
import { ROOT as root, Stack, checks, sleep } from './stack.js';

const t0 = Date.now();
const log = (...a) => console.log(`[abr-e2e +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const { values: o } = cli(import.meta.url, {
  bin: { type: 'string', default: join(root, 'target', 'release', 'h3live') },
  abr: { type: 'string', default: 'throughput' },
  'keep-logs': { type: 'boolean', default: false },
});
const opts = { bin: resolve(o.bin), abr: o.abr, keepLogs: o['keep-logs'] };

const stack = new Stack({ bin: opts.bin, log, keepLogs: opts.keepLogs });
let browser = null;
const { results, check } = checks(log);
const statsOf = playerStats;
const waitFor = waitForStats;

const LIMIT_KBIT = 700;

/** Page 1: a rate limit below the 432p rung forces the player from 720p down to 234p. */
async function rateLimited(url) {
  const page = await browser.newPage();
  const seen = watch(page);
  log(`opening ${url} (rate-limit stage)`);
  await open(page, url, log);
  let r = await waitFor(page, (s) => s.abr.current && s.abr.current.height === 720 && s.frames.decoded > 30, 40000);
  check('rate limit: plays the 720p rendition before the limit', r.ok, r.s ? JSON.stringify({ current: r.s.abr.current, decoded: r.s.frames.decoded }) : 'no stats');
  const cdp = await page.target().createCDPSession();
  await cdp.send('Network.enable');
  const throttle = (kbit) => cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: kbit > 0 ? (kbit * 1000) / 8 : -1, uploadThroughput: -1,
  });
  const tLimit = Date.now();
  await throttle(LIMIT_KBIT);
  log(`download limited to ${LIMIT_KBIT} kbit/s (Chromium network emulation)`);
  r = await waitFor(page, (s) => s.abr.current && s.abr.current.height === 234 && s.videoSize === '416x234', 30000);
  const downS = (Date.now() - tLimit) / 1000;
  check(`rate limit ${LIMIT_KBIT} kbit/s: switches down to 234p within 30 s (stats.abr + video element)`, r.ok,
    r.s ? `after ${downS.toFixed(1)} s; events ${JSON.stringify(r.s.abr.events.slice(-3))}, videoSize ${r.s.videoSize}` : 'no stats');
  const pace = r.s && r.s.abr.pace;
  check('the segment-pace rule saw segments arrive slower than real time', pace && pace.on && pace.slow + pace.abandoned >= 1 && pace.capKbps > 0 && pace.capKbps < 900,
    JSON.stringify(pace));
  const dec0 = r.s ? r.s.frames.decoded : 0;
  await sleep(3000);
  const s = await statsOf(page);
  const dec = s ? s.frames.decoded - dec0 : 0;
  check('rate limit: timecode decodes at 234p', s && s.videoSize === '416x234' && dec > 20 && s.latency.timecodeMs != null,
    s ? `${dec} frames decoded in 3 s at ${s.videoSize}; latency ${s.latency.timecodeMs} ms; stalls ${s.stalls.count}` : '');
  const tLift = Date.now();
  await throttle(0);
  const up = await waitFor(page, (x) => x.abr.current && x.abr.current.height > 234, 25000);
  log(`limit lifted: ${up.ok ? `up-switch to ${up.s.abr.current.height}p after ${((Date.now() - tLift) / 1000).toFixed(1)} s` : 'no up-switch within 25 s'} (not asserted)`);
  check('rate limit: no player errors, no page exceptions', up.s && up.s.errors.length === 0 && seen.exceptions.length === 0,
    up.s ? `${JSON.stringify(up.s.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}` : '');
  log(`rate-limit stage: ${JSON.stringify(up.s && { abr: { ...up.s.abr, fetches: `${up.s.abr.fetches.length} records` }, stalls: up.s.stalls.count, reloads: up.s.recovery && up.s.recovery.reloads, transport: up.s.transport.counts })}`);
  await page.close();
}

async function main() {
  await stack.startOrigin();
  const stream = `abr${process.pid}`;
  await stack.startEncoder(stream, ['--ladder']);
  browser = await launch(stack.chromiumFlags(), { log });
  const url = `https://localhost:${stack.ports.tls}/?stream=${stream}&abr=${opts.abr}&abrstart=5000`;
  await rateLimited(url);
  const page = await browser.newPage();
  const seen = watch(page);
  log(`opening ${url}`);
  await open(page, url, log);

  let r = await waitFor(page, (s) => s.abr.current && s.frames.decoded > 10, 40000);
  const reps = r.s ? r.s.abr.representations.map((x) => `${x.width}x${x.height}@${x.kbps}`) : [];
  check('page sees the 3 video renditions', reps.length === 3, reps.join(', '));
  const firstId = r.s && (r.s.abr.events.length ? r.s.abr.events[0].from : r.s.abr.current && r.s.abr.current.id);
  check(`starts on the top rendition (rule ${opts.abr}, abrstart=5000)`, r.ok && firstId === '0', JSON.stringify(r.s && r.s.abr));
  const before = r.s ? r.s.abr.switches : 0;

  // Force a down-switch: cap below the 432p rung.
  const tCap = Date.now();
  await page.evaluate('window.h3livePlayer.updateSettings({ streaming: { abr: { maxBitrate: { video: 600 } } } })');
  r = await waitFor(page, (s) => s.abr.current && s.abr.current.height === 234 && s.videoSize === '416x234', 30000);
  check('capped at 600 kbit/s: switches down to 234p (stats.abr + video element)', r.ok,
    r.s ? `after ${((Date.now() - tCap) / 1000).toFixed(1)} s; ${JSON.stringify(r.s.abr.events.slice(-2))}, videoSize ${r.s.videoSize}` : 'no stats');
  check('switch counted', r.s && r.s.abr.switches > before && r.s.abr.down >= 1, r.s ? `switches ${r.s.abr.switches}, down ${r.s.abr.down}` : '');
  const dec0 = r.s ? r.s.frames.decoded : 0;
  const err0 = r.s ? r.s.frames.decodeErrors : 0;
  await sleep(3000);
  let s = await statsOf(page);
  const dec = s ? s.frames.decoded - dec0 : 0;
  const errs = s ? s.frames.decodeErrors - err0 : 0;
  check('timecode decodes at 234p', s && s.videoSize === '416x234' && dec > 20 && errs <= dec / 10 && s.latency.timecodeMs != null,
    s ? `${dec} frames decoded, ${errs} undecodable in 3 s at ${s.videoSize}; latency ${s.latency.timecodeMs} ms` : '');

  // dash.js's record of each video segment request (stats.abr.fetches, what its throughput
  // estimate is made of): finished segments with their bytes and download time.
  // Aborted requests are recorded too, with no bytes.
  const fin = s ? (s.abr.fetches || []).filter((f) => f[2] != null && f[3] > 0) : [];
  check('video segment requests recorded (stats.abr.fetches)', fin.length >= 3 && fin.every((f) => f[2] >= f[0] && f[4] >= 0 && f[5] === 200),
    `${fin.length} finished; last ${JSON.stringify(fin.slice(-2))}`);

  // Lift the cap: report how long the rule takes to go back up.
  const tUp = Date.now();
  await page.evaluate('window.h3livePlayer.updateSettings({ streaming: { abr: { maxBitrate: { video: -1 } } } })');
  r = await waitFor(page, (x) => x.abr.current && x.abr.current.height > 234, 20000);
  log(`cap lifted: ${r.ok ? `up-switch to ${r.s.abr.current.height}p after ${((Date.now() - tUp) / 1000).toFixed(1)} s` : 'no up-switch within 20 s'} (not asserted)`);
  s = await statsOf(page);
  check('no player errors', s && s.errors.length === 0 && seen.exceptions.length === 0,
    s ? `${JSON.stringify(s.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}` : '');
  log(`final abr stats: ${JSON.stringify(s && { ...s.abr, fetches: `${s.abr.fetches.length} records` })}; stalls ${JSON.stringify(s && { count: s.stalls.count, totalMs: s.stalls.totalMs })}; transport ${JSON.stringify(s && s.transport.counts)}`);
  await page.close();
}

try {
  await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  results.push({ name: 'setup', ok: false });
}
if (browser) await browser.close().catch(() => {});
await stack.stop();
const failed = results.filter((x) => !x.ok).length;
console.log(`abr e2e: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
