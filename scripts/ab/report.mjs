#!/usr/bin/env node
// A/B report: reads DIR/meta.json and DIR/raw/PROFILE.json (written by
// scripts/ab.sh and scripts/ab/driver.mjs) and writes into DIR:
//   report.md     the transport x profile table, setup, skipped profiles
//   summary.json  the same table as data (+ meta)
//   samples.csv   every sample: one row per decoded frame (kind=frame) and per
//                 dash.js reading (kind=dash, 4 per second)
//   latency.svg   latency over time, one panel per profile, one line per transport and play
// and prints the table.  Usage: node scripts/ab/report.mjs DIR
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir || !existsSync(join(dir, 'meta.json'))) {
  console.error('usage: report.mjs DIR (with meta.json and raw/*.json)');
  process.exit(2);
}
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
const warmupMs = meta.warmupS * 1000;
const LABEL = { h3: 'h3', h1: 'h1 (TLS)', h2: 'h2' };
const COLOR = { h3: '#1a9850', h2: '#e08214', h1: '#2166ac' };

const FROZEN_GAP_MS = 200; // > 6 frame times at 30 fps
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : null);
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

const rows = [];
const series = {}; // profile -> arm -> [[tS, latencyMs]] (250 ms bins)
const stallMarks = {}; // profile -> arm -> [tS]
const csv = ['profile,arm,round,kind,epoch_ms,t_s,latency_ms,playback_rate,buffer_s,screen_ms,in_stats'];
let chromium = null;

for (const profile of Object.keys(meta.profiles)) {
  const file = join(dir, 'raw', `${profile}.json`);
  if (!existsSync(file)) { console.error(`report: ${file} missing`); continue; }
  const raw = JSON.parse(readFileSync(file, 'utf8'));
  chromium = chromium || raw.chromium;
  series[profile] = {};
  stallMarks[profile] = {};
  // Plays grouped by arm (older driver output: one play per arm in raw.arms).
  const plays = raw.plays || Object.values(raw.arms).map((r) => ({ ...r, arm: Object.keys(raw.arms).find((k) => raw.arms[k] === r), round: 1 }));
  const armOrder = [...new Set([...meta.arms.split(','), ...plays.map((x) => x.arm)])].filter((a) => plays.some((x) => x.arm === a));
  for (const arm of armOrder) {
    const lat = [];
    const dashL = [];
    const rates = [];
    const startups = [];
    const counts = {};
    let framesTotal = 0, frozenMs = 0, stalls = 0, stalledMs = 0, bytes = 0, decodeErrors = 0, errors = 0;
    const errorSamples = [];
    series[profile][arm] = [];
    stallMarks[profile][arm] = [];
    let expect = null;
    for (const r of plays.filter((x) => x.arm === arm)) {
      expect = r.expect;
      const f = r.final || {};
      const frames = r.frames || [];
      framesTotal += frames.length;
      const t0 = frames.length ? frames[0][0] : r.navigatedAt;
      const statsFrom = t0 + warmupMs;
      for (const [t, l] of frames) {
        const inStats = t >= statsFrom;
        if (inStats) lat.push(l);
        csv.push(`${profile},${arm},${r.round},frame,${t},${((t - t0) / 1000).toFixed(3)},${l},,,,${inStats ? 1 : 0}`);
      }
      // Frozen time: gaps of more than FROZEN_GAP_MS between decoded frames, and from
      // the last one to the end of the play (a stall that never ended).
      const endAt = r.navigatedAt + raw.durationS * 1000;
      for (let i = 1; i <= frames.length; i++) {
        const gap = (i < frames.length ? frames[i][0] : endAt) - frames[i - 1][0];
        if (gap > FROZEN_GAP_MS) frozenMs += gap;
      }
      if (!frames.length) frozenMs += raw.durationS * 1000;
      for (const [t, d, rate, buf, screen] of r.dash || []) {
        const inStats = t >= statsFrom;
        if (inStats) { if (d != null) dashL.push(d); rates.push(rate); }
        csv.push(`${profile},${arm},${r.round},dash,${t},${((t - t0) / 1000).toFixed(3)},${d ?? ''},${rate},${buf ?? ''},${screen ?? ''},${inStats ? 1 : 0}`);
      }
      // 250 ms bins for the plot, one line per play
      const bins = new Map();
      for (const [t, l] of frames) {
        const k = Math.floor((t - t0) / 250);
        const b = bins.get(k) || [0, 0];
        b[0] += l; b[1]++;
        bins.set(k, b);
      }
      series[profile][arm].push([...bins.entries()].sort((a, b) => a[0] - b[0]).map(([k, [sum, n]]) => [k / 4, sum / n]));
      stallMarks[profile][arm].push(...((f.stalls && f.stalls.events) || []).map(([t]) => (t - t0) / 1000));
      for (const [k, v] of Object.entries((f.transport && f.transport.counts) || {})) counts[k] = (counts[k] || 0) + v;
      if (f.stalls) { stalls += f.stalls.count; stalledMs += f.stalls.totalMs; }
      if (f.firstFrameMs != null) startups.push(f.firstFrameMs);
      bytes += f.bytes || 0;
      decodeErrors += f.frames ? f.frames.decodeErrors : 0;
      errors += (f.errors || []).length + (r.pageExceptions || []).length;
      errorSamples.push(...(f.errors || []).map((e) => e.message), ...(r.pageExceptions || []));
    }
    lat.sort((a, b) => a - b);
    dashL.sort((a, b) => a - b);
    startups.sort((a, b) => a - b);
    // 'none': aborted before a response (no protocol to judge)
    const known = Object.entries(counts).filter(([k]) => k !== 'none');
    const total = known.reduce((a, [, n]) => a + n, 0);
    const protocol = Object.keys(counts).length === 1 ? Object.keys(counts)[0]
      : Object.entries(counts).map(([k, v]) => `${k}:${v}`).join(' ') || 'none';
    const nPlays = plays.filter((x) => x.arm === arm).length;
    rows.push({
      profile, arm, plays: nPlays, expect, protocol, protocolCounts: counts, protocolOk: total > 0 && counts[expect] === total,
      samples: lat.length, framesTotal,
      p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99), max: lat.length ? lat[lat.length - 1] : null,
      dashP50: pct(dashL, 50),
      stalls, stalledS: stalledMs / 1000, frozenS: frozenMs / 1000,
      startupMs: pct(startups, 50), startupsMs: startups,
      rateMean: rates.length ? mean(rates) : null, rateMin: rates.length ? Math.min(...rates) : null, rateMax: rates.length ? Math.max(...rates) : null,
      bytes, decodeErrors, errors, errorSamples: errorSamples.slice(0, 3),
    });
  }
}

// ------------------------------------------------------------------ table
const fmt = (v, d = 0) => (v == null ? '–' : Number(v).toFixed(d));
const head = ['profile', 'transport', 'protocol used', 'plays', 'samples', 'p50 ms', 'p95 ms', 'p99 ms', 'dash.js p50 ms',
  'stalls', 'stalled s', 'frozen s', 'startup ms', 'rate (mean, min–max)', 'MB', 'errors'];
const table = rows.map((r) => [r.profile, LABEL[r.arm] || r.arm, r.protocolOk ? r.protocol : `${r.protocol} (expected ${r.expect}!)`,
  String(r.plays), String(r.samples), fmt(r.p50), fmt(r.p95), fmt(r.p99), fmt(r.dashP50), fmt(r.stalls), fmt(r.stalledS, 1), fmt(r.frozenS, 1), fmt(r.startupMs),
  r.rateMean == null ? '–' : `${r.rateMean.toFixed(2)} (${r.rateMin.toFixed(2)}–${r.rateMax.toFixed(2)})`,
  r.bytes == null ? '–' : (r.bytes / 1e6).toFixed(1), String(r.errors)]);
const md = (cells) => `| ${cells.join(' | ')} |`;
const mdTable = [md(head), md(head.map(() => '---')), ...table.map(md)].join('\n');
const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const txtTable = [head, ...table].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n');

// What the impairment really did (nftables / tc counters saved by ab.sh).
function netNote(profile) {
  const file = join(dir, 'raw', `${profile}.net.txt`);
  if (!existsSync(file)) return '';
  const parts = readFileSync(file, 'utf8').split(/^== /m).filter(Boolean);
  const notes = [];
  for (const part of parts) {
    const dirName = part.startsWith('upstream') ? 'upstream' : 'downstream';
    const all = part.match(/^\s*counter packets (\d+)/m);
    const drop = part.match(/counter packets (\d+) bytes \d+ drop/);
    if (all && drop) notes.push(`${dirName} ${drop[1]}/${all[1]} packets dropped (${((100 * drop[1]) / Math.max(1, all[1])).toFixed(2)} %)`);
    const q = part.match(/qdisc (tbf|netem)[\s\S]*?Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/);
    if (q) notes.push(`${dirName} ${q[1]}: ${q[3]} packets sent, ${q[4]} dropped, ${q[5]} overlimits`);
  }
  return notes.length ? ` — measured: ${notes.join('; ')}` : '';
}

const skipped = meta.skipped || [];
const report = `# h3live transport A/B report

- date: ${meta.date}; machine: ${meta.machine}; load average at start: ${meta.load}
- h3live ${meta.commit}; ${meta.ffmpeg}; ${chromium || 'Chromium'} (headless)
- setup: ${meta.setup}; arms played ${meta.mode === 'concurrent' ? 'all at once in one page' : 'one after another, each in a fresh browser context'}
- stream: ${meta.encoder}; player target latency ${meta.targetLatencyS} s; ${meta.durationS} s per play, ${meta.rounds || 1} play(s) per arm and profile; statistics leave out the first ${meta.warmupS} s after the first frame

## Profiles
${Object.entries(meta.profiles).map(([p, d]) => `- \`${p}\`: ${d}${netNote(p)}`).join('\n')}
${skipped.length ? `\nSkipped:\n${skipped.map((s) => `- \`${s.profile}\`: ${s.reason}`).join('\n')}\n` : ''}
## Results

${mdTable}

Columns: latency = player wall clock when a frame is shown minus the encoder wall clock
decoded from that frame's timecode strip (one sample per decoded frame, after the warm-up);
p50/p95/p99 are percentiles of those samples. dash.js p50: median of
getCurrentLiveLatency(). plays: how many times the arm was played (--rounds); samples,
stalls and times add up over the plays. stalls / stalled s: 'waiting' events after the
first frame and their total duration (whole play, warm-up included). frozen s: time without a new decoded frame, counting
every gap over 200 ms between frames and a picture still frozen at the end (catches stalls
the video element does not report as 'waiting'). startup: navigation start to the first frame shown (median over the plays).
rate: video playbackRate (dash.js catch-up). MB: bytes of finished requests to that arm.
protocol used: nextHopProtocol of the media segment requests. errors: dash.js/video errors
and page exceptions.
${rows.some((r) => r.errors) ? `\nFirst errors:\n${rows.filter((r) => r.errors).map((r) => `- ${r.profile}/${r.arm}: ${r.errorSamples.join(' | ')}`).join('\n')}\n` : ''}
Files: samples.csv (every sample), summary.json, latency.svg, raw/ (driver output, nftables/tc counters), ab.log.
`;

// ------------------------------------------------------------------- plot
function svg() {
  const profiles = Object.keys(series);
  const W = 960, PH = 230, L = 60, R = 20, T = 34, B = 34;
  const H = profiles.length * PH + 30;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`];
  const arms = [...new Set(rows.map((r) => r.arm))];
  arms.forEach((a, i) => out.push(`<rect x="${L + i * 130}" y="8" width="14" height="4" fill="${COLOR[a]}"/><text x="${L + i * 130 + 20}" y="14">${LABEL[a] || a}</text>`));
  out.push(`<text x="${W - R}" y="14" text-anchor="end" fill="#666">latency (ms, 250 ms means) vs seconds since first frame; red ticks: stalls</text>`);
  profiles.forEach((p, i) => {
    const y0 = 30 + i * PH;
    const pw = W - L - R, ph = PH - T - B;
    const all = Object.values(series[p]).flat(2);
    const tMax = Math.max(10, ...all.map(([t]) => t));
    const top = Math.max(1000, ...all.map(([, v]) => v));
    const tick = [100, 200, 250, 500, 1000, 2000, 2500, 5000].find((s) => top / s <= 6) || 10000;
    const vMax = Math.ceil(top / tick) * tick;
    const X = (t) => (L + (t / tMax) * pw).toFixed(1);
    const Y = (v) => (y0 + T + ph - (Math.min(v, vMax) / vMax) * ph).toFixed(1);
    out.push(`<text x="${L}" y="${y0 + 22}" font-weight="bold">${p}</text><text x="${L + 60}" y="${y0 + 22}" fill="#666">${(meta.profiles[p] || '').replace(/[<&]/g, '')}</text>`);
    out.push(`<rect x="${L}" y="${y0 + T}" width="${pw}" height="${ph}" fill="none" stroke="#bbb"/>`);
    for (let v = 0; v <= vMax; v += tick) {
      out.push(`<line x1="${L}" x2="${L + pw}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/><text x="${L - 4}" y="${Number(Y(v)) + 4}" text-anchor="end" fill="#444">${v}</text>`);
    }
    const step = tMax > 120 ? 30 : tMax > 40 ? 10 : 5;
    for (let t = 0; t <= tMax; t += step) out.push(`<text x="${X(t)}" y="${y0 + T + ph + 14}" text-anchor="middle" fill="#444">${t}</text>`);
    const target = Number(meta.targetLatencyS) * 1000;
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${Y(target)}" y2="${Y(target)}" stroke="#d73027" stroke-dasharray="5,4" stroke-width="0.8"/>`);
    for (const [arm, lines] of Object.entries(series[p])) {
      for (const pts of lines) {
        let d = '';
        let prev = null;
        for (const [t, v] of pts) {
          d += `${prev === null || t - prev > 1 ? 'M' : 'L'}${X(t)},${Y(v)} `;
          prev = t;
        }
        out.push(`<path d="${d.trim()}" fill="none" stroke="${COLOR[arm] || '#000'}" stroke-width="1.3" stroke-opacity="${lines.length > 1 ? 0.75 : 1}"/>`);
      }
      for (const t of stallMarks[p][arm] || []) {
        if (t >= 0 && t <= tMax) out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${y0 + T + ph - 8}" y2="${y0 + T + ph}" stroke="#d73027" stroke-width="2"/>`);
      }
    }
  });
  out.push('</svg>');
  return out.join('\n');
}

writeFileSync(join(dir, 'report.md'), report);
writeFileSync(join(dir, 'summary.json'), JSON.stringify({ meta: { ...meta, chromium }, rows }, null, 1));
writeFileSync(join(dir, 'samples.csv'), `${csv.join('\n')}\n`);
writeFileSync(join(dir, 'latency.svg'), svg());
console.log(`\n${txtTable}\n`);
for (const s of skipped) console.log(`skipped ${s.profile}: ${s.reason}`);
console.log(`report: ${join(dir, 'report.md')}  plot: ${join(dir, 'latency.svg')}  samples: ${join(dir, 'samples.csv')}`);
