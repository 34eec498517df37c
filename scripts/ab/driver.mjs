#!/usr/bin/env node
// A/B driver: a headless browser (web/e2e/browser.js: Chromium, driven over
// CDP, or Firefox, over WebDriver BiDi) plays web/compare.html for each
// transport arm and records everything the page measures into one JSON file.
// scripts/ab.sh runs it once per impairment profile, inside the client
// network namespace (`ip netns exec`), so the browser's control connection
// stays on that namespace's loopback and its traffic takes the emulated path.
//
// Sequential (default): each arm in a fresh browser context (its own
// connections and QUIC sessions), the page served by that arm's own origin
// with only that arm's player.  --concurrent: all arms in one page at once.
// --rounds N repeats that N times; sequential rounds rotate the arm order
// (h3,h1,h2 / h1,h2,h3 / ...) so that no arm always goes first.  With
// --browser chromium,firefox every round plays every arm in each browser,
// the browser order rotating per round like the arms.
//
// Firefox finds the h3 listener through Alt-Svc: before a play that shows an
// h3 arm, the new context first fetches from that origin until a response
// comes over h3 (web/e2e/firefox.js warmH3), so the play's requests are h3
// from the first, as in Chromium with QUIC forced; the QUIC handshake then
// happens before the navigation, not in the play's startup time.
//
// Usage: node scripts/ab/driver.mjs --out FILE --profile NAME --arms h3,h1,h2
//          --duration S --host NAME [--ip ADDR] --cert PEM --stream NAME
//          [--browser chromium|firefox|chromium,firefox]   (default chromium)
//          [--latency S] [--ports h3=4433,h1=4443,h2=4444,moq=4435] [--concurrent] [--rounds N]
//          [--screenshot PREFIX]   (PREFIX-ARMS.png at the end of each play)
//          [--path TEXT]   the path's description, shown by compare.html (with the profile name)
//          [--warmup S --hold S]   latency-floor trial: end the play at the first stall or frozen
//                          picture (gap > 200 ms between frames) after the warm-up (counted from the
//                          first frame), or as soon as the picture has run S seconds past it
//          [--page-query 'k=v&...']   more compare.html query parameters (e.g. drift=8)
//          [--abr RULE[,RULE...]]   dash.js ABR rule on the page (?abr=, web/abr.js); with a
//                          list, each round plays every arm with every rule (play.abr)
//          [--step "AT:LABEL:CMD;..."]   rate step (scripts/ab.sh profile part 'step'): run
//                          CMD (sh -c) AT seconds after each play's navigation; the times
//                          are recorded in the play's steps: [{ label, atS, t, ok }]
// --ip maps --host to ADDR (Chromium --host-resolver-rules, Firefox
// network.dns.forceResolve); without it the host must be localhost.
// --cert is the origin's certificate: Chromium trusts its SPKI hash, Firefox
// gets it in a fresh profile's NSS store.  The arm moq (the origin's Media over
// QUIC endpoint on the moq port, web/moq.js) plays in a page served by the h3
// port; its frames carry their arrival latency (frames[i][2], as every arm's)
// and frames received over a WebSocket session are recorded apart
// (play.excluded), never as samples.
import { writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import { BROWSERS, launchBrowser, open, prepareH3, watch } from '../../web/e2e/browser.js';
import { cli } from '../../web/e2e/cli.js';

const str = (v) => ({ type: 'string', ...(v === undefined ? {} : { default: v }) });
const { values: opts } = cli(import.meta.url, {
  out: str(), profile: str('clean'), arms: str('h3,h1'), duration: str('30'), host: str('localhost'), ip: str(), cert: str(), browser: str('chromium'),
  stream: str('test'), latency: str(), ports: str('h3=4433,h1=4443,h2=4444'), concurrent: { type: 'boolean', default: false },
  screenshot: str(), rounds: str('1'), path: str(), warmup: str('5'), hold: str(), abr: str(), step: str(), 'page-query': str(),
});
if (!opts.out || !opts.cert) { console.error('driver: --out and --cert are required'); process.exit(2); }
const browsers = opts.browser.split(',');
for (const b of browsers) if (!BROWSERS.includes(b)) { console.error(`driver: unknown browser ${b} (${BROWSERS.join(', ')})`); process.exit(2); }
const duration = Number(opts.duration);
const arms = opts.arms.split(',');
const ports = Object.fromEntries(opts.ports.split(',').map((kv) => kv.split('=')));
const EXPECT = { h3: 'h3', h2: 'h2', h1: 'http/1.1', moq: 'moq' };
// An arm may name its format: dash-h3 (= h3), hls-h3 (LL-HLS with hls.js on the compare page).
const tr = (a) => a.replace(/^(dash|hls)-/, '');
for (const a of arms) if (!EXPECT[tr(a)] || !ports[tr(a)]) { console.error(`driver: unknown arm ${a}`); process.exit(2); }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ts = () => new Date().toISOString().slice(11, 23);
const log = (...a) => console.error(`[ab ${ts()}] [${opts.profile}]`, ...a);

function pageUrl(servingArm, shownArms) {
  const p = new URLSearchParams({ stream: opts.stream, arms: shownArms.join(','), host: opts.host });
  for (const a of shownArms) p.set(`${tr(a)}port`, ports[tr(a)]);
  if (opts.latency) p.set('latency', opts.latency);
  if (abrRule) p.set('abr', abrRule);
  p.set('profile', opts.profile);
  if (opts.path) p.set('path', opts.path);
  // --page-query 'k=v&k2=v2': more of the page's query parameters (e.g. drift=, abrstart=)
  for (const [k, v] of new URLSearchParams(opts['page-query'] || '')) p.set(k, v);
  // The MoQ endpoint serves no pages: the moq arm's page comes from the h3 port's origin.
  const serving = tr(servingArm) === 'moq' ? 'h3' : tr(servingArm);
  return `https://${opts.host}:${ports[serving]}/compare.html?${p}`;
}

/** Launched browsers by name (chromium, firefox). */
const launched = {};
/** The ABR rule of the play being set up (one of --abr's list), or null: the page's default. */
let abrRule = null;
const result = {
  version: 1, profile: opts.profile, mode: opts.concurrent ? 'concurrent' : 'sequential',
  durationS: duration, startedAt: new Date().toISOString(),
  chromium: null, // Chromium's version when it played (older reports read this)
  browsers: {}, // name -> version string, e.g. { firefox: 'firefox/153.8.0' }
  plays: [], // one per arm, browser and round: { arm, browser, round, url, expect, navigatedAt, frames, dash, final, pageExceptions }
};

/** Play `shownArms` in one fresh context of browser `name` for `duration` s. */
async function play(name, shownArms, round) {
  const url = pageUrl(shownArms[0], shownArms);
  const context = await launched[name].createBrowserContext();
  const page = await context.newPage();
  const seen = watch(page);
  const plays = {};
  for (const a of shownArms) {
    plays[a] = { arm: a, browser: name, round, abr: abrRule, url, expect: EXPECT[tr(a)], navigatedAt: null, frames: [], dash: [], excluded: [], final: null, pageExceptions: [] };
    result.plays.push(plays[a]);
  }
  const h3Arm = shownArms.find((a) => tr(a) === 'h3');
  if (h3Arm) {
    try {
      await prepareH3(name, page, `https://${opts.host}:${ports.h3}`, log);
    } catch (e) {
      // Played anyway: the page's protocol counts show what the arm really used.
      log(`  ${e.message}`);
    }
  }
  log(`round ${round}: ${name} playing ${shownArms.join('+')}${abrRule ? ` (ABR ${abrRule})` : ''} for ${duration} s: ${url}`);
  const navigatedAt = Date.now();
  const steps = [];
  const timers = (opts.step ? opts.step.split(';') : []).map((item) => {
    const [atS, label, ...cmd] = item.split(':');
    return setTimeout(() => {
      const t = Date.now();
      execFile('sh', ['-c', cmd.join(':')], (err) => {
        steps.push({ label, atS: Number(atS), t, ok: !err });
        log(`  step ${label} at ${atS} s${err ? ` FAILED: ${err.message}` : ''}`);
      });
    }, Number(atS) * 1000);
  });
  await open(page, url, log);
  for (const a of shownArms) {
    plays[a].navigatedAt = navigatedAt;
    if (opts.step) plays[a].steps = steps;
  }
  const end = navigatedAt + duration * 1000;
  let lastNote = 0;
  const take = async () => {
    const got = await page.evaluate('window.h3liveCompare ? window.h3liveCompare.take() : null').catch(() => null);
    if (!got) return;
    for (const a of shownArms) {
      if (!got[a]) continue;
      plays[a].frames.push(...got[a].frames);
      plays[a].dash.push(...got[a].dash);
      plays[a].excluded.push(...(got[a].excluded || []));
    }
  };
  while (Date.now() < end) {
    await sleep(Math.min(1000, Math.max(0, end - Date.now())));
    await take();
    if (opts.hold) {
      const verdict = await holdVerdict(page, shownArms, plays);
      if (verdict) {
        for (const a of shownArms) plays[a].holdEnd = verdict;
        log(`  hold trial ends after ${Math.round((Date.now() - navigatedAt) / 1000)} s: ${verdict}`);
        break;
      }
    }
    if (Date.now() - lastNote >= 10000) {
      lastNote = Date.now();
      const st = await page.evaluate('window.h3liveCompare && JSON.stringify(Object.fromEntries(Object.entries(window.h3liveCompare.players).map(([k, p]) => [k, { tc: p.latency.timecodeAvgMs, ...(p.moq ? { arrival: p.latency.arrivalAvgMs, moq: `${p.moq.transport} ${p.moq.version}` } : {}), proto: p.transport.last, stalls: p.stalls.count, first: p.firstFrameMs }])))').catch(() => null);
      log(`  ${Math.round((Date.now() - navigatedAt) / 1000)} s: ${st || 'page not ready'}`);
    }
  }
  for (const tm of timers) clearTimeout(tm);
  await take();
  if (opts.screenshot) {
    await page.setViewport({ width: 1280, height: shownArms.length > 1 ? 760 : 900 }).catch(() => null);
    const png = await page.screenshot({ captureBeyondViewport: false }).catch(() => null);
    if (png) writeFileSync(`${opts.screenshot}-${shownArms.join('+')}${abrRule ? `-${abrRule}` : ''}${round > 1 ? `-${round}` : ''}.png`, png);
  }
  const players = await page.evaluate('window.h3liveCompare ? JSON.parse(JSON.stringify(window.h3liveCompare.players)) : null').catch(() => null);
  for (const a of shownArms) {
    const r = plays[a];
    r.final = players ? players[a] : null;
    r.pageExceptions = seen.exceptions.slice(0, 20);
    const f = r.final;
    log(`  ${a}: ${r.frames.length} frame samples${r.excluded.length ? ` (+${r.excluded.length} over WebSocket, left out)` : ''}, first frame ${f && f.firstFrameMs} ms, transport ${f && JSON.stringify(f.transport.counts)}, stalls ${f && f.stalls.count}, errors ${f ? f.errors.length : '?'}`);
  }
  await context.close().catch(() => {});
}

/** Latency-floor trial: a reason to end the play now ('stall ...', 'frozen ...' or 'held'), or null. */
async function holdVerdict(page, shownArms, plays) {
  const warmupMs = Number(opts.warmup) * 1000, holdMs = Number(opts.hold) * 1000;
  const st = await page.evaluate('window.h3liveCompare && JSON.stringify(Object.fromEntries(Object.entries(window.h3liveCompare.players).map(([k, p]) => [k, p.stalls && p.stalls.events])))').catch(() => null);
  const events = st ? JSON.parse(st) : {};
  const now = Date.now();
  let held = true;
  for (const a of shownArms) {
    const fr = plays[a].frames;
    if (!fr.length) return null; // not started yet: the duration bounds the wait
    const from = fr[0][0] + warmupMs;
    const stall = (events[a] || []).find(([t]) => t >= from);
    if (stall) return `stall at ${((stall[0] - fr[0][0]) / 1000).toFixed(1)} s after the first frame`;
    for (let i = 1; i < fr.length; i++) {
      if (fr[i][0] >= from && fr[i][0] - fr[i - 1][0] > 200) return `frozen ${fr[i][0] - fr[i - 1][0]} ms at ${((fr[i][0] - fr[0][0]) / 1000).toFixed(1)} s`;
    }
    if (now - fr[fr.length - 1][0] > 1500 && now > from) return `frozen: no frame for ${now - fr[fr.length - 1][0]} ms`;
    if (now < from + holdMs) held = false;
  }
  return held ? 'held' : null;
}

const rotate = (xs, round) => { const k = (round - 1) % xs.length; return [...xs.slice(k), ...xs.slice(0, k)]; };

async function main() {
  for (const name of browsers) {
    launched[name] = await launchBrowser(name, {
      cert: resolvePath(opts.cert), h3: `${opts.host}:${ports.h3}`, resolve: opts.ip ? { host: opts.host, ip: opts.ip } : null, log: (m) => log(m),
    });
    result.browsers[name] = await launched[name].version();
    if (name === 'chromium') result.chromium = result.browsers[name];
    log(`${name}: ${result.browsers[name]}`);
  }
  const rounds = Math.max(1, Number(opts.rounds) || 1);
  const rules = opts.abr ? opts.abr.split(',') : [null];
  for (let round = 1; round <= rounds; round++) {
    // Browsers and rules rotate like the arms, so that none always plays first in a round.
    for (const name of rotate(browsers, round)) {
      for (abrRule of rotate(rules, round)) {
        if (opts.concurrent) await play(name, arms, round);
        else for (const a of rotate(arms, round)) await play(name, [a], round);
      }
    }
  }
}

let code = 0;
let finished = false;
async function finish() {
  if (finished) return;
  finished = true;
  result.endedAt = new Date().toISOString();
  writeFileSync(opts.out, JSON.stringify(result));
  for (const b of Object.values(launched)) await b.close().catch(() => {});
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { log(`${sig}: closing the browser`); result.interrupted = true; await finish(); process.exit(130); });
}
try {
  await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  result.error = String(e.message || e);
  code = 1;
}
await finish();
process.exit(code);
