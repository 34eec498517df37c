// Headless Chromium for the browser tests (web/e2e/*) and the A/B driver
// (scripts/ab/driver.mjs), driven by puppeteer-core on the installed Chromium
// (no browser download).  One place for the flags every run uses; each caller
// adds its own (QUIC forcing, SPKI pin, resolver mapping).
import { existsSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

export function findChromium() {
  const c = [process.env.CHROME, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome',
    '/usr/bin/google-chrome-stable', '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
    '/Applications/Chromium.app/Contents/MacOS/Chromium'];
  return c.find((p) => p && existsSync(p));
}

/**
 * Launch headless Chromium with exactly these flags plus `extraArgs` (given
 * last: Chromium keeps the last value of a repeated switch).  Puppeteer's own
 * default flags are left out (ignoreDefaultArgs) so that a run sees the same
 * browser as before; it adds only --remote-debugging-port=0 and a temporary
 * --user-data-dir, which it removes on close().
 */
export async function launch(extraArgs = [], { executable = findChromium(), log = () => {} } = {}) {
  if (!executable) throw new Error('Chromium not found (apt-get install chromium, or set CHROME=)');
  const args = [
    '--headless=new', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required', '--mute-audio',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
    '--remote-debugging-port=0', '--window-size=1280,800',
    ...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
    ...extraArgs, 'about:blank',
  ];
  log(`chromium: ${executable} ${args.map((a) => (/[ *,]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  return puppeteer.launch({
    executablePath: executable,
    args,
    ignoreDefaultArgs: true,
    // The window's own size (--window-size), not puppeteer's 800x600 emulation.
    defaultViewport: null,
    // The callers stop their origin and encoder on a signal, then close the browser.
    handleSIGINT: false,
    handleSIGTERM: false,
    // No Network/Audits domains: the page's requests are not reported over CDP (nothing reads them).
    networkEnabled: false,
    issuesEnabled: false,
  });
}

/**
 * What a page logged: `console` ({ type, text }: console calls and browser log
 * entries) and `exceptions` (uncaught errors), collected from now on.  Works
 * for Firefox (firefox.js) too, which reports the browser's own errors (e.g.
 * a cross-origin request that failed) as the same kind of WebDriver BiDi log
 * entry as an uncaught exception, both page errors to puppeteer: only the
 * exception carries script frames, so an entry without any goes to `console`
 * as type 'error', as Chromium reports it.
 */
export function watch(page) {
  const seen = { console: [], exceptions: [] };
  page.on('console', (m) => seen.console.push({ type: m.type(), text: `${m.text()} ${m.location().url || ''}`.trim() }));
  page.on('pageerror', (e) => {
    const text = e.stack || e.message || String(e);
    if (e instanceof Error && !/\n\s+at /.test(e.stack || '')) seen.console.push({ type: 'error', text });
    else seen.exceptions.push(text);
  });
  return seen;
}

/** A copy of the player page's window.h3liveStats (web/player.js), or null. */
export function playerStats(page) {
  return page.evaluate('window.h3liveStats ? JSON.parse(JSON.stringify(window.h3liveStats)) : null').catch(() => null);
}

/**
 * Read playerStats every 0.5 s until `pred(stats)` holds or `ms` pass:
 * { s: the last stats (or null), ok }.
 */
export async function waitForStats(page, pred, ms) {
  const end = Date.now() + ms;
  let s = null;
  while (Date.now() < end) {
    s = await playerStats(page);
    if (s && pred(s)) return { s, ok: true };
    await new Promise((r) => setTimeout(r, 500));
  }
  return { s, ok: false };
}

/**
 * Navigate and return once the new document commits, as a bare Page.navigate
 * does (waitUntil [] waits for no load event: on an impaired path the page's
 * scripts can take longer than puppeteer's load timeout, and the callers judge
 * the page by what it measures).  A failed navigation is logged, not thrown.
 */
export async function open(page, url, log = () => {}) {
  try {
    await page.goto(url, { waitUntil: [], timeout: 0 });
  } catch (e) {
    log(`navigation to ${url} failed: ${e.message}`);
  }
}
