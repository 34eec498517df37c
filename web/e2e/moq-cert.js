#!/usr/bin/env node
// Which certificate paths let headless Chromium open a WebTransport session
// to the origin's MoQ endpoint without a click.  Starts an origin with --moq
// on free ports (no encoder needed), opens a page the origin serves over
// cleartext HTTP (http://127.0.0.1:PORT/, a secure context), and from it
// calls `new WebTransport('https://127.0.0.1:MOQ/', {...})` offering the
// MoQ subprotocols, in five browser set-ups:
//   hashes      serverCertificateHashes = the hex SHA-256 the origin serves at
//               /certificate.sha256 (ECDSA, 13-day certificate): must connect,
//               and the session's protocol must be moq-lite-05;
//   none        no hashes, no flags: must fail (the certificate is self-signed);
//   spki-flags  no hashes, Chromium started with --ignore-certificate-errors-spki-list
//               (the MoQ certificate's SPKI) and --origin-to-force-quic-on: reported;
//   spki-list only  the same without --origin-to-force-quic-on: reported;
//   wrong-hash  serverCertificateHashes with a wrong hash: must fail.
// Prints one line per set-up and "N passed, N failed"; exits non-zero on failure.
//
// Usage (repository root, after cargo build --release and npm ci in web/):
//   node web/e2e/moq-cert.js [--bin target/release/h3live] [--keep-logs]
import { join, resolve } from 'node:path';
import { launch, open } from './chromium.js';
import { cli } from './cli.js';
import { ROOT as root, Stack } from './stack.js';

const t0 = Date.now();
const log = (...a) => console.log(`[moq-cert +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const { values: o } = cli(import.meta.url, {
  bin: { type: 'string', default: join(root, 'target', 'release', 'h3live') },
  'keep-logs': { type: 'boolean', default: false },
});

const stack = new Stack({ bin: resolve(o.bin), log, keepLogs: o['keep-logs'] });
let browser = null;
const results = [];
try {
  await stack.startOrigin({ moq: true });
  const moq = stack.ports.moq;
  const hash = (await (await fetch(`${stack.base}/certificate.sha256`)).text()).trim();
  // The same hash on the MoQ port's TCP twin, where @moq/net looks for it with an http:// URL.
  const twin = (await (await fetch(`http://127.0.0.1:${moq}/certificate.sha256`)).text()).trim();
  const spki = /moq_spki_sha256=(\S+)/.exec(stack.outputOf('origin').replace(/\x1b\[[0-9;]*m/g, ''))?.[1];
  log(`MoQ port ${moq}, certificate sha-256 ${hash}, spki ${spki}`);
  if (twin !== hash) results.push(['twin', false, `TCP twin serves ${twin}, not ${hash}`]);
  else results.push(['twin', true, `http://127.0.0.1:${moq}/certificate.sha256 matches`]);

  const tryConnect = async (flags, withHash, wrong = false) => {
    browser = await launch(flags);
    const page = await browser.newPage();
    await open(page, `${stack.base}/`);
    const r = await page.evaluate(async ({ url, hex }) => {
      const opts = { protocols: ['moq-lite-05', 'moq-lite-04', 'moq-lite-03', 'moql'] };
      if (hex) opts.serverCertificateHashes = [{ algorithm: 'sha-256', value: new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16))) }];
      try {
        const wt = new WebTransport(url, opts);
        wt.closed.catch(() => {});
        await Promise.race([wt.ready, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout 10 s')), 10000))]);
        const protocol = wt.protocol;
        wt.close();
        return { ok: true, protocol };
      } catch (e) {
        return { ok: false, error: String(e && (e.message || e)) };
      }
    }, { url: `https://127.0.0.1:${moq}/`, hex: withHash ? (wrong ? '00'.repeat(32) : hash) : null });
    await browser.close();
    browser = null;
    return r;
  };

  const a = await tryConnect([], true);
  results.push(['hashes', a.ok && a.protocol === 'moq-lite-05', JSON.stringify(a)]);
  const b = await tryConnect([], false);
  results.push(['none', !b.ok, JSON.stringify(b)]);
  const c = await tryConnect([`--ignore-certificate-errors-spki-list=${spki}`, `--origin-to-force-quic-on=127.0.0.1:${moq}`], false);
  // Reported, not asserted: which way it goes is what docs/moq.md states.
  results.push([`spki-flags (${c.ok ? 'connects' : 'refused'})`, true, JSON.stringify(c)]);
  const e = await tryConnect([`--ignore-certificate-errors-spki-list=${spki}`], false);
  results.push([`spki-list only (${e.ok ? 'connects' : 'refused'})`, true, JSON.stringify(e)]);
  const d = await tryConnect([], true, true);
  results.push(['wrong-hash', !d.ok, JSON.stringify(d)]);
} catch (e) {
  results.push(['run', false, e.stack || String(e)]);
} finally {
  if (browser) await browser.close().catch(() => {});
  await stack.stop();
}
for (const [name, ok, detail] of results) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
const failed = results.filter((r) => !r[1]).length;
console.log(`moq-cert: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
