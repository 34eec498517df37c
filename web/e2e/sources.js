#!/usr/bin/env node
// Real sources end to end: an h3live origin on free ports, headless Chromium
// (QUIC flags) and two encoders that are not the test pattern.
//   1. A media file (scripts/test-clip.sh: 4 s, motion, a scene cut, its own
//      frame rate and audio) pushed by `scripts/encoder.sh --input FILE`,
//      looped in real time.  The player page (h3) plays it across at least
//      three loop points: the burned-in timecode decodes (at most a few frames
//      undecoded), no stall after the first frame, media time advances with
//      wall time, and the timecode latency stays steady across the loops
//      (a timestamp jump at a loop point would show as a jump here; the bound
//      is a generous sanity bound).
//   2. The Streamline low-latency DASH preview's launcher command line (its
//      segment names, -utc_timing_url, -remove_at_exit, -adaptation_sets,
//      ingest at /ldash/<id>/manifest.mpd) pushing to the origin unchanged but
//      for the host:port and a 640x360 picture (1080p x264 is not real time on
//      the 2-core test machine); the URL the launcher prints,
//      /ldashplay/<id>/manifest.mpd, opens the player page for that stream
//      and it plays; /ldash/<id>/... and /live/<id>/... serve the same
//      manifest; ffmpeg's clean stop ('q') deletes the stream through /ldash
//      (-remove_at_exit), so it is gone from /live too.
//   3. The clock page to film (/clock.html): a screenshot of it decodes, from
//      the strip along its bottom, to the wall clock at the capture, and its
//      text shows the same millisecond clock.
// Prints "sources: N passed, N failed"; exits non-zero on a failure.
// Usage: node web/e2e/sources.js [--bin target/release/h3live] [--keep-logs] [--only file|preview|clock]
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch, open, playerStats as statsOf, waitForStats as waitFor, watch } from './chromium.js';
import { cli } from './cli.js';
import { crop, decodePng } from './png.js';
import { ROOT as root, Stack, checks, httpOk, sleep } from './stack.js';
import { decodeStrip, stripHeight, unwrap } from '../timecode.js';

const t0 = Date.now();
const log = (...a) => console.log(`[sources-e2e +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const { values: o } = cli(import.meta.url, {
  bin: { type: 'string', default: join(root, 'target', 'release', 'h3live') },
  'keep-logs': { type: 'boolean', default: false },
  only: { type: 'string' },
});
const opts = { bin: resolve(o.bin), keepLogs: o['keep-logs'], only: o.only };

const stack = new Stack({ bin: opts.bin, log, keepLogs: opts.keepLogs });
let browser = null;
const { results, check } = checks(log);

const CLIP_S = 4; // scripts/test-clip.sh

/** 1. A looped media file through encoder.sh --input FILE, played over h3. */
async function fileInput() {
  const clip = join(stack.work, 'clip.mp4');
  execFileSync(join(root, 'scripts', 'test-clip.sh'), [clip], { stdio: 'inherit' });
  const stream = `file${process.pid}`;
  await stack.startEncoder(stream, ['--input', clip, '--size', '640x360', '--bitrate', '800k']);
  check('encoder.sh --input FILE takes the file\'s own audio', /audio input/.test(stack.outputOf('encoder')),
    stack.outputOf('encoder').split('\n').find((l) => l.includes('pushing')) || '');
  const page = await browser.newPage();
  const seen = watch(page);
  await open(page, `https://localhost:${stack.ports.tls}/?stream=${stream}`, log);
  const first = await waitFor(page, (s) => s.firstFrameMs != null && s.latency.timecodeMs != null, 20000);
  check('the file plays with the timecode decoded', first.ok,
    first.s ? `first frame ${first.s.firstFrameMs} ms, timecode latency ${first.s.latency.timecodeMs} ms` : 'no stats');
  if (!first.ok) return;
  // Watch for three clip lengths and a half: at least three loop points.
  const start = { wall: Date.now(), media: first.s.currentTime, stats: first.s };
  const lat = [];
  let s = first.s;
  while (Date.now() - start.wall < (3.5 * CLIP_S + 1) * 1000) {
    await sleep(500);
    s = (await statsOf(page)) || s;
    if (s.latency.timecodeMs != null) lat.push(s.latency.timecodeMs);
  }
  const wall = (Date.now() - start.wall) / 1000;
  const media = s.currentTime - start.media;
  check(`media time advances with wall time across ${Math.floor(media / CLIP_S)} loop points`,
    media > 3 * CLIP_S && media > 0.9 * wall, `${media.toFixed(2)} s of media in ${wall.toFixed(2)} s`);
  check('no stall after the first frame', s.stalls.count === 0,
    `stalls ${s.stalls.count} (${s.stalls.totalMs} ms) ${JSON.stringify(s.stalls.events.slice(-3))}`);
  const decoded = s.frames.decoded - start.stats.frames.decoded;
  const errors = s.frames.decodeErrors - start.stats.frames.decodeErrors;
  check('the timecode decodes on (nearly) every frame of the file', decoded > 20 * wall && errors <= Math.max(3, decoded / 50),
    `${decoded} frames decoded, ${errors} not (${s.frames.lastError || 'no error'})`);
  const spread = lat.length ? Math.max(...lat) - Math.min(...lat) : null;
  check('timecode latency steady across the loops (spread < 1 s, sanity bound)', lat.length > 10 && spread < 1000,
    `${lat.length} readings, ${Math.min(...lat)}..${Math.max(...lat)} ms`);
  check('no player errors (file)', s.errors.length === 0 && seen.exceptions.length === 0,
    `${JSON.stringify(s.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}`);
  await page.close();
}

/**
 * The preview's test-pattern launcher command (docs/sources.md, "Migrating from
 * the low-latency DASH preview") as an argument list; `host` stands for its
 * TARGETSERVER:8080, `size` for its 1920x1080.
 */
function previewArgs(host, id, size) {
  const x264enc = 'libx264 -tune zerolatency -profile:v high -preset veryfast -bf 0 -refs 3 -sc_threshold 0'.split(' ');
  return ['-hide_banner', '-re', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=30`, '-pix_fmt', 'yuv420p',
    '-map', '0:v', '-c:v', ...x264enc, '-g', '150', '-keyint_min', '150', '-b:v', '4000k',
    '-vf', "fps=30,drawtext=fontfile=utils/OpenSans-Bold.ttf:box=1:fontcolor=black:boxcolor=white:fontsize=100':x=40:y=400:textfile=utils/text.txt",
    '-method', 'PUT', '-seg_duration', '5', '-streaming', '1', '-http_persistent', '1',
    '-utc_timing_url', 'https://time.akamai.com/?iso', '-index_correction', '1', '-use_timeline', '0',
    '-media_seg_name', 'chunk-stream-$RepresentationID$-$Number%05d$.m4s',
    '-init_seg_name', 'init-stream1-$RepresentationID$.m4s',
    '-window_size', '5', '-extra_window_size', '10', '-remove_at_exit', '1',
    '-adaptation_sets', 'id=0,streams=v id=1,streams=a',
    '-f', 'dash', `http://${host}/ldash/${id}/manifest.mpd`];
}

/** 2. The preview's ffmpeg command pushing to /ldash/1234/, played from /ldashplay/1234/manifest.mpd. */
async function preview() {
  const id = '1234';
  const host = `127.0.0.1:${stack.ports.http}`;
  // The launcher runs in its checkout, next to utils/text.txt and utils/OpenSans-Bold.ttf.
  const dir = join(stack.work, 'preview');
  mkdirSync(join(dir, 'utils'), { recursive: true });
  writeFileSync(join(dir, 'utils', 'text.txt'), 'Encoder time      \n%{localtime:%M}:%{localtime:%S }:%{eif:1M*t-1K*trunc(t*1K):d}\n');
  const font = ['/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf'].find(existsSync);
  copyFileSync(font, join(dir, 'utils', 'OpenSans-Bold.ttf'));
  const args = previewArgs(host, id, '640x360');
  log(`preview encoder: ffmpeg ${args.map((a) => (/[ $'*;]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  const out = [];
  const ff = spawn('ffmpeg', args, { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
  ff.stderr.on('data', (d) => out.push(d));
  const ended = new Promise((res) => ff.on('exit', (code, sig) => res({ code, sig })));
  stack.children.push({ name: 'preview-ffmpeg', p: ff, out, logFile: join(stack.work, 'preview-ffmpeg.log') });
  const live = await httpOk(`${stack.base}/ldash/${id}/manifest.mpd`, 20000);
  check('the preview\'s ffmpeg pushes to /ldash/1234/manifest.mpd', live, live ? '' : Buffer.concat(out).toString().slice(-2000));
  if (!live) return;
  const [a, b] = await Promise.all([`${stack.base}/ldash/${id}/manifest.mpd`, `${stack.base}/live/${id}/manifest.mpd`]
    .map((u) => fetch(u).then((r) => r.text())));
  check('/ldash/1234/ and /live/1234/ both serve the preview\'s manifest (its segment template)', a.includes('chunk-stream-$RepresentationID$') && b.includes('chunk-stream-$RepresentationID$'),
    `${a.length} and ${b.length} bytes`);

  const page = await browser.newPage();
  const seen = watch(page);
  const printed = `http://${host}/ldashplay/${id}/manifest.mpd`; // what the launcher prints, with this origin's port
  await open(page, printed, log);
  const first = await waitFor(page, (s) => s.firstFrameMs != null && s.currentTime > 0, 30000);
  check('the printed /ldashplay/1234/manifest.mpd opens the player for stream 1234',
    page.url().includes(`stream=${id}`) && first.s?.config.stream === id, `${page.url()}, page plays ${first.s?.config.mpd}`);
  check('the preview stream plays (first frame)', first.ok,
    first.s ? `first frame ${first.s.firstFrameMs} ms after navigation` : `no stats: ${JSON.stringify(seen.console.slice(-5))}`);
  if (first.ok) {
    const t1 = { wall: Date.now(), media: first.s.currentTime };
    await sleep(6000);
    const s = await statsOf(page);
    const media = s.currentTime - t1.media, wall = (Date.now() - t1.wall) / 1000;
    check('the preview stream keeps playing', media > 0.5 * wall, `${media.toFixed(2)} s of media in ${wall.toFixed(2)} s, stalls ${s.stalls.count}, latency ${s.latency.dashMs} ms (dash.js)`);
    check('no player errors (preview)', s.errors.length === 0 && seen.exceptions.length === 0,
      `${JSON.stringify(s.errors.slice(0, 3))} ${seen.exceptions.slice(0, 3).join(' | ')}`);
  }
  await page.close();
  // A clean stop: ffmpeg writes its last segment and, with -remove_at_exit 1, DELETEs the stream through /ldash.
  ff.stdin.write('q');
  const end = await Promise.race([ended, sleep(15000).then(() => null)]);
  check('the preview\'s ffmpeg stops cleanly on q', end !== null && end.code === 0, JSON.stringify(end));
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    gone = (await fetch(`${stack.base}/live/${id}/manifest.mpd`).then((r) => r.status)) === 404;
    if (!gone) await sleep(200);
  }
  check('-remove_at_exit deleted the stream through /ldash (404 at /live/1234/manifest.mpd)', gone,
    gone ? '' : `ffmpeg's last words: ${Buffer.concat(out).toString().slice(-1000)}`);
}

/** 3. The clock page: its strip decodes from a screenshot to the capture time. */
async function clockPage() {
  const page = await browser.newPage();
  const seen = watch(page);
  await open(page, `https://localhost:${stack.ports.tls}/clock.html`, log);
  const end = Date.now() + 10000;
  let c = null;
  while (Date.now() < end && !(c && c.frameMs != null)) {
    await sleep(200);
    c = await page.evaluate('window.h3liveClock ? { ...window.h3liveClock } : null').catch(() => null);
  }
  check('the clock page runs (a clock value every animation frame)', c && c.frameMs != null && /^\d\d:\d\d:\d\d\.\d{3}$/.test(c.text),
    JSON.stringify(c));
  const before = Date.now();
  const img = decodePng(Buffer.from(await page.screenshot({ captureBeyondViewport: false })));
  const after = Date.now();
  const sh = Math.round((stripHeight(720) / 720) * img.height);
  const band = crop(img, 0, img.height - sh, img.width, sh);
  const r = decodeStrip(band.data, band.width, band.height, band.channels);
  const ms = r.ok ? unwrap(r.value, before) : null;
  check('a screenshot of the clock page decodes to the wall clock at the capture',
    r.ok && ms >= before - 1000 && ms <= after, r.ok ? `${ms - before} ms after the capture request (took ${after - before} ms)` : r.error);
  check('no page errors (clock page)', seen.exceptions.length === 0, seen.exceptions.slice(0, 3).join(' | '));
  await page.close();
}

async function main() {
  await stack.startOrigin();
  browser = await launch(stack.chromiumFlags(), { log });
  if (!opts.only || opts.only === 'clock') await clockPage();
  if (!opts.only || opts.only === 'file') await fileInput();
  if (!opts.only || opts.only === 'preview') await preview();
}

let failed = false;
try {
  await main();
} catch (e) {
  log(`ERROR: ${e.stack || e}`);
  failed = true;
}
if (browser) await browser.close().catch(() => {});
await stack.stop();
const bad = results.filter((r) => !r.ok).length;
console.log(`sources: ${results.length - bad} passed, ${bad} failed`);
process.exit(failed || bad || !results.length ? 1 : 0);
