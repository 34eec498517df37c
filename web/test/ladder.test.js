// The ABR ladder (scripts/encoder.sh --ladder): one ffmpeg, three video
// renditions scaled from one picture that carries one timecode strip.  Runs
// the real encoder for a few seconds into a temporary directory, then checks
// the MPD (one video adaptation set with 3 representations + audio) and
// decodes the strip of every frame of every rendition with ffmpeg + the
// player's decoder (web/timecode.js): each frame must decode, at each size, to
// the wall-clock time the encoder logged for it, and the same frame number
// must carry the same time in every rendition (the split is after the strip).
//
// Run: cd web && node --test test/ladder.test.js
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeStrip, stripHeight, unwrap } from '../timecode.js';

const here = dirname(fileURLToPath(import.meta.url));
const encoder = join(here, '..', '..', 'scripts', 'encoder.sh');
const SECONDS = 5;
const FPS = 30;
/** The default ladder's video renditions: id, width, height. */
const RUNGS = [[0, 1280, 720], [1, 768, 432], [2, 416, 234]];

function frames(out, rep, w, h) {
  const chunks = readdirSync(out).filter((n) => new RegExp(`^chunk-stream${rep}-\\d+\\.m4s$`).test(n)).sort();
  const mp4 = Buffer.concat([join(out, `init-stream${rep}.m4s`), ...chunks.map((c) => join(out, c))].map((f) => readFileSync(f)));
  const sh = stripHeight(h);
  const raw = execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-i', 'pipe:0',
    '-vf', `crop=iw:${sh}:0:ih-${sh},format=gray`, '-f', 'rawvideo', 'pipe:1',
  ], { input: mp4, maxBuffer: 1 << 30 });
  const res = [];
  for (let o = 0; o + w * sh <= raw.length; o += w * sh) res.push(raw.subarray(o, o + w * sh));
  return { frames: res, sh, segments: chunks.length };
}

test('a ladder rung of another aspect ratio is refused with a clear error', () => {
  // 854x480 is not exactly 16:9: ffmpeg's DASH muxer would need a non-square sample
  // aspect ratio (or fail on "Conflicting stream aspect ratios"); the script says why.
  const r = spawnSync(encoder, ['--ladder-spec', '1280x720:2M:veryfast,854x480:900k:veryfast', '--dry-run'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /854x480: sizes must be even and of the top rung's aspect ratio exactly/);
});

describe('ABR ladder (encoder.sh --ladder)', () => {
  let dir, out, truth, mpd;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'h3live-ladder-'));
    out = join(dir, 'out');
    const log = join(dir, 'tc.log');
    const r = spawnSync(encoder, [
      '--ladder', '--output', join(out, 'manifest.mpd'), '--duration', String(SECONDS),
      '--fps', String(FPS), '--timecode-log', log, '--no-restart',
    ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: (SECONDS + 40) * 1000 });
    assert.equal(r.status, 0, `encoder failed: ${r.stderr}`);
    truth = [...readFileSync(log, 'utf8').matchAll(/^frame:(\d+)\s+pts:(\d+)/gm)].map((m) => Number(m[2]) / 1000);
    mpd = readFileSync(join(out, 'manifest.mpd'), 'utf8');
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  test('one MPD: a video adaptation set with 3 renditions, and audio', () => {
    const sets = mpd.match(/<AdaptationSet[\s\S]*?<\/AdaptationSet>/g);
    assert.equal(sets.length, 2);
    const attr = (tag, name) => (tag.match(new RegExp(`\\s${name}="([^"]*)"`)) || [])[1];
    const reps = (sets[0].match(/<Representation\b[^>]*>/g) || [])
      .map((t) => ({ id: attr(t, 'id'), bw: +attr(t, 'bandwidth'), size: `${attr(t, 'width')}x${attr(t, 'height')}`, sar: attr(t, 'sar') }));
    // Exact sizes with square pixels: the MPD and the browser's videoWidth/Height agree
    // (426x240 with sar 640:639 was shown as 427x240).
    assert.deepEqual(reps.map((r) => `${r.id}:${r.size}:sar=${r.sar}`), RUNGS.map(([id, w, h]) => `${id}:${w}x${h}:sar=1:1`));
    assert.ok(reps[0].bw > reps[1].bw && reps[1].bw > reps[2].bw, JSON.stringify(reps));
    assert.equal(attr(sets[0].match(/<AdaptationSet\b[^>]*>/)[0], 'par'), '16:9');
    assert.match(sets[1], /contentType="audio"/);
  });

  for (const [rep, w, h] of RUNGS) {
    test(`rendition ${rep} (${w}x${h}): every frame decodes to its capture time`, (t) => {
      const f = frames(out, rep, w, h);
      assert.ok(f.frames.length >= FPS * (SECONDS - 2), `only ${f.frames.length} frames`);
      let exact = 0;
      for (let i = 0; i < f.frames.length; i++) {
        const r = decodeStrip(f.frames[i], w, f.sh, 1);
        assert.equal(r.ok, true, `frame ${i}: ${r.error} (contrast ${r.contrast})`);
        const expected = Math.floor(truth[i]);
        const err = unwrap(r.value, expected) - expected;
        assert.ok(Math.abs(err) < 1000 / FPS, `frame ${i}: decoded ${err} ms off the encoder clock`);
        if (err === 0) exact++;
      }
      t.diagnostic(`${w}x${h}: ${f.frames.length} frames, ${exact} exact, ${f.segments} segments`);
    });
  }
});
