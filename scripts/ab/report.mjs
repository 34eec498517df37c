#!/usr/bin/env node
// A/B report: reads DIR/meta.json and DIR/raw/PROFILE.json (written by
// scripts/ab.sh and scripts/ab/driver.mjs) and writes into DIR:
//   report.md     the measured path per profile, the transport x browser x profile table
//                 with the spread over rounds, a computed verdict per profile (transports
//                 within each browser; with two browsers, each transport across them),
//                 per-frame arrival (network) vs glass-to-glass (what a viewer sees),
//                 the latency floor per browser (--floor), setup, skipped profiles
//   summary.json  the same table as data (+ meta)
//   samples.csv   every sample: one row per decoded frame (kind=frame; arrival_ms: when
//                 the frame reached the player minus its encoder clock) and per
//                 dash.js reading (kind=dash, 4 per second); the browser in its own column
//   latency.svg   latency over time, one panel per profile, one line per transport and play
// and prints the table.  Usage: node scripts/ab/report.mjs DIR
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../../web/e2e/cli.js';
import { floorTable } from './floor.mjs';

const { positionals: [dir] } = cli(import.meta.url, {}, { allowPositionals: true });
if (!dir || !existsSync(join(dir, 'meta.json'))) {
  console.error('usage: report.mjs DIR (with meta.json and raw/*.json)');
  process.exit(2);
}
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
// Older outputs: profile -> description string.
for (const [k, v] of Object.entries(meta.profiles)) if (typeof v === 'string') meta.profiles[k] = { desc: v };
const warmupMs = meta.warmupS * 1000;
const LABEL = { h3: 'h3', h1: 'h1 (TLS)', h2: 'h2', moq: 'moq' };
const COLOR = { h3: '#1a9850', h2: '#e08214', h1: '#2166ac', moq: '#c51b7d' };
const BROWSER_NAME = { chromium: 'Chromium', firefox: 'Firefox' };
// Older outputs: Chromium only.
const browsers = meta.browsers || ['chromium'];
const multiBrowser = browsers.length > 1;
const bname = (b) => BROWSER_NAME[b] || b;
/** An arm's label, with its browser when the run had several. */
const armLabel = (arm, browser) => `${LABEL[arm] || arm}${multiBrowser ? ` in ${bname(browser)}` : ''}`;

const FROZEN_GAP_MS = 200; // > 6 frame times at 30 fps
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : null);
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const med = (v) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

const rows = [];
const abrRows = []; // rate-step plays (profile part 'step'): one row per play
const series = {}; // profile -> "browser arm" -> [[tS, latencyMs]] (250 ms bins)
const stallMarks = {}; // profile -> "browser arm" -> [tS]
const csv = ['profile,arm,round,kind,epoch_ms,t_s,latency_ms,playback_rate,buffer_s,screen_ms,in_stats,browser,arrival_ms'];
let chromium = null;
const versions = {}; // browser -> version string

for (const profile of Object.keys(meta.profiles)) {
  const file = join(dir, 'raw', `${profile}.json`);
  if (!existsSync(file)) { console.error(`report: ${file} missing`); continue; }
  const raw = JSON.parse(readFileSync(file, 'utf8'));
  chromium = chromium || raw.chromium;
  Object.assign(versions, raw.browsers || (raw.chromium ? { chromium: raw.chromium } : {}));
  series[profile] = {};
  stallMarks[profile] = {};
  // Plays grouped by arm (older driver output: one play per arm in raw.arms).
  const plays00 = raw.plays || Object.values(raw.arms).map((r) => ({ ...r, arm: Object.keys(raw.arms).find((k) => raw.arms[k] === r), round: 1 }));
  const plays0 = plays00.map((x) => ({ ...x, browser: x.browser || 'chromium' }));
  // Several ABR rules in one run (ab.sh --abr-rules): one row per transport and rule.
  const byRule = new Set(plays0.map((x) => x.abr || '')).size > 1;
  const plays = byRule ? plays0.map((x) => ({ ...x, transport: x.arm, arm: `${x.arm}/${x.abr}` })) : plays0;
  const armOrder = [...new Set([...meta.arms.split(','), ...plays.map((x) => x.arm)])].filter((a) => plays.some((x) => x.arm === a));
  for (const [arm, browser] of armOrder.flatMap((a) => browsers.map((b) => [a, b]))) {
    const mine = plays.filter((x) => x.arm === arm && x.browser === browser);
    if (!mine.length) continue;
    const key = `${browser} ${arm}`;
    const lat = [];
    const arrivalL = []; // frames with an arrival time: arrival latency, and glass minus arrival
    const pipelineL = [];
    let excluded = 0;
    const dashL = [];
    const rates = [];
    const startups = [];
    const counts = {};
    let framesTotal = 0, frozenMs = 0, stalls = 0, stalledMs = 0, bytes = 0, decodeErrors = 0, errors = 0;
    const errorSamples = [];
    series[profile][key] = [];
    stallMarks[profile][key] = [];
    let expect = null;
    const perRound = []; // [{ round, p50, p95, samples }]
    for (const r of mine) {
      expect = r.expect;
      const f = r.final || {};
      const frames = r.frames || [];
      framesTotal += frames.length;
      const t0 = frames.length ? frames[0][0] : r.navigatedAt;
      const statsFrom = t0 + warmupMs;
      const roundLat = [];
      for (const [t, l, a] of frames) {
        const inStats = t >= statsFrom;
        if (inStats) {
          lat.push(l); roundLat.push(l);
          if (a != null) { arrivalL.push(a); pipelineL.push(l - a); }
        }
        csv.push(`${profile},${arm},${r.round},frame,${t},${((t - t0) / 1000).toFixed(3)},${l},,,,${inStats ? 1 : 0},${browser},${a ?? ''}`);
      }
      excluded += (r.excluded || []).length;
      roundLat.sort((a, b) => a - b);
      perRound.push({ round: r.round, p50: pct(roundLat, 50), p95: pct(roundLat, 95), samples: roundLat.length });
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
        csv.push(`${profile},${arm},${r.round},dash,${t},${((t - t0) / 1000).toFixed(3)},${d ?? ''},${rate},${buf ?? ''},${screen ?? ''},${inStats ? 1 : 0},${browser},`);
      }
      // 250 ms bins for the plot, one line per play
      const bins = new Map();
      for (const [t, l] of frames) {
        const k = Math.floor((t - t0) / 250);
        const b = bins.get(k) || [0, 0];
        b[0] += l; b[1]++;
        bins.set(k, b);
      }
      series[profile][key].push([...bins.entries()].sort((a, b) => a[0] - b[0]).map(([k, [sum, n]]) => [k / 4, sum / n]));
      stallMarks[profile][key].push(...((f.stalls && f.stalls.events) || []).map(([t]) => (t - t0) / 1000));
      for (const [k, v] of Object.entries((f.transport && f.transport.counts) || {})) counts[k] = (counts[k] || 0) + v;
      if (f.stalls) { stalls += f.stalls.count; stalledMs += f.stalls.totalMs; }
      if (r.steps && r.steps.length) abrRows.push(rateStep(profile, r.transport || arm, r, f, frames));
      if (f.firstFrameMs != null) startups.push(f.firstFrameMs);
      bytes += f.bytes || 0;
      decodeErrors += f.frames ? f.frames.decodeErrors : 0;
      errors += (f.errors || []).length + (r.pageExceptions || []).length;
      errorSamples.push(...(f.errors || []).map((e) => e.message), ...(r.pageExceptions || []));
    }
    lat.sort((a, b) => a - b);
    arrivalL.sort((a, b) => a - b);
    pipelineL.sort((a, b) => a - b);
    dashL.sort((a, b) => a - b);
    startups.sort((a, b) => a - b);
    // 'none': aborted before a response (no protocol to judge)
    const known = Object.entries(counts).filter(([k]) => k !== 'none');
    const total = known.reduce((a, [, n]) => a + n, 0);
    const protocol = Object.keys(counts).length === 1 ? Object.keys(counts)[0]
      : Object.entries(counts).map(([k, v]) => `${k}:${v}`).join(' ') || 'none';
    const nPlays = mine.length;
    rows.push({
      profile, arm, browser, plays: nPlays, expect, protocol, protocolCounts: counts, protocolOk: total > 0 && counts[expect] === total,
      samples: lat.length, framesTotal, perRound,
      p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99), max: lat.length ? lat[lat.length - 1] : null,
      dashP50: pct(dashL, 50),
      arrivalSamples: arrivalL.length, arrivalP50: pct(arrivalL, 50), arrivalP95: pct(arrivalL, 95),
      pipelineP50: pct(pipelineL, 50), pipelineP95: pct(pipelineL, 95), excluded,
      stalls, stalledS: stalledMs / 1000, frozenS: frozenMs / 1000,
      startupMs: pct(startups, 50), startupsMs: startups,
      rateMean: rates.length ? mean(rates) : null, rateMin: rates.length ? Math.min(...rates) : null, rateMax: rates.length ? Math.max(...rates) : null,
      bytes, decodeErrors, errors, errorSamples: errorSamples.slice(0, 3),
    });
  }
}

/**
 * One rate-step play: when the capacity dropped (step 'low') and came back
 * ('high' after 0 s), how long until the player rendered a lower / higher
 * rendition (QUALITY_CHANGE_RENDERED, web/abr.js), stalls and frozen picture
 * from the drop to 10 s after the recovery, and the mean bitrate played.
 */
function rateStep(profile, arm, r, f, frames) {
  const low = r.steps.find((x) => x.label === 'low');
  const high = r.steps.find((x) => x.label === 'high' && x.atS > 0);
  const abr = f.abr || { events: [] };
  const ev = abr.events || [];
  const kbpsAt = (t) => { // rendition bitrate rendered just before t
    let k = null;
    for (const e of ev) if (e.t < t) k = e.kbps;
    if (k == null) k = ev.length ? (abr.representations || []).find((x) => x.id === ev[0].from)?.kbps ?? null : abr.current && abr.current.kbps;
    return k;
  };
  const firstAfter = (t, dir) => {
    if (t == null) return null;
    const before = kbpsAt(t);
    const e = ev.find((x) => x.t >= t && (dir < 0 ? x.kbps < before : x.kbps > before));
    return e ? (e.t - t) / 1000 : null;
  };
  const from = low ? low.t : null;
  const to = high ? high.t + 10000 : null;
  let stallsN = 0, stalledMs = 0, frozenMs = 0;
  if (from != null && to != null) {
    for (const [t, d] of (f.stalls && f.stalls.events) || []) if (t >= from && t <= to) { stallsN++; stalledMs += d; }
    for (let i = 1; i < frames.length; i++) {
      const a = Math.max(frames[i - 1][0], from), b = Math.min(frames[i][0], to);
      if (frames[i][0] - frames[i - 1][0] > FROZEN_GAP_MS && b > a) frozenMs += b - a;
    }
  }
  // Frames whose timecode decoded, per rendition height on screen at the time.
  const heightAt = (t) => {
    let h = ev.length ? (abr.representations || []).find((x) => x.id === ev[0].from)?.height : abr.current && abr.current.height;
    for (const e of ev) if (e.t <= t) h = e.height;
    return h;
  };
  const decodedByHeight = {};
  for (const [t] of frames) { const h = heightAt(t); if (h != null) decodedByHeight[h] = (decodedByHeight[h] || 0) + 1; }
  // dash.js's throughput estimate (6th element of the dash samples, newer pages only):
  // the median of the 5 s before the drop and the lowest while the capacity was low.
  const tput = (r.dash || []).filter((d) => d[5] != null).map((d) => [d[0], d[5]]);
  const inWin = (a, b) => tput.filter(([t]) => t >= a && t < b).map(([, v]) => v);
  const tputBefore = low ? inWin(low.t - 5000, low.t) : [];
  const tputDrop = low && high ? inWin(low.t, high.t) : [];
  const tputAfter = high ? inWin(high.t, high.t + 10000) : [];
  // Video segment requests dash.js finished while the capacity was low (abr.fetches,
  // newer pages only): how many, and the rate dash.js computed from them (bytes over its
  // download time). None finished = no new throughput sample = no reason to switch down.
  const fetches = abr.fetches || null;
  // dash.js records aborted requests too, with no bytes (its fetch loader traces a request
  // only when it completes): those are counted apart.
  const dropEnded = fetches && low && high ? fetches.filter((x) => x[2] != null && x[2] >= low.t && x[2] < high.t) : null;
  const dropDone = dropEnded ? dropEnded.filter((x) => x[3] > 0) : null;
  const dropKbps = dropDone ? dropDone.filter((x) => x[4] > 0).map((x) => Math.round((8 * x[3]) / x[4])) : [];
  // The page's stall watchdog (web/measure.js keepPlaying) reloads the stream after 2 s
  // without progress when the live edge answers: counted from the drop to recovery + 10 s.
  const rec = f.recovery || null;
  const reloads = rec && from != null && to != null ? (rec.events || []).filter((e) => e.t >= from && e.t <= to).length : null;
  const downEv = low ? ev.find((x) => x.t >= low.t && x.kbps < kbpsAt(low.t)) : null;
  const upEv = high ? ev.find((x) => x.t >= high.t && x.kbps > kbpsAt(high.t)) : null;
  return {
    profile, arm, browser: r.browser, round: r.round, rule: abr.rule ? `${abr.rule}${abr.pace && abr.pace.on ? '+pace' : ''}` : null,
    paceSlow: abr.pace && abr.pace.on ? abr.pace.slow : null, paceAbandoned: abr.pace && abr.pace.on ? abr.pace.abandoned ?? null : null,
    downS: low ? firstAfter(low.t, -1) : null, upS: high ? firstAfter(high.t, +1) : null,
    tputBeforeKbps: tputBefore.length ? med(tputBefore) : null, tputMinDropKbps: tputDrop.length ? Math.min(...tputDrop) : null,
    tputAfterKbps: tputAfter.length ? med(tputAfter) : null,
    dropFetches: dropDone ? dropDone.length : null, dropAborted: dropEnded ? dropEnded.length - dropDone.length : null, dropFetchKbps: dropKbps.length ? med(dropKbps) : null,
    dropFetchMaxS: dropDone && dropDone.length ? Math.max(...dropDone.map((x) => (x[2] - x[0]) / 1000)) : null,
    downToHeight: downEv ? downEv.height : null, upToHeight: upEv ? upEv.height : null, decodedByHeight,
    beforeKbps: low ? kbpsAt(low.t) : null, switches: abr.switches ?? null,
    stalls: stallsN, stalledS: stalledMs / 1000, frozenS: frozenMs / 1000, reloads, maxDrift: abr.maxDrift ?? null,
    meanKbps: abr.playedKbpsMean ?? null,
    heights: [ev.length ? (abr.representations || []).find((x) => x.id === ev[0].from)?.height : abr.current && abr.current.height, ...ev.map((e) => e.height)].filter((x) => x != null).join('→'),
    stepsOk: r.steps.every((x) => x.ok),
  };
}

// ------------------------------------------------------------------ table
const fmt = (v, d = 0) => (v == null ? '–' : Number(v).toFixed(d));
const spread = (r, k) => {
  const v = r.perRound.map((x) => x[k]).filter((x) => x != null);
  return v.length > 1 ? `${Math.min(...v)}–${Math.max(...v)}` : '–';
};
const head = ['profile', 'transport', 'browser', 'protocol used', 'plays', 'samples', 'p50 ms', 'p50 over rounds', 'p95 ms', 'p95 over rounds', 'p99 ms', 'dash.js p50 ms',
  'stalls', 'stalled s', 'frozen s', 'startup ms', 'rate (mean, min–max)', 'MB', 'errors'];
const table = rows.map((r) => [r.profile, LABEL[r.arm] || r.arm, bname(r.browser), r.protocolOk ? r.protocol : `${r.protocol} (expected ${r.expect}!)`,
  String(r.plays), String(r.samples), fmt(r.p50), spread(r, 'p50'), fmt(r.p95), spread(r, 'p95'), fmt(r.p99), fmt(r.dashP50), fmt(r.stalls), fmt(r.stalledS, 1), fmt(r.frozenS, 1), fmt(r.startupMs),
  r.rateMean == null ? '–' : `${r.rateMean.toFixed(2)} (${r.rateMin.toFixed(2)}–${r.rateMax.toFixed(2)})`,
  r.bytes == null ? '–' : (r.bytes / 1e6).toFixed(1), String(r.errors)]);
const md = (cells) => `| ${cells.join(' | ')} |`;
const mdTable = [md(head), md(head.map(() => '---')), ...table.map(md)].join('\n');
const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const txtTable = [head, ...table].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n');

// ---------------------------------------------------------- measured paths
const readRaw = (f) => {
  try {
    return JSON.parse(readFileSync(join(dir, 'raw', f), 'utf8'));
  } catch {
    return null;
  }
};
const profiles = Object.keys(meta.profiles);
function pathCell(check, name, d = 1) {
  const it = check && check.items.find((i) => i.name === name);
  if (!it) return '–';
  return `${Number(it.configured.toFixed(d))} → ${it.measured == null ? '–' : it.measured.toFixed(d)}${it.ok ? '' : ' (FAIL)'}`;
}
function emuCell(p) {
  const parts = [];
  for (const d of ['down', 'up']) {
    const e = readRaw(`${p}.emu-${d}.json`);
    if (!e) continue;
    parts.push(`${d}: ${e.packets} pkts, ${e.dropped_loss + e.dropped_queue} dropped, ${e.cpu_s.toFixed(1)} CPU s / ${e.wall_s.toFixed(0)} s, late p99 ${e.late_p99_us} µs (max ${(e.late_max_us / 1000).toFixed(1)} ms)`);
  }
  return parts.join('; ') || '–';
}
const pathHead = ['profile', 'path (per direction)', 'self-check', 'RTT ms', 'TCP connect ms', 'RTT σ ms', 'loss down %', 'loss up %', 'rate down kbit/s', 'emulator'];
const pathRows = profiles.map((p) => {
  const c = readRaw(`${p}.path.json`);
  return [p, meta.profiles[p].down ? `down \`${meta.profiles[p].down}\`, up \`${meta.profiles[p].up}\`` : meta.profiles[p].desc,
    c ? (c.ok ? `ok (${c.seconds.toFixed(0)} s)` : 'FAIL') : 'not run', pathCell(c, 'rtt_ms'), pathCell(c, 'tcp_connect_ms'), pathCell(c, 'rtt_sd_ms'),
    pathCell(c, 'loss_down_pct', 2), pathCell(c, 'loss_up_pct', 2), pathCell(c, 'rate_down_kbit', 0), emuCell(p)];
});

// ---------------------------------------------------------------- verdicts
/** One computed sentence comparing arm a with arm b on percentile k over the rounds. */
function compare(a, b, k) {
  const byRound = (r) => new Map(r.perRound.filter((x) => x[k] != null).map((x) => [x.round, x[k]]));
  const ra = byRound(a), rb = byRound(b);
  const va = [...ra.values()], vb = [...rb.values()];
  const A = armLabel(a.arm, a.browser), B = armLabel(b.arm, b.browser);
  if (!va.length || !vb.length) return `${k}: no samples for ${va.length ? B : A}`;
  const d = Math.round(med(vb) - med(va));
  const range = (v) => (v.length > 1 ? `${Math.min(...v)}–${Math.max(...v)} ms` : `${v[0]} ms`);
  const n = Math.min(va.length, vb.length);
  const diff = `${A} ${k} is ${Math.abs(d)} ms ${d > 0 ? 'lower' : 'higher'} than ${B}`;
  if (n < 2) return `${diff} in the one round played (${A} ${va[0]} ms, ${B} ${vb[0]} ms): no round-to-round spread to judge it against (use --rounds 3)`;
  const spread = `${A} ${range(va)}, ${B} ${range(vb)} over the rounds`;
  if (Math.max(...va) < Math.min(...vb) || Math.min(...va) > Math.max(...vb)) return `${diff} (all ${n} rounds agree, beyond the round-to-round spread: ${spread})`;
  const paired = [...ra.keys()].filter((r) => rb.has(r)).map((r) => Math.sign(rb.get(r) - ra.get(r)));
  if (paired.length > 1 && paired.every((x) => x === paired[0] && x !== 0)) {
    return `${diff} in each of the ${paired.length} rounds, but within the round-to-round spread (${spread})`;
  }
  return `no ${k} difference between ${A} and ${B} beyond the round-to-round spread (${spread})`;
}
const verdicts = profiles.map((p) => {
  const rs = rows.filter((r) => r.profile === p);
  const lines = [];
  // With several ABR rules (arms 'h3/lolp' ...), transports are compared within each rule,
  // and within each browser.
  for (const browser of browsers) {
    for (const rule of new Set(rs.map((r) => r.arm.split('/')[1] || ''))) {
      const g = rs.filter((r) => r.browser === browser && (r.arm.split('/')[1] || '') === rule);
      const base = g.find((r) => r.arm.split('/')[0] === 'h3') || g[0];
      for (const other of g.filter((r) => r !== base)) for (const k of ['p50', 'p95']) lines.push(compare(base, other, k));
    }
  }
  // The same arm in two browsers: where the result depends on the browser's stack.
  if (multiBrowser) {
    for (const arm of new Set(rs.map((r) => r.arm))) {
      const g = browsers.map((b) => rs.find((r) => r.arm === arm && r.browser === b)).filter(Boolean);
      for (let i = 1; i < g.length; i++) for (const k of ['p50', 'p95']) lines.push(compare(g[0], g[i], k));
    }
  }
  if (rs.some((r) => r.stalls || r.frozenS >= 1)) lines.push(`stalls: ${rs.map((r) => `${armLabel(r.arm, r.browser)} ${r.stalls} (${r.frozenS.toFixed(1)} s frozen)`).join(', ')}`);
  return { profile: p, lines };
}).filter((v) => v.lines.length);

// ------------------------------------------------------------- arrival
// Frames that carry their arrival time at the client (compare.html, web/measure.js
// and web/moq.js): the network's share (arrival) and the player pipeline's
// (glass minus arrival) of each arm's glass-to-glass latency.
const arrivalRows = rows.filter((r) => r.arrivalSamples || r.excluded);
const arrivalMd = !arrivalRows.length ? '' : `## Arrival and glass-to-glass

Per frame, after the warm-up: **arrival** = the wall clock when the frame reached the player minus the encoder clock decoded from that frame's picture, i.e. encoder, origin and network (dash.js, hls.js: the player's Media Source Extensions append of the CMAF chunk that carried the frame; moq: moq-lite delivered the whole CMAF fragment to the player's decode loop); **glass-to-glass** = when the frame is shown minus the same encoder clock (the Results table's latency); **player pipeline** = glass-to-glass minus arrival of the same frame (buffer held to meet the target latency, decoder, display: MSE + video element, or WebCodecs + canvas for moq). Frames received over a MoQ session on WebSocket are not samples (left out, counted here).

${md(['profile', 'transport', 'frames with arrival', 'arrival p50 ms', 'arrival p95 ms', 'glass-to-glass p50 ms', 'glass-to-glass p95 ms', 'player pipeline p50 ms', 'player pipeline p95 ms', 'left out (WebSocket)'])}
${md(Array(10).fill('---'))}
${arrivalRows.map((r) => md([r.profile, armLabel(r.arm, r.browser), String(r.arrivalSamples), fmt(r.arrivalP50), fmt(r.arrivalP95), fmt(r.p50), fmt(r.p95), fmt(r.pipelineP50), fmt(r.pipelineP95), String(r.excluded)])).join('\n')}

`;

// ------------------------------------------------------------------ floor
const floor = floorTable(dir, meta);
// Columns: each arm, in each browser (the same arm side by side across browsers).
const floorArms = [...new Set(floor.map((r) => r.arm))].flatMap((a) => browsers.filter((b) => floor.some((r) => r.arm === a && r.browser === b)).map((b) => [a, b]));
const floorMd = !floor.length ? '' : `## Latency floor

Lowest target latency (tried ${meta.floor.latencies.join(', ')} s, ascending) at which the player ran ${meta.floor.holdS} s after a ${meta.warmupS} s warm-up with no stall and no frozen picture (no gap over 200 ms between decoded frames); in brackets the median glass-to-glass latency of that run.${multiBrowser ? ' One column per transport and browser.' : ''}${floorArms.some(([a]) => a === 'moq') ? ` For moq the target is the MoQ player's jitter buffer, added to the lowest transit time it has seen, not an end-to-end target like dash.js's: compare the bracketed glass-to-glass medians.` : ''}

${md(['profile', ...floorArms.map(([a, b]) => armLabel(a, b))])}
${md(['---', ...floorArms.map(() => '---')])}
${[...new Set(floor.map((r) => r.profile))].map((p) => md([p, ...floorArms.map(([a, b]) => {
    const r = floor.find((x) => x.profile === p && x.arm === a && x.browser === b);
    if (!r) return '–';
    return r.floorS != null ? `${r.floorS} s (${r.latencyP50} ms)` : `> ${r.trials[r.trials.length - 1].latencyS} s`;
  })])).join('\n')}

Trials: ${floor.map((r) => `${r.profile}/${multiBrowser ? `${r.browser}/` : ''}${r.arm}: ${r.trials.map((t) => `${t.latencyS} s ${t.held ? 'held' : `failed (${t.why})`}`).join(', ')}`).join('; ')}.
`;

function abrMd() {
  if (!abrRows.length) return '';
  const st = meta.step || {};
  const head = ['profile', 'transport', 'round', 'ABR rule', 'played before the drop kbit/s', 'switch down s', 'switch up s', 'switches',
    'stalls (drop → recovery + 10 s)', 'stalled s', 'frozen s', 'mean kbit/s played', 'renditions (height)', 'frames decoded per height',
    'dash.js estimate kbit/s: before the drop → lowest in it → after the recovery', 'video segments finished in the drop (median kbit/s, longest s); aborted', 'page reloads (drop → recovery + 10 s); catch-up seek s; segments slower than real time: finished, abandoned'];
  return `## ABR rate step

Downstream capacity ${st.highKbit} kbit/s, ${st.lowKbit} kbit/s from ${st.atS} s after the page opened, back to ${st.highKbit} kbit/s at ${st.atS + st.holdS} s (tc tbf on the origin's veth).
switch down / up: from the capacity change to the first rendition rendered below / above the one played before it ('–': none during the play).
stalls / stalled / frozen: from the drop to 10 s after the recovery. mean kbit/s played: time-weighted bitrate of the rendered video rendition over the whole play.
frames decoded per height: frames whose timecode strip decoded (latency samples), by the height of the rendition on screen then.
dash.js estimate: its video throughput estimate (getAverageThroughput, 4 readings a second), the median over the 5 s before the drop, the lowest reading while the capacity was low and the median over the 10 s after the recovery: an estimate that stays above the played bitrate in the drop explains a missing down-switch, one that stays near the low rendition's bitrate after the recovery a missing up-switch.
video segments finished in the drop: dash.js's own request records (HttpList) of video segments that finished while the capacity was low, the median of the rate it computed from each (bytes over its download time) and the longest request (sent to finished): its estimate only moves when one finishes. aborted: requests dash.js gave up in the drop (after a seek to the live edge, or its abandon rule); they add no throughput sample.
page reloads: the page's stall watchdog reattaching the stream after 2 s without progress (also aborts the requests in flight). catch-up seek s: dash.js's liveCatchup.maxDrift on the page (a seek to the live edge past it; 0: never; '–': the page's default, max(2, 2 × target)). segments slower than real time: over the whole play, video segments the segment-pace rule (web/abr.js, rule name '+pace') found limited by the path when they finished, and requests it abandoned in flight for the same reason; each caps the rendition for 10 s.

${md(head)}
${md(head.map(() => '---'))}
${abrRows.map((r) => md([r.profile, armLabel(r.arm, r.browser), String(r.round), r.rule || '–', fmt(r.beforeKbps), fmt(r.downS, 1), fmt(r.upS, 1), fmt(r.switches),
    fmt(r.stalls), fmt(r.stalledS, 1), fmt(r.frozenS, 1), fmt(r.meanKbps), `${r.heights || '–'}${r.stepsOk ? '' : ' (a tc step failed)'}`,
    Object.entries(r.decodedByHeight).map(([h, n]) => `${h}: ${n}`).join(', ') || '–',
    [r.tputBeforeKbps, r.tputMinDropKbps, r.tputAfterKbps].every((x) => x == null) ? '–' : `${fmt(r.tputBeforeKbps)} → ${fmt(r.tputMinDropKbps)} → ${fmt(r.tputAfterKbps)}`,
    r.dropFetches == null ? '–' : `${r.dropFetches}${r.dropFetches ? ` (${fmt(r.dropFetchKbps)}, ${fmt(r.dropFetchMaxS, 1)})` : ''}; ${r.dropAborted} aborted`,
    `${fmt(r.reloads)}; ${fmt(r.maxDrift)}; ${fmt(r.paceSlow)}, ${fmt(r.paceAbandoned)}`])).join('\n')}
${abrRuleMd()}
`;
}
/** Per profile, rule and transport over the plays (rounds): the numbers that choose the default rule. */
function abrRuleSummary() {
  const groups = new Map();
  for (const r of abrRows) {
    const k = `${r.profile}|${r.rule}|${r.arm}|${r.browser}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  const medOf = (v) => (v.length ? med(v) : null);
  const mean = (v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
  return [...groups.values()].map((g) => {
    const downs = g.map((r) => r.downS).filter((x) => x != null), ups = g.map((r) => r.upS).filter((x) => x != null);
    return {
      profile: g[0].profile, rule: g[0].rule, arm: g[0].arm, browser: g[0].browser, plays: g.length,
      downPlays: downs.length, downMedianS: medOf(downs), upPlays: ups.length, upMedianS: medOf(ups),
      stallsMean: mean(g.map((r) => r.stalls)), stalledMeanS: mean(g.map((r) => r.stalledS)), frozenMeanS: mean(g.map((r) => r.frozenS)),
      meanKbps: mean(g.map((r) => r.meanKbps).filter((x) => x != null)), switchesMean: mean(g.map((r) => r.switches).filter((x) => x != null)),
    };
  }).sort((a, b) => (a.profile + a.rule).localeCompare(b.profile + b.rule));
}
function abrRuleMd() {
  const rs = abrRuleSummary();
  if (new Set(rs.map((r) => r.rule)).size < 2 && !rs.some((r) => r.plays > 1)) return '';
  const head = ['profile', 'ABR rule', 'transport', 'plays', 'switched down (plays)', 'switch down s (median)', 'switched up (plays)', 'switch up s (median)',
    'switches (mean)', 'stalls (mean)', 'stalled s (mean)', 'frozen s (mean)', 'mean kbit/s played (mean)'];
  return `
### By rule and transport

Over the plays above (rounds): how many plays switched down after the drop / up after the recovery and the median time among those that did; stalls, stalled and frozen time (drop → recovery + 10 s) and bitrate are means per play.

${md(head)}
${md(head.map(() => '---'))}
${rs.map((r) => md([r.profile, r.rule || '–', armLabel(r.arm, r.browser), String(r.plays), `${r.downPlays}/${r.plays}`, fmt(r.downMedianS, 1), `${r.upPlays}/${r.plays}`, fmt(r.upMedianS, 1),
    fmt(r.switchesMean, 1), fmt(r.stallsMean, 1), fmt(r.stalledMeanS, 1), fmt(r.frozenMeanS, 1), fmt(r.meanKbps)])).join('\n')}
`;
}
const skipped = meta.skipped || [];
const report = `# h3live transport A/B report

- date: ${meta.date}; machine: ${meta.machine}; load average at start: ${meta.load}
- h3live ${meta.commit}; ${meta.ffmpeg}; ${browsers.map((b) => `${versions[b] || bname(b)} (headless)`).join(', ')}
- setup: ${meta.setup}; arms played ${meta.mode === 'concurrent' ? 'all at once in one page' : 'one after another, each in a fresh browser context'}
- stream: ${meta.encoder}; player target latency ${meta.targetLatencyS} s; ${meta.durationS} s per play, ${meta.rounds || 1} play(s) per arm and profile; statistics leave out the first ${meta.warmupS} s after the first frame

## Paths

Engine: ${meta.engineDesc || meta.engine || 'not recorded'}.

${Object.entries(meta.profiles).map(([p, d]) => `- \`${p}\`: ${d.desc}`).join('\n')}

Configured → measured by \`h3live pathemu check\` before the plays (raw/PROFILE.path.txt has every item and how it was measured):

${[md(pathHead), md(pathHead.map(() => '---')), ...pathRows.map(md)].join('\n')}
${skipped.length ? `\nSkipped:\n${skipped.map((s) => `- \`${s.profile}\`: ${s.reason}`).join('\n')}\n` : ''}
## Results

${mdTable}

## Verdicts (computed)

${verdicts.length ? verdicts.map((v) => `- \`${v.profile}\`: ${v.lines.join('; ')}.`).join('\n') : 'No arm pairs to compare.'}

${arrivalMd}${floorMd}${abrMd()}
Columns: latency = player wall clock when a frame is shown minus the encoder wall clock
decoded from that frame's timecode strip (one sample per decoded frame, after the warm-up);
p50/p95/p99 are percentiles of those samples (all rounds together); "over rounds": lowest–highest
of the per-round p50 / p95 (--rounds). dash.js p50: median of
getCurrentLiveLatency(). plays: how many times the arm was played (--rounds); samples,
stalls and times add up over the plays. stalls / stalled s: 'waiting' events after the
first frame and their total duration (whole play, warm-up included). frozen s: time without a new decoded frame, counting
every gap over 200 ms between frames and a picture still frozen at the end (catches stalls
the video element does not report as 'waiting'). startup: navigation start to the first frame shown (median over the plays)${browsers.includes('firefox') ? `; in Firefox the h3 arm's QUIC connection is set up before the navigation (Firefox finds h3 through Alt-Svc: each play first fetches from the origin until a response comes over h3, so that the play is h3 from its first request), so its startup leaves out the QUIC handshake that Chromium's (QUIC forced) and the TCP arms' include` : ''}.
rate: video playbackRate (dash.js catch-up). MB: bytes of finished requests to that arm.
protocol used: nextHopProtocol of the media segment requests (moq: "moq" for frames received
over a MoQ session on WebTransport, "moq-websocket" over the WebSocket fallback). errors: dash.js/video errors
and page exceptions. moq: no 'waiting' event exists for its canvas player, so its stalls are the
gaps over 200 ms between painted frames; its rate is 1 and buffer its playout delay.
${rows.some((r) => r.errors) ? `\nFirst errors:\n${rows.filter((r) => r.errors).map((r) => `- ${r.profile}/${multiBrowser ? `${r.browser}/` : ''}${r.arm}: ${r.errorSamples.join(' | ')}`).join('\n')}\n` : ''}
Files: samples.csv (every sample), summary.json, latency.svg, raw/ (driver output, nftables/tc counters), ab.log.
`;

// ------------------------------------------------------------------- plot
function svg() {
  const profiles = Object.keys(series);
  const W = 960, PH = 230, L = 60, R = 20, T = 34, B = 34;
  const H = profiles.length * PH + 30;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`];
  // One colour per transport; with two browsers, Firefox's lines dashed.
  const dash = (browser) => (multiBrowser && browser === 'firefox' ? ' stroke-dasharray="6,3"' : '');
  const arms = [...new Set(rows.map((r) => r.arm))];
  arms.forEach((a, i) => out.push(`<rect x="${L + i * 130}" y="8" width="14" height="4" fill="${COLOR[a.split('/')[0]]}"/><text x="${L + i * 130 + 20}" y="14">${LABEL[a] || a}</text>`));
  out.push(`<text x="${W - R}" y="14" text-anchor="end" fill="#666">latency (ms, 250 ms means) vs seconds since first frame; red ticks: stalls${multiBrowser ? '; solid Chromium, dashed Firefox' : ''}</text>`);
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
    out.push(`<text x="${L}" y="${y0 + 22}" font-weight="bold">${p}</text><text x="${L + 60}" y="${y0 + 22}" fill="#666">${((meta.profiles[p] && meta.profiles[p].desc) || '').replace(/[<&]/g, '')}</text>`);
    out.push(`<rect x="${L}" y="${y0 + T}" width="${pw}" height="${ph}" fill="none" stroke="#bbb"/>`);
    for (let v = 0; v <= vMax; v += tick) {
      out.push(`<line x1="${L}" x2="${L + pw}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/><text x="${L - 4}" y="${Number(Y(v)) + 4}" text-anchor="end" fill="#444">${v}</text>`);
    }
    const step = tMax > 120 ? 30 : tMax > 40 ? 10 : 5;
    for (let t = 0; t <= tMax; t += step) out.push(`<text x="${X(t)}" y="${y0 + T + ph + 14}" text-anchor="middle" fill="#444">${t}</text>`);
    const target = Number(meta.targetLatencyS) * 1000;
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${Y(target)}" y2="${Y(target)}" stroke="#d73027" stroke-dasharray="5,4" stroke-width="0.8"/>`);
    for (const [key, lines] of Object.entries(series[p])) {
      const [browser, arm] = key.split(' ');
      for (const pts of lines) {
        let d = '';
        let prev = null;
        for (const [t, v] of pts) {
          d += `${prev === null || t - prev > 1 ? 'M' : 'L'}${X(t)},${Y(v)} `;
          prev = t;
        }
        out.push(`<path d="${d.trim()}" fill="none" stroke="${COLOR[arm.split('/')[0]] || '#000'}" stroke-width="1.3" stroke-opacity="${lines.length > 1 ? 0.75 : 1}"${dash(browser)}/>`);
      }
      for (const t of stallMarks[p][key] || []) {
        if (t >= 0 && t <= tMax) out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${y0 + T + ph - 8}" y2="${y0 + T + ph}" stroke="#d73027" stroke-width="2"/>`);
      }
    }
  });
  out.push('</svg>');
  return out.join('\n');
}

writeFileSync(join(dir, 'report.md'), report);
writeFileSync(join(dir, 'summary.json'), JSON.stringify({ meta: { ...meta, chromium, browsers, browserVersions: versions }, rows, abr: abrRows, abrByRule: abrRuleSummary(), verdicts, floor, paths: Object.fromEntries(profiles.map((p) => [p, readRaw(`${p}.path.json`)])) }, null, 1));
writeFileSync(join(dir, 'samples.csv'), `${csv.join('\n')}\n`);
writeFileSync(join(dir, 'latency.svg'), svg());
console.log(`\n${txtTable}\n`);
for (const v of verdicts) console.log(`verdict ${v.profile}: ${v.lines.join('; ')}`);
for (const r of floor) console.log(`floor ${r.profile}/${multiBrowser ? `${r.browser}/` : ''}${r.arm}: ${r.floorS != null ? `${r.floorS} s` : 'none held'}`);
for (const s of skipped) console.log(`skipped ${s.profile}: ${s.reason}`);
console.log(`report: ${join(dir, 'report.md')}  plot: ${join(dir, 'latency.svg')}  samples: ${join(dir, 'samples.csv')}`);
