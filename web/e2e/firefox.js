// Headless Firefox (Debian's firefox-esr, HTTP/3 by neqo) for the browser
// tests and the A/B driver, driven by puppeteer-core over WebDriver BiDi on
// the installed browser (no browser download).  The counterpart of
// chromium.js: one place for the profile every run uses.
//
// A fresh profile per launch, made so that Firefox uses HTTP/3 to an origin
// with a locally generated certificate, without a click (docs/firefox.md has
// the same steps for desktop Firefox and what happens without each):
//   - the origin's certificate is trusted in the profile's own NSS store
//     (certutil from libnss3-tools, trust flags C,,: a trusted peer for TLS
//     servers).  Without it nothing loads (certificate error page).
//   - network.http.http3.disable_when_third_party_roots_found = false: by
//     default Firefox refuses QUIC to any server whose chain ends at a root
//     that is not built in (a locally added one included) and silently stays
//     on HTTP/2: every response h2, no error.
// That is all: Firefox finds the h3 listener through the Alt-Svc header of
// the origin's TCP listener on the same port (the first document comes over
// h2, later requests over h3 once the QUIC connection is up; warmH3() waits
// for that before a test).  network.http.http3.alt-svc-mapping-for-testing
// would give h3 from the first request but maps every port of the host to
// h3, which would turn the HTTP/2 and HTTP/1.1 arms of the compare page into
// HTTP/3: it is not used.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export function findFirefox() {
  const c = [process.env.FIREFOX, '/usr/bin/firefox-esr', '/usr/bin/firefox', '/Applications/Firefox.app/Contents/MacOS/firefox'];
  return c.find((p) => p && existsSync(p));
}

/** Preferences every run sets (on top of puppeteer's own test profile). */
export const PREFS = {
  // HTTP/3 to an origin whose certificate is trusted only in this profile (see above).
  'network.http.http3.disable_when_third_party_roots_found': false,
};

/** A new profile directory whose NSS store trusts `certFile` (PEM) for TLS servers. */
export function makeProfile(certFile) {
  const dir = mkdtempSync(join(tmpdir(), 'h3live-firefox-'));
  try {
    execFileSync('certutil', ['-N', '-d', `sql:${dir}`, '--empty-password'], { stdio: 'pipe' });
    execFileSync('certutil', ['-A', '-d', `sql:${dir}`, '-n', 'h3live', '-t', 'C,,', '-i', certFile], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    if (e.code === 'ENOENT') throw new Error('certutil not found (apt-get install libnss3-tools)');
    throw new Error(`certutil failed: ${e.stderr || e.message}`);
  }
  return dir;
}

/**
 * Launch headless Firefox on a fresh profile that trusts `cert` (PEM file),
 * with PREFS plus `prefs`.  `resolve: { host, ip }` sends every host name to
 * ip (Chromium: --host-resolver-rules MAP), for a test host name in a network
 * namespace.  The profile is removed when the browser closes.
 */
export async function launch({ cert, prefs = {}, resolve = null, executable = findFirefox(), log = () => {} } = {}) {
  if (!executable) throw new Error('Firefox not found (apt-get install firefox-esr, or set FIREFOX=)');
  if (!cert) throw new Error('firefox.launch: the origin certificate (cert) is required');
  const profile = makeProfile(cert);
  const all = { ...PREFS, ...(resolve ? { 'network.dns.forceResolve': resolve.ip } : {}), ...prefs };
  log(`firefox: ${executable} --headless --profile ${profile}; prefs ${JSON.stringify(all)}`);
  let browser;
  try {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: executable,
      headless: true,
      args: ['--profile', profile],
      extraPrefsFirefox: all,
      // The same viewport as chromium.js's --window-size.
      defaultViewport: { width: 1280, height: 800 },
      handleSIGINT: false,
      handleSIGTERM: false,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  // puppeteer removes only the profiles it made itself; Firefox writes to it until it exits.
  const proc = browser.process();
  const removeProfile = () => rmSync(profile, { recursive: true, force: true });
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.once('exit', removeProfile);
  else removeProfile();
  // Firefox decodes H.264 and AAC through the system's ffmpeg libraries (Debian's
  // firefox-esr only recommends libavcodec; the ffmpeg package brings it): without
  // them the players cannot start, so say so here rather than as a player timeout.
  const page = await browser.newPage();
  const h264 = await page.evaluate(`MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"')`).catch(() => null);
  await page.close();
  if (!h264) {
    await browser.close();
    throw new Error('Firefox cannot play H.264 in MSE (MediaSource.isTypeSupported: false): install libavcodec (apt-get install ffmpeg, or libavcodec59)');
  }
  return browser;
}

/**
 * Make `page` use HTTP/3 to `origin` from its next navigation on: open a small
 * resource of the origin (over h2: that response carries Alt-Svc) and fetch it
 * again until Resource Timing says h3 (Firefox sets up the QUIC connection in
 * the background).  The alternative service is remembered per browser context.
 * Throws after `timeoutMs`.  Returns the number of fetches it took.
 */
export async function warmH3(page, origin, { timeoutMs = 15000, log = () => {} } = {}) {
  await page.goto(`${origin}/healthz`, { waitUntil: 'load', timeout: timeoutMs });
  const got = await page.evaluate(async (deadline) => {
    for (let i = 1; ; i++) {
      const url = `/healthz?h3warm=${i}`;
      try {
        await (await fetch(url, { cache: 'no-store' })).text();
      } catch {
        /* a fetch that fails while the QUIC connection starts: try again */
      }
      const e = performance.getEntriesByName(new URL(url, location.href).href).pop();
      if (e && e.nextHopProtocol === 'h3') return { n: i };
      if (Date.now() > deadline) return { n: i, last: e ? e.nextHopProtocol : 'none' };
      await new Promise((r) => setTimeout(r, 100));
    }
  }, Date.now() + timeoutMs);
  if (got.last !== undefined) throw new Error(`Firefox did not switch to h3 on ${origin} (last response ${got.last} after ${got.n} fetches)`);
  log(`firefox: ${origin} answers over h3 (fetch ${got.n})`);
  return got.n;
}
