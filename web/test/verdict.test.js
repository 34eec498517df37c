// Unit tests for web/verdict.js (the compare page's per-arm verdict).
// Run: node --test web/test/verdict.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareArms, quantile, summarize } from '../verdict.js';

// 4 Hz samples for `seconds` ending at `now`, value f(i).
function series(now, seconds, f) {
  const out = [];
  for (let i = 0; i < seconds * 4; i++) out.push([now - (seconds * 4 - 1 - i) * 250, f(i)]);
  return out;
}
// Sawtooth of one frame interval (33 ms at 30 fps) above `base`, as the page's
// on-screen latency looks on a smooth stream (its IQR is about half a frame).
const saw = (base) => (i) => base + ((i * 7) % 33);

test('quantile interpolates between ranks', () => {
  assert.equal(quantile([], 0.5), null);
  assert.equal(quantile([5], 0.25), 5);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.equal(quantile([0, 10, 20, 30, 40], 0.25), 10);
});

test('summarize keeps only the window', () => {
  const now = 1_000_000;
  const old = series(now - 40000, 20, () => 5000); // entirely before the 30 s window
  const cur = series(now, 30, () => 500);
  const s = summarize([...old, ...cur], now);
  assert.equal(s.n, 120);
  assert.equal(s.p50, 500);
  assert.equal(s.p25, 500);
  assert.ok(s.spanMs >= 29000);
  assert.equal(summarize(old, now), null);
});

test('arms within a frame of each other do not differ', () => {
  const now = 1_000_000;
  const v = compareArms({
    h3: summarize(series(now, 30, saw(500)), now),
    h1: summarize(series(now, 30, saw(510)), now),
    h2: summarize(series(now, 30, saw(495)), now),
  });
  assert.equal(v.lowest, 'h2');
  for (const a of ['h3', 'h1', 'h2']) assert.equal(v.arms[a].state, 'same', a);
  assert.equal(v.arms.h1.deltaMs, 15);
});

test('an arm beyond the spread is higher, the lowest is marked', () => {
  const now = 1_000_000;
  const v = compareArms({
    h3: summarize(series(now, 30, saw(500)), now),
    h1: summarize(series(now, 30, saw(760)), now),
    h2: summarize(series(now, 30, saw(508)), now),
  });
  assert.equal(v.lowest, 'h3');
  assert.deepEqual(v.arms.h3, { state: 'lowest', deltaMs: 0 });
  assert.deepEqual(v.arms.h1, { state: 'higher', deltaMs: 260 });
  assert.equal(v.arms.h2.state, 'same');
});

test('a wide spread hides the same gap', () => {
  const now = 1_000_000;
  // h1's p50 is 200 ms higher, but it swings ±400 ms: its middle half overlaps h3's.
  const v = compareArms({
    h3: summarize(series(now, 30, (i) => 500 + ((i * 37) % 800) - 400), now),
    h1: summarize(series(now, 30, (i) => 700 + ((i * 37) % 800) - 400), now),
  });
  assert.equal(v.arms.h1.state, 'same');
  assert.equal(v.arms.h3.state, 'same');
});

test('a stall that left an arm 1 s behind makes it higher', () => {
  const now = 1_000_000;
  const v = compareArms({
    h3: summarize(series(now, 30, saw(500)), now),
    // 5 s at 500 ms, 2 s frozen (latency grows), then 1 s further behind
    h2: summarize(series(now, 30, (i) => (i < 20 ? saw(500)(i) : i < 28 ? 500 + (i - 20) * 250 : saw(1500)(i))), now),
  });
  assert.equal(v.arms.h2.state, 'higher');
});

test('no verdict before enough data or with one arm', () => {
  const now = 1_000_000;
  const v = compareArms({ h3: summarize(series(now, 30, saw(500)), now), h1: summarize(series(now, 5, saw(900)), now) });
  assert.equal(v.lowest, null);
  assert.equal(v.arms.h1.state, 'pending');
  assert.equal(v.arms.h3.state, 'pending');
  assert.equal(compareArms({ h3: summarize(series(now, 30, saw(500)), now) }).lowest, null);
  assert.equal(compareArms({ h3: null, h1: null }).arms.h3.state, 'pending');
});
