#!/usr/bin/env node
// Latency-floor trials (scripts/ab.sh --floor): did a play hold its target
// latency?  A trial holds when, counted from the first decoded frame plus the
// warm-up, the picture ran `hold` seconds with no 'waiting' stall and no gap of
// more than 200 ms between decoded frames.
//
// CLI (ab.sh): node scripts/ab/floor.mjs FILE --warmup S --hold S
//   prints the verdict; exit 0 if the trial held, 1 if not.
// Module (report.mjs): judge(raw, warmupS, holdS) and floorTable(dir, meta).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../../web/e2e/cli.js';

export const FROZEN_GAP_MS = 200;

/** Decoded frames per second over the judged window [from, until] (the play
 *  rate: 30 on an idle machine; lower means a starved renderer, which also
 *  shows up as frozen-picture gaps, so every verdict carries it). */
function frameRate(fr, from, until) {
  const n = fr.filter(([t]) => t >= from && t <= until);
  if (n.length < 2) return null;
  return Number(((n.length - 1) / ((n[n.length - 1][0] - n[0][0]) / 1000)).toFixed(1));
}

/** { held, why, latencyP50, fps } for one driver output of a single-arm trial. */
export function judge(raw, warmupS, holdS) {
  const play = raw.plays && raw.plays[0];
  if (!play) return { held: false, why: 'no play recorded' };
  const fr = play.frames || [];
  if (!fr.length) return { held: false, why: 'no frame shown' };
  const from = fr[0][0] + warmupS * 1000, until = from + holdS * 1000;
  const j = judgeHold(play, fr, from, until, holdS);
  const fps = frameRate(fr, from, until);
  return { ...j, fps, why: fps != null ? `${j.why}; ${fps} fps` : j.why };
}

/** The verdict for frames `fr` over the judged window [from, until]. */
function judgeHold(play, fr, from, until, holdS) {
  const events = (play.final && play.final.stalls && play.final.stalls.events) || [];
  const stall = events.find(([t]) => t >= from && t <= until);
  if (stall) return { held: false, why: `stall at ${((stall[0] - fr[0][0]) / 1000).toFixed(1)} s` };
  for (let i = 1; i < fr.length; i++) {
    if (fr[i][0] < from || fr[i - 1][0] > until) continue;
    const gap = fr[i][0] - fr[i - 1][0];
    if (gap > FROZEN_GAP_MS) return { held: false, why: `frozen ${gap} ms at ${((fr[i][0] - fr[0][0]) / 1000).toFixed(1)} s` };
  }
  const last = fr[fr.length - 1][0];
  if (last < from) return { held: false, why: `picture frozen from ${((last - fr[0][0]) / 1000).toFixed(1)} s, before the warm-up ended` };
  // The driver ends a holding trial as soon as the picture has run `hold` s, so the last
  // recorded frame can fall a frame time short of `until`: that is not a frozen picture.
  if (last < until - FROZEN_GAP_MS) return { held: false, why: `picture ran only ${((last - from) / 1000).toFixed(0)} of ${holdS} s after the warm-up` };
  const lat = fr.filter(([t]) => t >= from && t <= until).map(([, l]) => l).sort((a, b) => a - b);
  const latencyP50 = lat.length ? lat[Math.floor(lat.length / 2)] : null;
  return { held: true, why: `${holdS} s without stall or frozen picture, latency p50 ${latencyP50} ms`, latencyP50 };
}

/**
 * Floor per profile, browser and arm from DIR/raw/PROFILE.floor.BROWSER.ARM.LATENCY.json
 * (outputs from before the browser choice: PROFILE.floor.ARM.LATENCY.json, Chromium).
 */
export function floorTable(dir, meta) {
  const rows = [];
  if (!meta.floor) return rows;
  const files = existsSync(join(dir, 'raw')) ? readdirSync(join(dir, 'raw')) : [];
  const browsers = meta.browsers || [null];
  for (const profile of Object.keys(meta.profiles)) {
    for (const arm of meta.arms.split(',')) {
      for (const browser of browsers) {
        const trials = [];
        for (const l of meta.floor.latencies) {
          const f = `${profile}.floor.${browser ? `${browser}.` : ''}${arm}.${l}.json`;
          if (!files.includes(f)) continue;
          const j = judge(JSON.parse(readFileSync(join(dir, 'raw', f), 'utf8')), meta.warmupS, meta.floor.holdS);
          trials.push({ latencyS: l, ...j });
        }
        if (!trials.length) continue;
        const ok = trials.find((t) => t.held);
        rows.push({ profile, browser: browser || 'chromium', arm, floorS: ok ? ok.latencyS : null, latencyP50: ok ? ok.latencyP50 : null, trials });
      }
    }
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals: [file] } = cli(import.meta.url, {
    warmup: { type: 'string', default: '5' }, hold: { type: 'string', default: '60' },
  }, { allowPositionals: true });
  if (!file || !existsSync(file)) {
    console.log(`no trial output (${file})`);
    process.exit(1);
  }
  const j = judge(JSON.parse(readFileSync(file, 'utf8')), Number(values.warmup), Number(values.hold));
  console.log(j.why);
  process.exit(j.held ? 0 : 1);
}
