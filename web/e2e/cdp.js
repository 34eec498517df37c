// Minimal Chrome DevTools Protocol client over the `ws` package: launch a
// headless Chromium, open pages, evaluate expressions, take screenshots.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function findChromium() {
  const c = [process.env.CHROME, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome',
    '/usr/bin/google-chrome-stable', '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
    '/Applications/Chromium.app/Contents/MacOS/Chromium'];
  return c.find((p) => p && existsSync(p));
}

export class Browser {
  /** Launch headless Chromium with extra flags; resolves once CDP is connected. */
  static async launch(extraArgs = [], { executable = findChromium(), log = () => {} } = {}) {
    if (!executable) throw new Error('Chromium not found (apt-get install chromium, or set CHROME=)');
    const profile = mkdtempSync(join(tmpdir(), 'h3live-chrome-'));
    const args = [
      '--headless=new', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required', '--mute-audio',
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
      `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1280,800',
      ...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
      ...extraArgs, 'about:blank',
    ];
    log(`chromium: ${executable} ${args.map((a) => (/[ *,]/.test(a) ? `'${a}'` : a)).join(' ')}`);
    const proc = spawn(executable, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const portFile = join(profile, 'DevToolsActivePort');
    for (let i = 0; i < 200 && !existsSync(portFile); i++) {
      if (proc.exitCode !== null) break;
      await sleep(100);
    }
    if (!existsSync(portFile)) {
      proc.kill('SIGKILL');
      throw new Error(`Chromium did not start: ${stderr}`);
    }
    await sleep(50);
    const [port, path] = readFileSync(portFile, 'utf8').trim().split('\n');
    const b = new Browser(proc, profile);
    await b.connect(`ws://127.0.0.1:${port}${path}`);
    return b;
  }

  constructor(proc, profile) {
    this.proc = proc;
    this.profile = profile;
    this.id = 0;
    this.pending = new Map();
    this.listeners = [];
  }

  connect(url) {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
      this.ws.on('open', resolve);
      this.ws.on('error', reject);
      this.ws.on('message', (data) => {
        const msg = JSON.parse(data.toString());
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          if (!p) return;
          this.pending.delete(msg.id);
          if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
          else p.resolve(msg.result);
        } else {
          for (const l of this.listeners) l(msg);
        }
      });
    });
  }

  send(method, params = {}, sessionId = undefined) {
    const id = ++this.id;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify(msg));
    });
  }

  on(fn) { this.listeners.push(fn); }

  /** Open a new page; returns a Page bound to its CDP session. */
  async newPage() {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, targetId, sessionId);
    await page.send('Runtime.enable');
    await page.send('Page.enable');
    await page.send('Log.enable');
    return page;
  }

  async close() {
    try { await this.send('Browser.close'); } catch { /* already gone */ }
    for (let i = 0; i < 30 && this.proc.exitCode === null; i++) await sleep(100);
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
    try { this.ws.close(); } catch { /* ignore */ }
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  constructor(browser, targetId, sessionId) {
    this.browser = browser;
    this.targetId = targetId;
    this.sessionId = sessionId;
    this.console = [];
    this.exceptions = [];
    browser.on((msg) => {
      if (msg.sessionId !== sessionId) return;
      if (msg.method === 'Runtime.consoleAPICalled') {
        const text = msg.params.args.map((a) => (a.value !== undefined ? String(a.value) : a.description || '')).join(' ');
        this.console.push({ type: msg.params.type, text });
      } else if (msg.method === 'Runtime.exceptionThrown') {
        const d = msg.params.exceptionDetails;
        this.exceptions.push((d.exception && d.exception.description) || d.text);
      } else if (msg.method === 'Log.entryAdded') {
        const e = msg.params.entry;
        this.console.push({ type: `log-${e.level}`, text: `${e.text} ${e.url || ''}` });
      }
    });
  }

  send(method, params = {}) { return this.browser.send(method, params, this.sessionId); }

  async goto(url) { await this.send('Page.navigate', { url }); }

  /** Evaluate an expression in the page; returns its JSON value. */
  async eval(expression) {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`eval ${expression}: ${r.exceptionDetails.text}`);
    return r.result.value;
  }

  async screenshot({ width = 1280, height = 800, format = 'png', quality } = {}) {
    await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
    const r = await this.send('Page.captureScreenshot', { format, ...(quality ? { quality } : {}) });
    return Buffer.from(r.data, 'base64');
  }

  async close() {
    try { await this.browser.send('Target.closeTarget', { targetId: this.targetId }); } catch { /* ignore */ }
  }
}
