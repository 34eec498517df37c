// Unit tests for web/timecode.js.
//
// The main tests run the real encoder (scripts/encoder.sh, writing DASH to a
// temporary directory), decode every video frame of its output with ffmpeg
// into raw gray strips, and check the decoder against the wall-clock time the
// encoder logged for each frame (--timecode-log).  They also compare with the
// `prft` (producer reference time) boxes ffmpeg wrote, and print the numbers.
//
// Run: cd web && node --test test/
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CELLS, WRAP, checksum, decodeStrip, encodeBits, stripHeight, unwrap,
} from '../timecode.js';

const here = dirname(fileURLToPath(import.meta.url));
const encoder = join(here, '..', '..', 'scripts', 'encoder.sh');

// ---------------------------------------------------------------- synthetic
function synthStrip(v, width, height, { noise = 0, lo = 16, hi = 235 } = {}) {
  const bits = encodeBits(v);
  const pix = new Uint8Array(width * height);
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff - 0.5) * 2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = Math.min(CELLS - 1, Math.floor((x * CELLS) / width));
      const b = y < height / 2 ? bits[cell] : 1 - bits[cell];
      const val = (b ? hi : lo) + noise * rnd();
      pix[y * width + x] = Math.max(0, Math.min(255, Math.round(val)));
    }
  }
  return pix;
}

describe('timecode (synthetic)', () => {
  test('round-trips values across the 32-bit range', () => {
    for (const v of [0, 1, 0x7fffffff, 0x80000000, WRAP - 1, 1795479735743 % WRAP]) {
      const r = decodeStrip(synthStrip(v, 1280, 48), 1280, 48);
      assert.equal(r.ok, true, r.error);
      assert.equal(r.value, v);
    }
  });
  test('survives noise and reduced contrast, at small sizes', () => {
    const r = decodeStrip(synthStrip(123456789, 320, 16, { noise: 40, lo: 60, hi: 190 }), 320, 16);
    assert.equal(r.ok, true, r.error);
    assert.equal(r.value, 123456789);
  });
  test('rejects pictures without a strip and corrupted bits', () => {
    const flat = new Uint8Array(1280 * 48).fill(128);
    assert.equal(decodeStrip(flat, 1280, 48).ok, false);
    const pix = synthStrip(987654321, 1280, 48);
    // flip data bit 20 (cell 22) in both rows: checksum must catch it
    const cw = 1280 / CELLS;
    for (let y = 0; y < 48; y++) {
      for (let x = Math.ceil(22 * cw); x < Math.floor(23 * cw); x++) pix[y * 1280 + x] = 255 - pix[y * 1280 + x] + 0;
    }
    const r = decodeStrip(pix, 1280, 48);
    assert.equal(r.ok, false);
  });
  test('checksum and unwrap', () => {
    assert.equal(checksum(0x12345678), (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8) % 16);
    const now = 1795479735743;
    assert.equal(unwrap(now % WRAP, now), now);
    assert.equal(unwrap((now - 1500) % WRAP, now), now - 1500);
    assert.equal(unwrap((now + 1500) % WRAP, now), now + 1500);
    // across a wrap boundary
    const w = Math.ceil(now / WRAP) * WRAP; // a multiple of 2^32 after now
    assert.equal(unwrap((w - 10) % WRAP, w + 20), w - 10);
    assert.equal(unwrap((w + 10) % WRAP, w - 20), w + 10);
  });
});

// ------------------------------------------------------- real encoder output
function boxes(buf, start = 0, end = buf.length) {
  const out = [];
  let o = start;
  while (o + 8 <= end) {
    let size = buf.readUInt32BE(o);
    const type = buf.toString('latin1', o + 4, o + 8);
    let hdr = 8;
    if (size === 1) { size = Number(buf.readBigUInt64BE(o + 8)); hdr = 16; }
    if (size === 0) size = end - o;
    if (size < hdr || o + size > end) break;
    out.push({ type, start: o, hdr, end: o + size });
    o += size;
  }
  return out;
}

/** prft boxes of a video track: [{ntpMs, mediaTime}] in file order. */
function prfts(files) {
  const res = [];
  for (const f of files) {
    const buf = readFileSync(f);
    for (const b of boxes(buf)) {
      if (b.type !== 'prft') continue;
      const p = b.start + b.hdr;
      const version = buf[p];
      const secs = buf.readUInt32BE(p + 8);
      const frac = buf.readUInt32BE(p + 12);
      const mediaTime = version === 0 ? buf.readUInt32BE(p + 16) : Number(buf.readBigUInt64BE(p + 16));
      res.push({ ntpMs: (secs - 2208988800) * 1000 + (frac / 2 ** 32) * 1000, mediaTime });
    }
  }
  return res;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

function runEncoder(size, bitrate, fps, seconds) {
  const dir = mkdtempSync(join(tmpdir(), 'h3live-tc-'));
  const log = join(dir, 'tc.log');
  const r = spawnSync(encoder, [
    '--output', join(dir, 'out', 'manifest.mpd'), '--duration', String(seconds),
    '--size', size, '--bitrate', bitrate, '--fps', String(fps), '--timecode-log', log, '--no-restart',
  ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: (seconds + 30) * 1000 });
  assert.equal(r.status, 0, `encoder failed: ${r.stderr}`);
  const out = join(dir, 'out');
  const chunks = readdirSync(out).filter((n) => /^chunk-stream0-\d+\.m4s$/.test(n)).sort().map((n) => join(out, n));
  const mp4 = Buffer.concat([readFileSync(join(out, 'init-stream0.m4s')), ...chunks.map((c) => readFileSync(c))]);
  const [w, h] = size.split('x').map(Number);
  const sh = stripHeight(h);
  const raw = execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-i', 'pipe:0',
    '-vf', `crop=iw:${sh}:0:ih-${sh},format=gray`, '-f', 'rawvideo', 'pipe:1',
  ], { input: mp4, maxBuffer: 1 << 30 });
  const frameBytes = w * sh;
  const frames = [];
  for (let o = 0; o + frameBytes <= raw.length; o += frameBytes) frames.push(raw.subarray(o, o + frameBytes));
  // ground truth: per-frame wall clock (µs) logged by the encoder's filter graph
  const truth = [...readFileSync(log, 'utf8').matchAll(/^frame:(\d+)\s+pts:(\d+)/gm)]
    .map((m) => Number(m[2]) / 1000);
  return { dir, w, sh, frames, truth, prft: prfts(chunks) };
}

for (const cfg of [
  { size: '1280x720', bitrate: '2M', fps: 30 },
  { size: '640x360', bitrate: '500k', fps: 25 },
]) {
  describe(`timecode on real encoder output ${cfg.size} ${cfg.bitrate} ${cfg.fps}fps`, () => {
    let run;
    before(() => { run = runEncoder(cfg.size, cfg.bitrate, cfg.fps, 5); });
    after(() => { if (run) rmSync(run.dir, { recursive: true, force: true }); });

    test('every frame decodes to its capture time within one frame', (t) => {
      const frameMs = 1000 / cfg.fps;
      assert.ok(run.frames.length >= cfg.fps * 3, `only ${run.frames.length} frames`);
      let exact = 0;
      const errs = [];
      for (let i = 0; i < run.frames.length; i++) {
        const r = decodeStrip(run.frames[i], run.w, run.sh, 1);
        assert.equal(r.ok, true, `frame ${i}: ${r.error} (contrast ${r.contrast})`);
        const expected = Math.floor(run.truth[i]);
        const got = unwrap(r.value, expected);
        const err = got - expected;
        errs.push(err);
        if (err === 0) exact++;
        assert.ok(Math.abs(err) < frameMs, `frame ${i}: decoded ${got}, encoder clock ${expected}`);
      }
      t.diagnostic(`${cfg.size}: ${run.frames.length} frames, ${exact} decoded exactly, max |error| ${Math.max(...errs.map(Math.abs))} ms`);
    });

    test('timecode vs prft (muxer wall clock) of the same frame', (t) => {
      // every_frame: one fragment (one prft) per video frame, in order.
      assert.ok(run.prft.length >= run.frames.length - 1, `${run.prft.length} prft for ${run.frames.length} frames`);
      const d = [];
      for (let i = 0; i < Math.min(run.prft.length, run.frames.length); i++) {
        const r = decodeStrip(run.frames[i], run.w, run.sh, 1);
        d.push(run.prft[i].ntpMs - unwrap(r.value, run.prft[i].ntpMs));
      }
      const med = quantile(d, 0.5), p95 = quantile(d, 0.95), min = Math.min(...d), max = Math.max(...d);
      t.diagnostic(`${cfg.size}: prft - timecode: median ${med.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, min ${min.toFixed(1)}, max ${max.toFixed(1)} (n=${d.length})`);
      // The prft is taken when the muxer writes the fragment, after encoding:
      // never before capture, and within a few frames of it.
      assert.ok(min >= -1, `prft before capture by ${-min} ms`);
      assert.ok(med < 250, `median encode delay ${med} ms`);
    });
  });
}
