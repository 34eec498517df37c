#!/usr/bin/env node
// Screenshot test of the side-by-side compare page (web/compare.html):
// origin + real encoder (640x360) on free ports (web/e2e/stack.js), a headless
// browser (--browser chromium, the default, or firefox: web/e2e/browser.js)
// using HTTP/3 to the origin, playing all three arms (h3, HTTP/1.1+TLS, h2;
// --arms h3,moq,h1: the MoQ arm, the MoQ player painting a canvas, the origin
// with its MoQ endpoint) in one page, then screenshots at 1280x800, 390x844 (phone), 1920x1080 and
// 3840x2160.  At each size it checks, from the page's geometry and the
// screenshot's pixels:
//   - no horizontal scrollbar (document scrollWidth <= clientWidth);
//   - at 1280x800 and 390x844: every arm's picture (video element; moq: its
//     canvas), its verdict line and the chart lie fully inside the viewport
//     (nothing needs scrolling);
//   - in every arm's picture both clocks decode from the screenshot: the
//     encoder's timecode strip (bottom of the picture, web/timecode.js) and
//     the player's strip right above it (web/clock.js); the player clock is
//     the screenshot's time (within the capture window) and player minus
//     encoder is a plausible latency (0 < x < 3 s) that agrees with what the
//     page itself measured;
//   - text stays readable: verdict lines (on one line) and clocks at least 13 px high;
//   - the path profile from the URL (profile=, path=) is shown.
// Also: each arm used its protocol (as the page counts its media segments, and
// every media response of the arm's origin per a PerformanceObserver installed
// before the page loads; moq: every frame over a MoQ session on WebTransport),
// no player errors.  Then the page again with
// h1latency=1.5 (HTTP/1.1 held 1 s behind the others): its tile must be marked
// higher beyond the spread (verdict, red outline, "+N ms"), one of the others lowest.
// Prints "compare-shots: N passed, N failed"; exits non-zero on failure.
//
// Usage (repository root, after cargo build --release and npm ci in web/):
//   node web/e2e/compare-shots.js [--browser chromium|firefox] [--bin target/release/h3live] [--play 12]
//        [--screenshot docs/compare.png] [--out DIR] [--arms h3,h1,h2] [--keep-logs]
//   --play S          seconds of playback before the first screenshot (default 12:
//                     the verdict needs 10 s of samples)
//   --screenshot F    write the 1280x800 screenshot to F, reduced to a 64-colour palette (ffmpeg)
//   --out DIR         also write every raw screenshot to DIR (compare-WxH.png)
//   --arms LIST       arms to show (default h3,h1,h2; also http, moq: the origin then runs with --moq)
//   --no-highlight    skip the second part: the page again with h1latency=1.5 (HTTP/1.1
//                     held 1 s further behind), whose tile must be marked higher
//                     beyond the spread (verdict, red outline, "+N ms"), and the lowest
//                     arm (one of the others) "lowest"
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BROWSERS, launchBrowser, observeProtocols, open as navigate, prepareH3, protocolsSeen, watch } from './browser.js';
import { cli } from './cli.js';
import { decodePng, pictureClocks } from './png.js';
import { Stack, sleep } from './stack.js';

const t0 = Date.now();
const log = (...a) => console.log(`[compare-shots +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const { values: o } = cli(import.meta.url, {
  bin: { type: 'string' },
  play: { type: 'string', default: '12' },
  screenshot: { type: 'string' },
  out: { type: 'string' },
  'keep-logs': { type: 'boolean', default: false },
  arms: { type: 'string', default: 'h3,h1,h2' },
  'no-highlight': { type: 'boolean', default: false },
  browser: { type: 'string', default: 'chromium' },
});
if (!BROWSERS.includes(o.browser)) {
  console.error(`compare-shots: --browser ${BROWSERS.join(' or ')}`);
  process.exit(2);
}
const opts = {
  bin: o.bin ? resolve(o.bin) : undefined, play: Number(o.play), screenshot: o.screenshot ? resolve(o.screenshot) : null,
  out: o.out ? resolve(o.out) : null, keepLogs: o['keep-logs'], arms: o.arms, highlight: !o['no-highlight'], browser: o.browser,
};

const SIZES = [
  { w: 1280, h: 800, mustFit: true },
  { w: 390, h: 844, mustFit: true },
  { w: 1920, h: 1080, mustFit: false },
  { w: 3840, h: 2160, mustFit: false },
];
const PROTOCOLS = { h3: 'h3', h1: 'http/1.1', h2: 'h2', http: 'http/1.1', moq: 'moq' };
if (opts.arms.split(',').includes('moq') && opts.browser !== 'chromium') {
  console.error('compare-shots: the moq arm plays in Chromium only'); // docs/player.md
  process.exit(2);
}
const ARMS = Object.fromEntries(opts.arms.split(',').map((a) => {
  if (!PROTOCOLS[a]) { console.error(`unknown arm ${a}`); process.exit(2); }
  return [a, PROTOCOLS[a]];
}));
// What the header says about the network path (as scripts/ab.sh would pass it); the
// truth for this run, and long enough to wrap on a phone.
const PROFILE = 'loopback';
const PATH_DESC = `origin, encoder and ${opts.browser === 'firefox' ? 'Firefox' : 'Chromium'} on one machine, no impairment`;
/** Screenshot latency vs the page's own on-screen latency (read just before and just
 *  after the capture; it is sampled every 250 ms), on a loaded machine. */
const AGREE_MS = 400;
const MIN_TEXT_PX = 13;

const stack = new Stack({ bin: opts.bin, log, keepLogs: opts.keepLogs });
let browser = null;
/** Each open page's console messages and exceptions (chromium.js watch). */
const seen = new Map();
const results = [];
function check(where, name, ok, detail = '') {
  results.push({ where, name, ok, detail });
  log(`${ok ? 'PASS' : 'FAIL'} [${where}] ${name}${detail ? ` — ${detail}` : ''}`);
}
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  await stack.stop();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { log(`${sig}: cleaning up`); await cleanup(); process.exit(130); });
}

// Geometry and state the checks need, read in the page (CSS px = screenshot px at scale 1).
// Missing elements give null boxes / empty text, so an unexpected page fails the checks, not the script.
const GEOMETRY = `(() => {
  const r = (e) => { if (!e) return null; const b = e.getBoundingClientRect(); return { x: b.left, y: b.top, w: b.width, h: b.height }; };
  const px = (e) => (e ? parseFloat(getComputedStyle(e).fontSize) : 0);
  const c = window.h3liveCompare || { players: {} };
  const arms = {};
  [...document.querySelectorAll('.arm')].forEach((tile, i) => {
    const arm = tile.dataset.arm || 'tile' + i;
    // The picture: the arm's <video>, or the canvas the MoQ player paints.
    const video = tile.querySelector('video') || tile.querySelector('moq-watch canvas');
    const verdict = tile.querySelector('.verdict');
    const badge = tile.querySelector('.badge');
    const p = c.players[arm];
    arms[arm] = {
      video: r(video), verdict: r(verdict), verdictText: verdict ? verdict.textContent : '',
      verdictPx: px(verdict), clockPx: px(tile.querySelector('.clock')),
      srcH: video ? video.videoHeight || video.height : 0, badge: badge ? badge.textContent : '',
      screenMs: p && p.latency ? p.latency.screenMs : null,
    };
  });
  const path = document.getElementById('path');
  const cw = document.documentElement.clientWidth;
  const overflowing = [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > cw + 0.5)
    .slice(0, 3).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
  return {
    overflowing,
    now: Date.now(), vw: innerWidth, vh: innerHeight,
    scrollWidth: document.documentElement.scrollWidth, clientWidth: cw,
    chart: r(document.getElementById('chart')), arms, layout: { ...c.layout },
    pathShown: path && !path.hidden && path.getBoundingClientRect().height > 0 ? path.textContent : null,
  };
})()`;

const inside = (b, vw, vh) => !!b && b.x >= -0.5 && b.y >= -0.5 && b.x + b.w <= vw + 0.5 && b.y + b.h <= vh + 0.5 && b.w > 0 && b.h > 0;
const fmtBox = (b) => (!b ? 'missing' : `${Math.round(b.x)},${Math.round(b.y)} ${Math.round(b.w)}x${Math.round(b.h)}`);

async function shoot(page, size, label = '') {
  const where = `${size.w}x${size.h}${label}`;
  await page.setViewport({ width: size.w, height: size.h, deviceScaleFactor: 1 });
  await sleep(1500); // relayout, a few frames at the new size
  const pre = await page.evaluate(GEOMETRY); // the page's own latency just before the capture
  const before = Date.now();
  const png = Buffer.from(await page.screenshot({ captureBeyondViewport: false }));
  const after = Date.now();
  const geo = await page.evaluate(GEOMETRY);
  if (opts.out) writeFileSync(join(opts.out, `compare-${where.replace(/[^\w.]+/g, '-')}.png`), png);
  const img = decodePng(png);
  log(`[${where}] screenshot ${img.width}x${img.height} (${png.length} bytes) in ${after - before} ms; layout ${JSON.stringify(geo.layout)}`);

  check(where, 'screenshot has the viewport size', img.width === size.w && img.height === size.h, `${img.width}x${img.height}`);
  check(where, 'no horizontal scrollbar', geo.scrollWidth <= geo.clientWidth, `scrollWidth ${geo.scrollWidth}, clientWidth ${geo.clientWidth}; beyond the right edge: ${geo.overflowing.join(' ') || 'nothing'}`);
  check(where, 'path profile shown', !!geo.pathShown && geo.pathShown.includes(PROFILE) && geo.pathShown.includes(PATH_DESC), JSON.stringify(geo.pathShown));
  if (size.mustFit) {
    check(where, 'chart inside the viewport', inside(geo.chart, geo.vw, geo.vh), fmtBox(geo.chart));
  }
  check(where, 'every arm has a tile', Object.keys(geo.arms).join(',') === Object.keys(ARMS).join(','), Object.keys(geo.arms).join(','));
  for (const [arm, a] of Object.entries(geo.arms)) {
    const w = `${where} ${arm}`;
    if (size.mustFit) {
      check(w, 'picture (video element, moq: canvas) fully inside the viewport', inside(a.video, geo.vw, geo.vh), fmtBox(a.video));
      check(w, 'verdict line inside the viewport', inside(a.verdict, geo.vw, geo.vh), `${fmtBox(a.verdict)} "${a.verdictText}"`);
    }
    check(w, `text readable (verdict ${a.verdictPx} px, clock ${a.clockPx.toFixed(1)} px >= ${MIN_TEXT_PX})`,
      a.verdictPx >= MIN_TEXT_PX && a.clockPx >= MIN_TEXT_PX);
    check(w, 'verdict on one line', !!a.verdict && a.verdict.h <= a.verdictPx * 1.6, a.verdict ? `${a.verdict.h.toFixed(1)} px high at ${a.verdictPx} px font` : 'missing');
    check(w, 'verdict line shows now, p50 and stalls', /\d+ ms now · p50 \d+ ms · \d+ stall/.test(a.verdictText), `"${a.verdictText}" [${a.badge}]`);
    if (!a.video) {
      check(w, 'arm has a picture (video element, moq: canvas)', false);
      continue;
    }
    const c = pictureClocks(img, a.video, a.srcH || 360, geo.now);
    check(w, 'ENCODER clock decodes from the screenshot', c.encoder.ok, c.encoder.error || '');
    check(w, 'PLAYER clock decodes from the screenshot', c.player.ok, c.player.error || '');
    if (c.encoder.ok && c.player.ok) {
      const lat = c.player.ms - c.encoder.ms;
      check(w, 'PLAYER clock is the time of the screenshot', c.player.ms >= before - 1000 && c.player.ms <= after,
        `player ${c.player.ms - before} ms after the capture request (capture took ${after - before} ms)`);
      const pageMs = [pre.arms[arm] && pre.arms[arm].screenMs, a.screenMs].filter((x) => x != null);
      check(w, `latency in the picture plausible and agrees with the page within ${AGREE_MS} ms`,
        lat > 0 && lat < 3000 && pageMs.length > 0 && lat >= Math.min(...pageMs) - AGREE_MS && lat <= Math.max(...pageMs) + AGREE_MS,
        `player - encoder = ${lat} ms; page on-screen latency ${pageMs.join(' ms before, ')} ms after the capture`);
    }
  }
  return png;
}

async function main() {
  await stack.startOrigin({ moq: 'moq' in ARMS });
  const stream = `shots${process.pid}`;
  await stack.startEncoder(stream, ['--size', '640x360', '--bitrate', '600k', '--fps', '25']);
  browser = await launchBrowser(opts.browser, { ...stack.browserOptions(), log });
  log(`browser: ${await browser.version()}`);
  const { tls, h1, h2, http, moq } = stack.ports;
  const origins = { h3: `https://localhost:${tls}`, h1: `https://localhost:${h1}`, h2: `https://localhost:${h2}`, http: `http://127.0.0.1:${http}` };
  // Open the page with `extra` query parameters and play until every arm has
  // shown frames for opts.play s (the verdict needs 10 s).
  const open = async (extra = {}) => {
    const qs = new URLSearchParams({ stream, arms: Object.keys(ARMS).join(','), h3port: tls, h1port: h1, h2port: h2, profile: PROFILE, path: PATH_DESC, ...extra });
    if (moq) qs.set('moqport', moq);
    qs.set('http', `http://127.0.0.1:${http}`);
    const url = `${origins.h3}/compare.html?${qs}`;
    const page = await browser.newPage();
    seen.set(page, watch(page));
    await page.setViewport({ width: 1280, height: 800, deviceScaleFactor: 1 });
    await prepareH3(opts.browser, page, origins.h3, log);
    await observeProtocols(page);
    log(`opening ${url}`);
    await navigate(page, url, log);
    const deadline = Date.now() + (opts.play + 20) * 1000;
    let firstAll = null;
    while (Date.now() < deadline) {
      await sleep(1000);
      const st = await page.evaluate('window.h3liveCompare && Object.values(window.h3liveCompare.players).every((p) => p.firstFrameMs !== null)').catch(() => false);
      if (st && firstAll === null) { firstAll = Date.now(); log('every arm shows frames'); }
      if (firstAll !== null && Date.now() - firstAll >= opts.play * 1000) break;
    }
    check('page', 'every arm shows frames', firstAll !== null);
    return page;
  };
  const page = await open();
  if (opts.out) mkdirSync(opts.out, { recursive: true });
  for (const size of SIZES) {
    const png = await shoot(page, size);
    if (opts.screenshot && size.w === 1280 && size.h === 800) {
      mkdirSync(dirname(opts.screenshot), { recursive: true });
      const raw = `${opts.screenshot}.raw.png`;
      writeFileSync(raw, png);
      execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', raw, '-vf',
        'split[a][b];[a]palettegen=max_colors=64:stats_mode=full[p];[b][p]paletteuse=dither=none', opts.screenshot]);
      rmSync(raw);
      log(`wrote ${opts.screenshot} (${readFileSync(opts.screenshot).length} bytes)`);
    }
  }
  // Back to the first size (setViewport(null), the reset, never returns in Firefox).
  await page.setViewport({ width: SIZES[0].w, height: SIZES[0].h, deviceScaleFactor: 1 });
  const final = await page.evaluate('JSON.parse(JSON.stringify({ players: window.h3liveCompare.players, verdict: window.h3liveCompare.verdict }))');
  for (const [arm, proto] of Object.entries(ARMS)) {
    const p = final.players[arm];
    const counts = p.transport.counts;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    if (arm === 'moq') {
      // No HTTP media responses: every frame over a MoQ session on WebTransport, never WebSocket.
      check(`page ${arm}`, 'every frame came over a MoQ session on WebTransport', total > 0 && counts[proto] === total && p.moq.websocketSessions === 0,
        `${JSON.stringify(counts)}, session ${p.moq.transport} ${p.moq.version}`);
    } else {
      check(`page ${arm}`, `media segments used ${proto}`, total > 0 && counts[proto] === total, JSON.stringify(counts));
      const resp = await protocolsSeen(page, origins[arm]);
      const n = Object.values(resp.media).reduce((a, b) => a + b, 0);
      check(`page ${arm}`, `every media response of ${origins[arm]} used ${proto} (observed from before the page loaded)`,
        n > 0 && resp.media[proto] === n, `media ${JSON.stringify(resp.media)}, other ${JSON.stringify(resp.other)}`);
    }
    check(`page ${arm}`, 'no player errors', p.errors.length === 0, JSON.stringify(p.errors.slice(0, 3)));
    const v = final.verdict ? final.verdict.arms[arm] : null;
    log(`[${arm}] verdict ${JSON.stringify(v)}; stalls ${p.stalls.count}; frames decoded ${p.frames.decoded}, errors ${p.frames.decodeErrors}`);
  }
  check('page', 'no page exceptions', seen.get(page).exceptions.length === 0, seen.get(page).exceptions.slice(0, 3).join(' | '));
  await page.close();

  // The highlight, for real: one arm played 1 s further behind (its own target
  // latency) must be marked higher beyond the spread, in the page and on screen.
  if (opts.highlight && ARMS.h1 && Object.keys(ARMS).length > 1) {
    const late = await open({ h1latency: '1.5' });
    await shoot(late, SIZES[0], ' h1latency=1.5');
    const st = await late.evaluate(`(() => {
      const v = window.h3liveCompare.verdict;
      const tiles = {};
      for (const t of document.querySelectorAll('.arm')) {
        tiles[t.dataset.arm] = { outline: getComputedStyle(t).outlineColor, badge: t.querySelector('.badge').textContent };
      }
      return { v: JSON.parse(JSON.stringify(v)), tiles };
    })()`);
    const h = st.v.arms.h1;
    log(`highlight: verdict ${JSON.stringify(st.v)}; tiles ${JSON.stringify(st.tiles)}`);
    check('highlight', 'arm 1 s behind is marked higher', h.state === 'higher' && h.deltaMs > 500, `${h.state}, +${h.deltaMs} ms`);
    // The other arms share the target; whether they differ among themselves depends on
    // the machine (a stall under load is a real difference), so that is only reported.
    log(`highlight: other arms ${Object.entries(st.v.arms).filter(([a]) => a !== 'h1').map(([a, x]) => `${a} ${x.state}`).join(', ')}`);
    check('highlight', 'an arm at the page target is marked lowest', !!st.v.lowest && st.v.lowest !== 'h1' && st.v.arms[st.v.lowest].state === 'lowest', String(st.v.lowest));
    check('highlight', 'higher arm drawn with a red outline and "+N ms"',
      st.tiles.h1.outline === 'rgb(255, 102, 102)' && /^\+\d+ ms$/.test(st.tiles.h1.badge), JSON.stringify(st.tiles.h1));
    await late.close();
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  results.push({ where: 'setup', name: 'setup', ok: false, detail: String(e.message || e) });
}
await cleanup();
const failed = results.filter((r) => !r.ok);
console.log(`\n==== compare page screenshot test (${opts.browser}) ====`);
for (const r of failed) console.log(`  FAIL [${r.where}] ${r.name} — ${r.detail}`);
console.log(`compare-shots: ${results.length - failed.length} passed, ${failed.length} failed (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
if (failed.length) code = 1;
process.exit(code);
