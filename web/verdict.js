// The compare page's verdict: per arm, the latency now and its p50 and
// interquartile range over the last 30 s; arms whose latency differs from the
// lowest arm's by more than their recent spread are flagged.
//
// Rule (computed from the samples, no fixed threshold): an arm is "higher"
// than the arm with the lowest p50 when their middle halves do not overlap,
// i.e. its 25th percentile is above the lowest arm's 75th percentile over the
// same window.  The samples are the page's 4 Hz on-screen latency (now minus
// the encoder time of the frame on screen), so a frozen picture counts as the
// latency it really shows.  That latency is a sawtooth of one frame interval
// (it grows until the next frame is shown), which puts a floor of about half a
// frame interval under every IQR: arms closer than that never differ.
//
// Pure functions, no DOM: unit-tested by web/test/verdict.test.js.

/** Window of the verdict (ms). */
export const WINDOW_MS = 30000;
/** Minimum time covered by an arm's samples before it takes part in the verdict (ms). */
export const MIN_SPAN_MS = 10000;

/** Quantile q (0..1) of an ascending array, linear interpolation between ranks. */
export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Summary of samples [[epochMs, latencyMs]] (ascending time) within the last
 * `windowMs` before `now`: { n, spanMs, p25, p50, p75 } or null when empty.
 */
export function summarize(samples, now, windowMs = WINDOW_MS) {
  const inWin = samples.filter(([t, v]) => t >= now - windowMs && t <= now && Number.isFinite(v));
  if (!inWin.length) return null;
  const vals = inWin.map(([, v]) => v).sort((a, b) => a - b);
  return {
    n: vals.length,
    spanMs: inWin[inWin.length - 1][0] - inWin[0][0],
    p25: quantile(vals, 0.25),
    p50: quantile(vals, 0.5),
    p75: quantile(vals, 0.75),
  };
}

/**
 * Compare arms' summaries ({ ARM: summary | null }).  Returns
 * { lowest: ARM | null, arms: { ARM: { state, deltaMs } } } with state
 *   'pending' — fewer than minSpanMs of samples (no verdict yet),
 *   'lowest'  — the lowest p50, and at least one other arm is higher beyond the spread,
 *   'higher'  — p25 above the lowest arm's p75: slower beyond the spread,
 *   'same'    — within the spread of the lowest arm;
 * deltaMs = p50 minus the lowest arm's p50 (null when pending).
 */
export function compareArms(summaries, minSpanMs = MIN_SPAN_MS) {
  const arms = {};
  const ready = Object.entries(summaries).filter(([, s]) => s && s.spanMs >= minSpanMs);
  for (const arm of Object.keys(summaries)) arms[arm] = { state: 'pending', deltaMs: null };
  if (ready.length < 2) return { lowest: null, arms };
  const [lowest, best] = ready.reduce((a, b) => (b[1].p50 < a[1].p50 ? b : a));
  let anyHigher = false;
  for (const [arm, s] of ready) {
    const higher = arm !== lowest && s.p25 > best.p75;
    anyHigher ||= higher;
    arms[arm] = { state: higher ? 'higher' : 'same', deltaMs: Math.round(s.p50 - best.p50) };
  }
  if (anyHigher) arms[lowest].state = 'lowest';
  return { lowest, arms };
}
