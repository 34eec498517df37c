// Either browser for the browser tests and the A/B driver: headless Chromium
// (chromium.js, HTTP/3 by Chromium's QUIC stack) or headless Firefox
// (firefox.js, HTTP/3 by neqo), launched so that it uses HTTP/3 to an origin
// with a locally generated certificate, plus what a test needs to check that
// it really did (the protocol of every response).
import { launch as launchChromium, open, watch } from './chromium.js';
import { launch as launchFirefox, warmH3 } from './firefox.js';
import { spkiOf } from './stack.js';

export { open, watch };
export const BROWSERS = ['chromium', 'firefox'];

/**
 * Launch `name` (chromium | firefox) trusting the origin certificate `cert`
 * (PEM file) and using HTTP/3 to `h3` ("host:port", the origin's h3 listener;
 * Chromium is forced onto QUIC there, Firefox finds it by Alt-Svc).
 * `resolve: { host, ip }` maps the test host name to an address (otherwise
 * only localhost resolves).  `chromiumArgs`: more Chromium switches.
 */
export async function launchBrowser(name, { cert, h3, resolve = null, chromiumArgs = [], log = () => {} }) {
  if (name === 'firefox') return launchFirefox({ cert, resolve, log });
  if (name !== 'chromium') throw new Error(`unknown browser ${name} (${BROWSERS.join(', ')})`);
  const flags = [`--origin-to-force-quic-on=${h3}`, `--ignore-certificate-errors-spki-list=${spkiOf(cert)}`];
  // After chromium.js's own rule: Chromium keeps the last value of a switch.
  if (resolve) flags.push(`--host-resolver-rules=MAP ${resolve.host} ${resolve.ip}, MAP * ~NOTFOUND`);
  return launchChromium([...flags, ...chromiumArgs], { log });
}

/**
 * Before `page` navigates to a page of `h3Origin` (https://host:port): in
 * Firefox, wait until that origin answers over h3 in the page's browser
 * context (Alt-Svc learned, QUIC connection up), so that the page's own
 * requests go h3 from the first one, as they do in Chromium with QUIC forced.
 * Chromium: nothing to do.
 */
export async function prepareH3(name, page, h3Origin, log = () => {}) {
  if (name === 'firefox') await warmH3(page, h3Origin, { log });
}

// Installed before any page script runs: a PerformanceObserver gets every
// resource entry as it is added, so the page clearing its Resource Timing
// buffer (the players do) hides nothing from it.
const OBSERVER = `(() => {
  const seen = (window.__h3liveProtocols = { document: null, responses: [] });
  const nav = () => { const n = performance.getEntriesByType('navigation')[0]; if (n) seen.document = n.nextHopProtocol || 'none'; };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) seen.responses.push([e.name, e.nextHopProtocol || 'none']);
  }).observe({ type: 'resource', buffered: true });
  addEventListener('DOMContentLoaded', nav);
})()`;

/** Record the protocol of every response `page` gets from its next navigation on. */
export async function observeProtocols(page) {
  await page.evaluateOnNewDocument(OBSERVER);
}

const MEDIA = /\.(m4s|mpd|m3u8)(\?|$)/;

/**
 * What observeProtocols() saw for the responses of `origin` (scheme://host:port):
 * { document, media: { protocol: n }, other: { protocol: n } } where media are the
 * manifests, playlists and segments (protocol 'none': aborted before a response).
 */
export async function protocolsSeen(page, origin) {
  const seen = await page.evaluate('window.__h3liveProtocols ? JSON.parse(JSON.stringify(window.__h3liveProtocols)) : null').catch(() => null);
  const out = { document: seen ? seen.document : null, media: {}, other: {} };
  for (const [url, p] of seen ? seen.responses : []) {
    if (!url.startsWith(`${origin}/`)) continue;
    const k = MEDIA.test(url) ? 'media' : 'other';
    out[k][p] = (out[k][p] || 0) + 1;
  }
  return out;
}
