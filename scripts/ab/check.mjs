#!/usr/bin/env node
// Checks an A/B output folder (scripts/ab.sh) for the test command:
//   - report.md, summary.json, samples.csv, latency.svg, meta.json, raw/*.json exist and parse;
//   - every profile x arm x browser produced frame samples (at least --min-samples after the
//     warm-up); the browsers are the run's (meta.json), or --browsers;
//   - each arm's media segments all used its protocol (h3 / http/1.1 / h2; requests
//     aborted before a response have none and are not counted);
//   - latencies are plausible: every frame sample and p50/p95/p99 above 0 and below 10 s;
//   - each profile's path self-check (raw/PROFILE.path.json, h3live pathemu check) passed, and
//     its measured RTT and loss per direction are within tolerance of the configured ones;
//   - with the user-space engine, profiles with loss really dropped packets both ways
//     (raw/PROFILE.emu-{down,up}.json).
//   - with --rate-step: per arm, in each rate-step play (profile part 'step') the tc steps
//     ran, the player switched to a lower rendition after the drop and the timecode decoded
//     (>= 10 frames) at that size; the switch back up after the recovery is reported, and
//     asserted (with the timecode decoded at that size too) only with --rate-step-up: dash.js's
//     rules often stay low for 20 s and more after the recovery (docs/results/2026-12-01-abr-rule-choice.md).
// It asserts nothing about which transport is faster: that is what the report is for.
// Usage: node scripts/ab/check.mjs DIR --arms h3,h1 --profiles clean,loss1 [--browsers chromium,firefox]
//          [--min-samples 100] [--rate-step [--rate-step-up]]
// Ends with "ab-check: N passed, N failed"; exits non-zero on any failure.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../../web/e2e/cli.js';

const { values, positionals: [dir] } = cli(import.meta.url, {
  arms: { type: 'string', default: 'h3,h1' },
  profiles: { type: 'string', default: 'clean,loss1' },
  browsers: { type: 'string' },
  'min-samples': { type: 'string', default: '100' },
  'rate-step': { type: 'boolean', default: false },
  'rate-step-up': { type: 'boolean', default: false },
}, { allowPositionals: true });
const arms = values.arms.split(',');
const profiles = values.profiles.split(',');
const minSamples = Number(values['min-samples']);
const MAX_MS = 10000;
const EXPECT = { h3: 'h3', h1: 'http/1.1', h2: 'h2', moq: 'moq' };
// An arm is a transport, optionally prefixed with its format (hls-h3, dash-h1).
const expected = (arm) => EXPECT[arm.replace(/^(dash|hls)-/, '')];

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}${detail ? ` — ${detail}` : ''}`);
}
function parse(file, how) {
  const path = join(dir, file);
  if (!existsSync(path)) { check(`${file} exists`, false); return null; }
  try {
    const v = how(readFileSync(path, 'utf8'));
    check(`${file} exists and parses`, true);
    return v;
  } catch (e) {
    check(`${file} exists and parses`, false, e.message);
    return null;
  }
}

const summary = parse('summary.json', JSON.parse);
const meta = parse('meta.json', JSON.parse);
const browsers = values.browsers ? values.browsers.split(',') : (meta && meta.browsers) || ['chromium'];
const report = parse('report.md', (s) => { if (!s.includes('| profile | transport |')) throw new Error('no result table'); return s; });
const svg = parse('latency.svg', (s) => {
  if (!/^<svg[\s\S]*<\/svg>$/.test(s.trim())) throw new Error('not an <svg> document');
  return s;
});
const csvRows = parse('samples.csv', (s) => {
  const lines = s.trim().split('\n');
  const head = lines[0].split(',');
  if (head.join(',') !== 'profile,arm,round,kind,epoch_ms,t_s,latency_ms,playback_rate,buffer_s,screen_ms,in_stats,browser,arrival_ms') throw new Error(`header ${lines[0]}`);
  return lines.slice(1).map((l, i) => {
    const c = l.split(',');
    if (c.length !== head.length || !Number.isFinite(Number(c[4]))) throw new Error(`line ${i + 2}: ${l}`);
    return { profile: c[0], arm: c[1], kind: c[3], latency: c[6] === '' ? null : Number(c[6]), inStats: c[10] === '1', browser: c[11] };
  });
});
for (const p of profiles) parse(`raw/${p}.json`, JSON.parse);

for (const p of profiles) {
  for (const [a, b] of arms.flatMap((x) => browsers.map((y) => [x, y]))) {
    const id = `[${p}/${browsers.length > 1 || b !== 'chromium' ? `${b}/` : ''}${a}]`;
    const row = summary && summary.rows.find((r) => r.profile === p && r.arm === a && (r.browser || 'chromium') === b);
    if (!row) { check(`${id} has a row in summary.json`, false); continue; }
    check(`${id} produced frame samples`, row.samples >= minSamples, `${row.samples} after warm-up (of ${row.framesTotal}), need ${minSamples}`);
    check(`${id} media segments used ${expected(a)}`, row.protocolOk && row.expect === expected(a), `nextHopProtocol ${JSON.stringify(row.protocolCounts)}`);
    const ps = [row.p50, row.p95, row.p99];
    check(`${id} p50/p95/p99 plausible (0 < x < 10 s)`, ps.every((v) => v != null && v > 0 && v < MAX_MS), `${ps.join(' / ')} ms`);
    if (csvRows) {
      const frames = csvRows.filter((r) => r.profile === p && r.arm === a && r.browser === b && r.kind === 'frame');
      const bad = frames.filter((r) => !(r.latency > 0 && r.latency < MAX_MS));
      check(`${id} every frame sample plausible`, frames.length === row.framesTotal && bad.length === 0,
        `${frames.length} rows in samples.csv (summary: ${row.framesTotal}), ${bad.length} outside (0, 10 s)${bad.length ? `: ${bad.slice(0, 3).map((r) => r.latency).join(', ')}` : ''}`);
    }
    if (report) check(`${id} in report.md`, report.includes(`| ${p} |`));
    if (row.errors) console.log(`note  ${id} player errors: ${row.errorSamples.join(' | ')}`);
  }
  if (values['rate-step']) checkRateStep(p);
  if (svg) check(`[${p}] plotted in latency.svg`, svg.includes(`>${p}</text>`));
  const path = existsSync(join(dir, 'raw', `${p}.path.json`)) ? JSON.parse(readFileSync(join(dir, 'raw', `${p}.path.json`), 'utf8')) : null;
  check(`[${p}] path self-check ran and passed`, path && path.ok === true, path ? `${path.items.filter((i) => !i.ok).map((i) => i.name).join(', ') || 'all items ok'}` : 'raw/PROFILE.path.json missing');
  for (const name of ['rtt_ms', 'tcp_connect_ms', 'loss_down_pct', 'loss_up_pct']) {
    const it = path && path.items.find((i) => i.name === name);
    check(`[${p}] measured ${name} matches the configured path`, it && it.measured != null && Math.abs(it.measured - it.configured) <= it.tolerance,
      it ? `configured ${it.configured.toFixed(2)}, measured ${it.measured == null ? '–' : it.measured.toFixed(2)}, ±${it.tolerance.toFixed(2)}` : 'missing');
  }
  const lossy = path && path.items.some((i) => /^loss_/.test(i.name) && i.configured > 0);
  const emu = ['down', 'up'].map((d) => join(dir, 'raw', `${p}.emu-${d}.json`)).filter(existsSync).map((f) => JSON.parse(readFileSync(f, 'utf8')));
  if (lossy && emu.length) {
    check(`[${p}] the emulator dropped packets both ways`, emu.length === 2 && emu.every((e) => e.dropped_loss > 0), `dropped ${emu.map((e) => `${e.dropped_loss}/${e.packets}`).join(', ')}`);
  }
}
/** The rate step forced a switch down on every arm (and back up: --rate-step-up), timecode decoded at each size. */
function checkRateStep(p) {
  for (const a of arms) {
    const plays = ((summary && summary.abr) || []).filter((r) => r.profile === p && r.arm === a);
    check(`[${p}/${a}] rate-step plays in summary.json`, plays.length > 0);
    for (const r of plays) {
      const id = `[${p}/${browsers.length > 1 ? `${r.browser}/` : ''}${a}${plays.length > 1 ? ` round ${r.round}` : ''}]`;
      const dec = r.decodedByHeight || {};
      check(`${id} the tc rate steps ran`, r.stepsOk);
      check(`${id} switched down after the drop, timecode decoded there`, r.downS != null && dec[r.downToHeight] >= 10,
        `${r.downS == null ? 'no down-switch' : `${r.downS.toFixed(1)} s after the drop, to ${r.downToHeight}p`}; renditions ${r.heights}; decoded ${JSON.stringify(dec)}`);
      const up = `${r.upS == null ? 'no up-switch' : `${r.upS.toFixed(1)} s after the recovery, to ${r.upToHeight}p`}; decoded ${JSON.stringify(dec)}`;
      if (values['rate-step-up']) check(`${id} switched up after the recovery, timecode decoded there`, r.upS != null && dec[r.upToHeight] >= 10, up);
      else console.log(`note  ${id} after the recovery (not asserted): ${up}`);
    }
  }
}
console.log(`ab-check: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
