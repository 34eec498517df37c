// The live stack the browser tests play against: an h3live origin on ports
// the kernel picks (cleartext ingest, h3 + TLS, HTTPS-h1, HTTPS-h2, its own
// certificate) and the real timecoded encoder (scripts/encoder.sh) pushing to
// it.  Used by web/e2e/e2e.js (player page), compare-shots.js (compare page),
// abr.js (ladder) and restart.js (restarts, soak), so every browser test
// starts the same real components the same way.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is web/e2e/stack.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------- ports
/**
 * The ports a server started with `--ports-file FILE` (h3live serve, front, interop-server, all
 * listeners on port 0) wrote: { http, h3, https, https_h1, https_h2 } (or { quic }). Waits up to
 * `timeoutMs` for the file; fails early if child process `p` exits. The server binds port 0 itself,
 * so no port is picked here and released for another program to take first.
 */
export async function readPorts(file, timeoutMs, p = null) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (p && gone(p)) throw new Error(`exited before writing ${file}`);
    if (existsSync(file)) {
      const ports = {};
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const [k, v] = line.split('=');
        if (k && v) ports[k] = Number(v);
      }
      return ports;
    }
    await sleep(50);
  }
  throw new Error(`no ${file} after ${timeoutMs} ms`);
}

/** Whether child process `p` has exited. */
export const gone = (p) => p.exitCode !== null || p.signalCode !== null;

/**
 * Poll `url` until it answers 2xx (true) or `timeoutMs` passes (false): one request every
 * `everyMs`, each given `fetchMs`; with `p`, false as soon as that child process has exited.
 */
export async function httpOk(url, timeoutMs, { everyMs = 200, fetchMs = 1000, p = null } = {}) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && !(p && gone(p))) {
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), fetchMs);
      const r = await fetch(url, { signal: ctl.signal });
      clearTimeout(timer);
      if (r.ok) {
        ctl.abort();
        return true;
      }
    } catch {
      /* not yet */
    }
    await sleep(everyMs);
  }
  return false;
}

/** The origin's /streams view of `stream` at `base`, or null. */
export async function streamInfo(base, stream) {
  try {
    const r = await fetch(`${base}/streams`, { signal: AbortSignal.timeout(1000) });
    if (!r.ok) return null;
    return (await r.json()).streams.find((s) => s.name === stream) || null;
  } catch {
    return null;
  }
}

/** Wait (at most `timeoutMs`) until the origin at `base` holds a media segment of `stream`. */
export async function segmentStarted(base, stream, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const s = await streamInfo(base, stream);
    if (s && s.objects.some((o) => o.name.startsWith('chunk-'))) return true;
    await sleep(100);
  }
  return false;
}

/** A suite's checks: `check(name, ok, detail)` logs PASS/FAIL through `log` and records
 * `{ name, ok }` in `results`. */
export function checks(log) {
  const results = [];
  const check = (name, ok, detail = '') => {
    results.push({ name, ok });
    log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ` — ${detail}` : ''}`);
  };
  return { results, check };
}

/** Wait until child process `p` has exited, at most `timeoutMs`; true if it has. */
export function exited(p, timeoutMs) {
  if (gone(p)) return Promise.resolve(true);
  return new Promise((res) => {
    const timer = setTimeout(() => res(false), timeoutMs);
    p.once('exit', () => {
      clearTimeout(timer);
      res(true);
    });
  });
}

/** Stop child process `p`: SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopChild(p, graceMs = 8000) {
  if (gone(p)) return;
  p.kill('SIGTERM');
  if (!(await exited(p, graceMs))) {
    p.kill('SIGKILL');
    await exited(p, 5000);
  }
}

/** Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's SPKI list). */
export function spkiOf(certFile) {
  const pub = execFileSync('openssl', ['x509', '-in', certFile, '-pubkey', '-noout']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
}

/**
 * Child processes (origin, encoder, load tools) in a scratch directory; stop() ends them
 * newest first (SIGTERM, then SIGKILL after 8 s) and removes the directory
 * unless keepLogs.
 */
export class Stack {
  constructor({ bin = join(ROOT, 'target', 'release', 'h3live'), log = console.log, keepLogs = false, root = ROOT } = {}) {
    /** h3live binary under test. */
    this.bin = bin;
    /** Checkout whose web/ the origin serves and whose scripts/encoder.sh runs. */
    this.root = root;
    /** Progress logger. */
    this.log = log;
    /** Keep the scratch directory (logs, certs) after stop(). */
    this.keepLogs = keepLogs;
    /** Scratch directory: certificates and one log file per child. */
    this.work = mkdtempSync(join(tmpdir(), 'h3live-e2e-'));
    /** Started children, oldest first: { name, p, out, logFile }. */
    this.children = [];
    /** Listener ports once startOrigin() ran: { http, tls (h3 + TLS), h1, h2 }. */
    this.ports = null;
    /** The origin's certificate (PEM file) once startOrigin() ran. */
    this.cert = null;
    /** Certificate SPKI hash for --ignore-certificate-errors-spki-list. */
    this.spki = null;
    /** Cleartext base URL (ingest, /time). */
    this.base = null;
    /** `h3live serve` arguments with the ports the first origin got, for startOriginAgain(). */
    this.originArgs = null;
  }

  /** Start `cmd` as child `name` (output kept, written to NAME-PID.log when it exits). */
  start(name, cmd, args, env = {}) {
    const out = [];
    const p = spawn(cmd, args, { cwd: this.root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const logFile = join(this.work, `${name}-${p.pid}.log`);
    const sink = (d) => {
      out.push(d);
    };
    p.stdout.on('data', sink);
    p.stderr.on('data', sink);
    p.on('exit', () => writeFileSync(logFile, Buffer.concat(out)));
    this.children.push({ name, p, out, logFile });
    this.log(`started ${name} (pid ${p.pid}): ${cmd} ${args.join(' ')}`);
    return p;
  }

  /** The latest child started as `name`, or undefined. */
  child(name) {
    return this.children.filter((x) => x.name === name).pop();
  }

  outputOf(name) {
    const c = this.child(name);
    return c ? Buffer.concat(c.out).toString() : '';
  }

  /**
   * Origin on ports the kernel picks (it binds port 0 and reports them), a fresh certificate,
   * serving web/.  With `moq: true` also the MoQ endpoint (WebTransport on UDP, its read-only
   * HTTP twin on TCP, same port number: this.ports.moq).  `extra`: more `h3live serve`
   * arguments (e.g. --state-dir).
   */
  async startOrigin({ moq = false, extra = [] } = {}) {
    if (!existsSync(this.bin)) throw new Error(`${this.bin} not found: run cargo build --release first`);
    if (!existsSync(join(this.root, 'web', 'node_modules', 'dashjs'))) throw new Error('web/node_modules missing: run npm ci in web/');
    const certDir = join(this.work, 'certs');
    execFileSync(this.bin, ['cert', '--out', certDir], { stdio: 'ignore' });
    this.cert = join(certDir, 'cert.pem');
    this.spki = spkiOf(this.cert);
    const args = (p) => ['serve', '--http', `127.0.0.1:${p.http}`, '--h3', `[::]:${p.tls}`, '--https', `[::]:${p.tls}`,
      '--https-h1', `[::]:${p.h1}`, '--https-h2', `[::]:${p.h2}`,
      '--cert', this.cert, '--key', join(certDir, 'key.pem'), '--web-dir', join(this.root, 'web'),
      ...(moq ? ['--moq', `[::]:${p.moq}`] : []), ...extra];
    // Every listener on port 0; h3 and https get one port between them, the
    // MoQ endpoint and its TCP twin another.
    const portsFile = join(this.work, 'origin.ports');
    const p = this.start('origin', this.bin, [...args({ http: 0, tls: 0, h1: 0, h2: 0, moq: 0 }), '--ports-file', portsFile]);
    const got = await readPorts(portsFile, 15000, p).catch((e) => {
      throw new Error(`origin: ${e.message}\n${this.outputOf('origin')}`);
    });
    this.ports = { http: got.http, tls: got.https, h1: got.https_h1, h2: got.https_h2, moq: moq ? got.moq : null };
    this.originArgs = args(this.ports);
    const { http, tls, h1, h2 } = this.ports;
    this.log(`ports: http ${http}, h3+tls ${tls}, https-h1 ${h1}, https-h2 ${h2}${moq ? `, moq ${this.ports.moq}` : ''}; spki ${this.spki}`);
    this.base = `http://127.0.0.1:${http}`;
    if (!(await httpOk(`${this.base}/time`, 15000))) {
      throw new Error(`origin did not answer ${this.base}/time:\n${this.outputOf('origin')}`);
    }
  }

  /**
   * A new origin process on the first one's ports, certificate and arguments (after it was
   * stopped); resolves once its /healthz answers (polled every 50 ms, so the caller can time the
   * restart). Fails at once if the process exits, and after `timeoutMs` otherwise, with its output
   * either way (a port taken while the origin was down, a state directory it cannot read).
   */
  async startOriginAgain(timeoutMs = 15000) {
    const p = this.start('origin', this.bin, this.originArgs);
    if (await httpOk(`${this.base}/healthz`, timeoutMs, { everyMs: 50, fetchMs: 300, p })) return p;
    const how = gone(p) ? `exited (code ${p.exitCode}, signal ${p.signalCode})` : `not answering /healthz after ${timeoutMs} ms`;
    throw new Error(`the restarted origin (pid ${p.pid}) ${how}; its output:\n${this.outputOf('origin')}`);
  }

  /**
   * The real encoder pushing `stream` (extra scripts/encoder.sh options in `args`); waits until it is
   * live: the manifest is served and a first media segment is being uploaded (so a player joins a
   * running stream).
   */
  async startEncoder(stream, args = []) {
    this.start('encoder', join(this.root, 'scripts', 'encoder.sh'), ['--origin', this.base, '--stream', stream, ...args]);
    if (!(await httpOk(`${this.base}/live/${stream}/manifest.mpd`, 20000))) {
      throw new Error(`manifest not live:\n${this.outputOf('encoder')}\n${this.outputOf('origin')}`);
    }
    if (!(await segmentStarted(this.base, stream, 20000))) {
      throw new Error(`no media segment uploaded:\n${this.outputOf('encoder')}\n${this.outputOf('origin')}`);
    }
    this.log('manifest is live, a first segment is being uploaded');
  }

  /** Chromium flags that make it use h3 to this origin (QUIC forced, certificate trusted by SPKI). */
  chromiumFlags() {
    return [`--origin-to-force-quic-on=localhost:${this.ports.tls}`, `--ignore-certificate-errors-spki-list=${this.spki}`];
  }

  /** browser.js launchBrowser() options for this origin: its certificate and h3 listener. */
  browserOptions() {
    return { cert: this.cert, h3: `localhost:${this.ports.tls}` };
  }

  async stop() {
    for (const c of [...this.children].reverse()) await stopChild(c.p);
    if (!this.keepLogs) rmSync(this.work, { recursive: true, force: true });
    else this.log(`logs kept in ${this.work}`);
  }
}
