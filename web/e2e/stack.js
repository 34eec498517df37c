// The live stack the browser tests play against: an h3live origin on free
// ports (cleartext ingest, h3 + TLS, HTTPS-h1, HTTPS-h2, its own certificate)
// and the real timecoded encoder (scripts/encoder.sh) pushing to it.  Used by
// web/e2e/e2e.js (player page) and web/e2e/compare-shots.js (compare page), so
// every browser test starts the same real components the same way.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is web/e2e/stack.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- free ports
export function freeTcp(host = '127.0.0.1') {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}
function udpFree(port) {
  return new Promise((res) => {
    const s = createSocket('udp6');
    s.once('error', () => res(false));
    s.bind(port, '::', () => s.close(() => res(true)));
  });
}
/** A port free for both TCP and UDP (the h3 listener shares its port with TLS). */
export async function freeTcpUdp() {
  for (let i = 0; i < 20; i++) {
    const p = await freeTcp('::').catch(() => freeTcp());
    if (await udpFree(p)) return p;
  }
  throw new Error('no free TCP+UDP port');
}

/** Poll `url` until it answers 2xx or `timeoutMs` passes. */
export async function httpOk(url, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 1000);
      const r = await fetch(url, { signal: ctl.signal });
      clearTimeout(timer);
      if (r.ok) {
        ctl.abort();
        return true;
      }
    } catch {
      /* not yet */
    }
    await sleep(200);
  }
  return false;
}

/** Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's SPKI list). */
export function spkiOf(certFile) {
  const pub = execFileSync('openssl', ['x509', '-in', certFile, '-pubkey', '-noout']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
}

/**
 * Child processes (origin, encoder) in a scratch directory; stop() ends them
 * newest first (SIGTERM, then SIGKILL after 8 s) and removes the directory
 * unless keepLogs.
 */
export class Stack {
  constructor({ bin = join(ROOT, 'target', 'release', 'h3live'), log = console.log, keepLogs = false } = {}) {
    /** h3live binary under test. */
    this.bin = bin;
    /** Progress logger. */
    this.log = log;
    /** Keep the scratch directory (logs, certs) after stop(). */
    this.keepLogs = keepLogs;
    /** Scratch directory: certificates and one log file per child. */
    this.work = mkdtempSync(join(tmpdir(), 'h3live-e2e-'));
    /** Started children: { name, p, out, logFile }. */
    this.children = [];
    /** Listener ports once startOrigin() ran: { http, tls (h3 + TLS), h1, h2 }. */
    this.ports = null;
    /** The origin's certificate (PEM file) once startOrigin() ran. */
    this.cert = null;
    /** Certificate SPKI hash for --ignore-certificate-errors-spki-list. */
    this.spki = null;
    /** Cleartext base URL (ingest, /time). */
    this.base = null;
  }

  start(name, cmd, args, env = {}) {
    const logFile = join(this.work, `${name}.log`);
    const out = [];
    const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

  outputOf(name) {
    const c = this.children.find((x) => x.name === name);
    return c ? Buffer.concat(c.out).toString() : '';
  }

  /**
   * Origin on free ports with a fresh certificate, serving web/.  With
   * `moq: true` also the MoQ endpoint (WebTransport on UDP, its read-only HTTP
   * twin on TCP, same port number: this.ports.moq).
   */
  async startOrigin({ moq = false } = {}) {
    if (!existsSync(this.bin)) throw new Error(`${this.bin} not found: run cargo build --release first`);
    if (!existsSync(join(ROOT, 'web', 'node_modules', 'dashjs'))) throw new Error('web/node_modules missing: run npm ci in web/');
    const http = await freeTcp();
    const tls = await freeTcpUdp();
    const h1 = await freeTcp('::').catch(() => freeTcp());
    const h2 = await freeTcp('::').catch(() => freeTcp());
    this.ports = { http, tls, h1, h2, moq: moq ? await freeTcpUdp() : null };
    const certDir = join(this.work, 'certs');
    execFileSync(this.bin, ['cert', '--out', certDir], { stdio: 'ignore' });
    const cert = join(certDir, 'cert.pem');
    const key = join(certDir, 'key.pem');
    this.cert = cert;
    this.spki = spkiOf(cert);
    this.log(`ports: http ${http}, h3+tls ${tls}, https-h1 ${h1}, https-h2 ${h2}; spki ${this.spki}`);
    this.start('origin', this.bin, ['serve', '--http', `127.0.0.1:${http}`, '--h3', `[::]:${tls}`,
      '--https', `[::]:${tls}`, '--https-h1', `[::]:${h1}`, '--https-h2', `[::]:${h2}`,
      '--cert', cert, '--key', key, '--web-dir', join(ROOT, 'web'),
      ...(moq ? ['--moq', `[::]:${this.ports.moq}`] : []),
      // Its own state directory: not the per-user default, which another run on the same port would restore.
      '--state-dir', join(this.work, 'state')]);
    this.base = `http://127.0.0.1:${http}`;
    if (!(await httpOk(`${this.base}/time`, 15000))) {
      throw new Error(`origin did not answer ${this.base}/time:\n${this.outputOf('origin')}`);
    }
  }

  /** The real encoder pushing `stream` (extra scripts/encoder.sh options in `args`); waits until it is live. */
  async startEncoder(stream, args = []) {
    this.start('encoder', join(ROOT, 'scripts', 'encoder.sh'), ['--origin', this.base, '--stream', stream, ...args]);
    if (!(await httpOk(`${this.base}/live/${stream}/manifest.mpd`, 20000))) {
      throw new Error(`manifest not live:\n${this.outputOf('encoder')}\n${this.outputOf('origin')}`);
    }
    this.log('manifest is live');
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
    for (const c of [...this.children].reverse()) {
      if (c.p.exitCode === null && c.p.signalCode === null) {
        c.p.kill('SIGTERM');
        for (let i = 0; i < 80 && c.p.exitCode === null && c.p.signalCode === null; i++) await sleep(100);
        if (c.p.exitCode === null && c.p.signalCode === null) c.p.kill('SIGKILL');
      }
    }
    if (!this.keepLogs) rmSync(this.work, { recursive: true, force: true });
    else this.log(`logs kept in ${this.work}`);
  }
}
