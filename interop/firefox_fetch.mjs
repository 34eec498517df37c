#!/usr/bin/env node
// Headless Firefox as an interop client (interop/run.sh): opens URL (a page
// of interop/fetch.html) in a fresh profile that trusts CERT (web/e2e/firefox.js)
// and prints the page's result line (the JSON after "H3LIVE_RESULT ") to
// stdout, and "page loaded" to stderr once the page's script has run.  Exits 1
// without a result within --timeout seconds.
//
// The interop server and the live cell's origin listen for QUIC only on the
// h3 port (no TCP there, so no Alt-Svc to learn h3 from): the testing pref
// network.http.http3.alt-svc-mapping-for-testing sends every request to
// --h3 HOST:PORT over h3 from the first one.  It maps every port of HOST, so it
// is only for runs like this one, where nothing else of HOST is visited.
//
// Usage: node interop/firefox_fetch.mjs --cert CERT --h3 localhost:PORT [--timeout 60] URL
import { cli } from '../web/e2e/cli.js';
import { launch } from '../web/e2e/firefox.js';

const { values: o, positionals: [url] } = cli(import.meta.url, {
  cert: { type: 'string' }, h3: { type: 'string' }, timeout: { type: 'string', default: '60' },
}, { allowPositionals: true });
if (!url || !o.cert || !o.h3) {
  console.error('firefox_fetch: --cert, --h3 and a URL are required (--help)');
  process.exit(2);
}
const [host, port] = o.h3.split(':');
const log = (m) => console.error(`[firefox_fetch] ${m}`);

let browser = null;
let code = 1;
try {
  browser = await launch({ cert: o.cert, prefs: { 'network.http.http3.alt-svc-mapping-for-testing': `${host};h3=:${port}` }, log });
  log(`browser ${await browser.version()}`);
  const page = await browser.newPage();
  const result = new Promise((resolve) => {
    page.on('console', (m) => {
      if (m.text().startsWith('H3LIVE_RESULT ')) resolve(m.text().slice('H3LIVE_RESULT '.length));
      // A live read's first bytes: interop/run.sh then sends the rest of the upload.
      if (m.text().startsWith('H3LIVE_FIRST ')) log(m.text());
    });
  });
  // Said on stderr once the page's script has run (it starts its fetches right away):
  // interop/run.sh waits for this line before it starts the upload of a live segment.
  page.goto(url, { waitUntil: 'domcontentloaded', timeout: 0 })
    .then(() => log('page loaded: its fetches have started'))
    .catch((e) => log(`navigation: ${e.message}`));
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), Number(o.timeout) * 1000));
  const line = await Promise.race([result, timeout]);
  if (line) {
    console.log(line);
    code = 0;
  } else {
    log(`no result within ${o.timeout} s`);
  }
} catch (e) {
  log(`error: ${e.message}`);
}
if (browser) await browser.close().catch(() => {});
process.exit(code);
