// The Media over QUIC arm of the h3live pages (player page with ?format=moq,
// compare page arm "moq"): the MoQ project's own player, the <moq-watch>
// element of npm @moq/watch (moq-lite over WebTransport, WebCodecs decoding,
// frames painted on a <canvas>), measured by the same rules as the <video>
// arms (./measure.js):
//   - glass-to-glass: for every frame the element paints, the timecode strip is
//     decoded from the canvas pixels it painted (./timecode.js); latency = the
//     wall clock at which that canvas update is expected on screen (the
//     animation frame that painted it plus one display refresh, as
//     requestVideoFrameCallback's expectedDisplayTime for a <video>) minus the
//     encoder clock in the picture;
//   - arrival: the wall clock at which the element's decode loop received the
//     frame from the network (moq-lite delivered the whole CMAF fragment),
//     minus the same encoder clock: the network's share; glass minus arrival
//     is the player pipeline's (jitter buffer, decoder, paint);
//   - stalls: the element has no 'waiting' event: a stall is a picture not
//     updated for more than STALL_GAP_MS after the first frame, its duration
//     the whole gap;
//   - restarts, without a page reload (p.moq.recovery), by events:
//       * a new broadcast generation (encoder restart: new init segments,
//         media times from 0 again): the element cannot follow it by itself
//         (its decoder drops every frame older than the last one painted, and
//         holds a new rendition back until it catches up with the old
//         picture), so the page starts a new element (new session,
//         subscriptions, decoder and playout clock; the counters go on) as soon
//         as the catalog carries a new init segment or a video frame's media
//         time goes back;
//       * a session that ends (the WebTransport session's `closed`, e.g. the
//         origin's QUIC idle timeout after a kill -9, a few seconds): the
//         element reconnects by itself at once, retrying with a short backoff
//         (RECONNECT) without a time limit, and subscribes again when the
//         broadcast is announced;
//       * the broadcast going offline while the session stays up (its
//         subscriptions ended): a new element after OFFLINE_MS;
//     and, last resorts on timers only: nothing painted for STALL_MS and the
//     origin has a new certificate (a restarted origin without --cert-dir),
//     or nothing painted for RETRY_MS in any case;
//   - transport: the session's transport ("webtransport" or "websocket") and
//     negotiated MoQ version.  The element's WebSocket fallback is turned off;
//     should a session still run over WebSocket, its frames are marked
//     (onSample's last argument), counted apart and shown as an error.
//
// The element comes from dist/moq-watch.js, which `npm ci` in web/ builds from
// node_modules (package.json "build": esbuild bundles @moq/watch/element with
// its dependencies; the packages import each other by bare names).
//
// Certificate: a page served by the origin fetches the MoQ endpoint's
// certificate hash from its own origin (/certificate.sha256) and gives it to
// WebTransport as serverCertificateHashes (the origin makes an ECDSA
// certificate valid for less than 14 days, which Chromium accepts that way);
// no browser flag and no click needed.  A restarted origin has a new
// certificate: whenever the session is down or the picture stalls the hash is
// fetched again, and the next connection attempt uses it.
import { decodePicture } from './timecode.js';
import { RollingMean } from './samples.js';

/** The MoQ endpoint's default port (h3live serve --moq, ./run.sh). */
export const DEFAULT_MOQ_PORT = 4435;
/** A picture not updated for longer than this (ms) after the first frame is a stall. */
export const STALL_GAP_MS = 200;
/** Nothing painted this long (ms): ask the origin whether it restarted (a new certificate). */
const STALL_MS = 2000;
/** Nothing painted this long (ms): start a new element whatever the origin says. */
const RETRY_MS = 6000;
/** A broadcast offline this long (ms) while its session is up: start a new element. */
const OFFLINE_MS = 300;
/** At most one new element per this many ms on the timers above (it needs time to connect and subscribe). */
const MIN_RECOVERY_GAP_MS = 2500;
/** The element's reconnect backoff: first retry after 125-250 ms, doubling up to 1 s, never giving up. */
const RECONNECT = { initial: 250, multiplier: 2, max: 1000, timeout: 0 };
/** A video frame whose media time is this much (ms) before the previous one's starts a new timeline. */
const REWIND_MS = 1000;
/** Fetching the certificate hash gives up after this long (ms): a killed origin's connection hangs. */
const CERT_FETCH_MS = 1500;
/** The bundled element, built by `npm ci` in web/. */
const BUNDLE = new URL('./dist/moq-watch.js', import.meta.url).href;

let loading = null;
/** Load the <moq-watch> element once; resolves to null when loaded, else the reason. */
export function loadWatch() {
  loading ??= import(BUNDLE).then(() => null, (e) => `${BUNDLE} did not load (run "npm ci" in web/): ${e.message || e}`);
  return loading;
}

/**
 * The MoQ endpoint's certificate hash (hex SHA-256) as `origin` serves it at
 * /certificate.sha256, or throws with a reason (an origin without --moq has none).
 */
export async function certificateHash(origin) {
  const r = await fetch(`${origin}/certificate.sha256`, { cache: 'no-store', signal: AbortSignal.timeout(CERT_FETCH_MS) });
  if (!r.ok) throw new Error(`${origin}/certificate.sha256: ${r.status} (is the origin's MoQ endpoint on? h3live serve --moq)`);
  const hex = (await r.text()).trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`${origin}/certificate.sha256: not a SHA-256 in hex`);
  return hex.toLowerCase();
}

/** The MoQ endpoint URL for `host` (a page's hostname) and `port`. */
export function moqUrl(host, port = DEFAULT_MOQ_PORT) {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `https://${h}:${port}/`;
}

/**
 * The element's jitter target from a page's latency parameter: seconds > 0
 * give that many ms of buffer on top of the lowest transit seen; anything
 * else (absent, "real-time") the element's own real-time mode (1.25 x the
 * lowest RTT, at least 20 ms).
 */
export function jitterOf(latencyS) {
  const s = Number(latencyS);
  return latencyS != null && latencyS !== '' && s > 0 ? Math.round(s * 1000) : 'real-time';
}

const now = () => performance.timeOrigin + performance.now();

/**
 * One MoQ player in `stage` (an element with the picture's aspect ratio),
 * filling the page's per-player stats object `p` (frames, latency, playing;
 * p.moq with the session; see player.js for the schema):
 *   url        MoQ endpoint (https://HOST:PORT/; http:// makes the element fetch
 *              the certificate hash from there itself)
 *   name       broadcast (the stream name)
 *   jitter     jitterOf(latency)
 *   certHash   hex SHA-256 for serverCertificateHashes, or null
 *   refreshCertHash   async () => the current hash (fetched again when the session is
 *              down or the picture stalls), or null
 *   onFirstFrame(msSinceNavigation), onSample(shownAtEpochMs, latencyMs,
 *   arrivalLatencyMs | null, viaWebSocket), onError(message), onState(status, detail),
 *   onPicture(width, height) when the painted picture's size changes;
 *   with status 'connecting', 'playing', 'stalled', 'origin unreachable', 'websocket'.
 * `el` is the current <moq-watch> element, `canvas` its canvas; `stalls` is
 * { count, totalMs, events: [[startEpochMs, ms]] }, stalledNowMs() includes a gap in progress.
 */
export class MoqPlayer {
  constructor(stage, { url, name, jitter = 'real-time', certHash = null, refreshCertHash = null, p, onFirstFrame = () => {}, onSample = () => {}, onError = () => {}, onState = () => {}, onPicture = () => {} }) {
    /** The page's stats object for this player. */
    this.p = p;
    /** Stall state (the <video> arms' watchStalls shape). */
    this.stalls = { count: 0, totalMs: 0, events: [] };
    /** Source height of the painted picture (for the player clock's strip), once known. */
    this.pictureHeight = null;
    Object.assign(this, { stage, url, name, jitter, refreshCertHash, onSample, onFirstFrame, onError, onState, onPicture });
    this.status = null;
    this.certHash = certHash;
    p.moq = {
      url, name, jitter, certificate: certHash ? 'serverCertificateHashes' : url.startsWith('http:') ? '/certificate.sha256 over http' : 'none',
      status: 'disconnected', broadcast: 'offline', transport: null, version: null, sessions: 0, websocketSessions: 0,
      certificateChanges: 0, recovery: { restarts: 0, reconnects: 0, events: [] },
      framesArrived: 0, framesWebSocket: 0, samplesExcluded: 0, rttMs: null, bytes: 0, bufferMs: null,
    };
    p.latency.arrivalMs = null;
    p.latency.arrivalAvgMs = null;
    this.glassMean = new RollingMean(2000);
    this.arrivalMean = new RollingMean(2000);
    /** media timestamp (µs) -> [arrival epoch ms, via WebSocket] of frames received and not yet painted. */
    this.arrivals = new Map();
    this.lastArrivalUs = null;
    this.lastPaint = null; // epoch ms of the last painted frame's animation frame
    this.refresh = [];     // recent animation-frame intervals (ms)
    this.scratch = document.createElement('canvas');
    this.bytesBefore = 0;  // media bytes of the elements replaced so far
    this.startedAt = now();
    this.#createElement();
    const tick = (t) => {
      if (this.prevRaf != null) {
        this.refresh.push(t - this.prevRaf);
        if (this.refresh.length > 60) this.refresh.shift();
      }
      this.prevRaf = t;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    setInterval(() => this.#tick(), 500);
  }

  /** A new <moq-watch> (and canvas) in the stage, with this player's hooks; the old one goes. */
  #createElement() {
    const old = this.el;
    if (old) {
      this.bytesBefore += (old.video.out.stats.peek() || {}).bytesReceived || 0;
      old.remove(); // disconnected: the element closes its session
    }
    const el = document.createElement('moq-watch');
    this.el = el;
    this.elementAt = now();
    this.wasLive = false;
    this.offlineSince = null;
    this.hadSession = false;
    this.arrivals.clear();
    this.lastArrivalUs = null;
    // Before the first connection attempt (these options are read per attempt).
    el.connection.websocket = { enabled: false };
    if (this.certHash) this.#pin(this.certHash);
    // Keep retrying through an origin restart (the element's default gives up after 10 s).
    el.connection.delay = { ...RECONNECT };
    el.setAttribute('visible', 'always'); // decode even when scrolled away: the measurement must not depend on it
    el.setAttribute('muted', '');
    el.setAttribute('latency', String(this.jitter));
    el.setAttribute('name', this.name);
    el.setAttribute('url', this.url);
    this.canvas = document.createElement('canvas');
    el.append(this.canvas);
    this.stage.prepend(el); // under the player clock the page draws over the picture
    this.#watchArrivals(el);
    this.#watchPaints(el);
    this.#watchSession(el);
    this.#watchGeneration(el);
  }

  /** The display refresh interval (ms): the median animation-frame interval, 60 Hz until measured. */
  refreshMs() {
    if (this.refresh.length < 10) return 1000 / 60;
    const s = [...this.refresh].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  }

  /** Pin the MoQ endpoint's certificate (hex SHA-256) for the next connection attempts. */
  #pin(hex) {
    this.certHash = hex;
    this.el.connection.webtransport = { serverCertificateHashes: [{ algorithm: 'sha-256', value: hex }] };
  }

  /**
   * Fetch the certificate hash again and pin it when it changed: true if it
   * changed (a restarted origin), false if not, null if it could not be fetched.
   */
  async #refreshCertificate() {
    if (!this.refreshCertHash) return false;
    let hex;
    try { hex = await this.refreshCertHash(); } catch { return null; }
    if (!hex || hex === this.certHash) return false;
    this.#pin(hex);
    this.p.moq.certificateChanges++;
    return true;
  }

  /** Stalled time (ms) including a gap in progress. */
  stalledNowMs() {
    const gap = this.lastPaint === null ? 0 : now() - this.lastPaint;
    return this.stalls.totalMs + (gap > STALL_GAP_MS ? gap : 0);
  }

  #setState(status, detail = '') {
    if (this.status === status) return;
    this.status = status;
    this.onState(status, detail);
  }

  // Frames as the element's decode loop receives them: it reports each to its
  // playout clock (sync.received(timestampMs, kind)), wrapped here on the instance.
  #watchArrivals(el) {
    const sync = el.sync;
    const received = sync.received.bind(sync);
    sync.received = (ts, kind) => {
      if (kind === 'video' && el === this.el) {
        const at = now();
        const us = Math.round(ts * 1000);
        // A timeline that starts again (a new encoder run): the element would drop
        // these frames as older than its picture, so start a new one.
        if (this.lastArrivalUs !== null && us < this.lastArrivalUs - REWIND_MS * 1000) {
          this.lastArrivalUs = null;
          queueMicrotask(() => { if (el === this.el) this.#recover('new broadcast generation (media time went back)'); });
          return received(ts, kind);
        }
        this.lastArrivalUs = us;
        const ws = this.p.moq.transport === 'websocket';
        this.arrivals.set(us, [at, ws]);
        if (this.arrivals.size > 600) this.arrivals.delete(this.arrivals.keys().next().value);
        this.p.moq.framesArrived++;
        if (ws) this.p.moq.framesWebSocket++;
      }
      return received(ts, kind);
    };
  }

  // Every frame the renderer paints: it draws the frame on the canvas in an
  // animation frame, then sets renderer.out.timestamp (the frame's media time,
  // ms); subscribers run in that animation frame's microtask checkpoint, when
  // the canvas holds the new picture and document.timeline.currentTime is the
  // animation frame's time.
  #watchPaints(el) {
    const canvas = this.canvas;
    el.renderer.out.timestamp.subscribe((ts) => {
      if (ts === undefined || el !== this.el) return;
      const raf = document.timeline.currentTime ?? performance.now();
      const paintedAt = performance.timeOrigin + raf;
      const shownAt = paintedAt + this.refreshMs();
      const p = this.p;
      if (p.frames.presented === 0) this.onFirstFrame(Math.round(performance.now()));
      p.frames.presented++;
      p.playing = true;
      if (this.lastPaint !== null && paintedAt - this.lastPaint > STALL_GAP_MS) {
        const ms = Math.round(paintedAt - this.lastPaint);
        this.stalls.count++;
        this.stalls.totalMs += ms;
        this.stalls.events.push([Math.round(this.lastPaint), ms]);
        if (this.stalls.events.length > 200) this.stalls.events.shift();
      }
      this.lastPaint = paintedAt;
      if (canvas.height && this.pictureHeight !== canvas.height) {
        this.pictureHeight = canvas.height;
        this.onPicture(canvas.width, canvas.height);
      }
      const us = Math.round(ts * 1000);
      const arrival = this.arrivals.get(us) || null;
      for (const k of this.arrivals.keys()) {
        if (k > us) break;
        this.arrivals.delete(k);
      }
      const r = decodePicture(canvas, canvas.width, canvas.height, this.scratch, shownAt);
      if (!r.ok) {
        p.frames.decodeErrors++;
        p.frames.lastError = r.error;
        return;
      }
      p.frames.decoded++;
      const lat = shownAt - r.ms;
      const ws = arrival ? arrival[1] : p.moq.transport === 'websocket';
      const arr = arrival ? arrival[0] - r.ms : null;
      if (ws) p.moq.samplesExcluded++;
      else {
        p.latency.timecodeMs = Math.round(lat);
        p.latency.timecodeAvgMs = Math.round(this.glassMean.push(shownAt, lat));
        if (arr !== null) {
          p.latency.arrivalMs = Math.round(arr);
          p.latency.arrivalAvgMs = Math.round(this.arrivalMean.push(shownAt, arr));
        }
        if (this.status !== 'websocket') this.#setState('playing');
      }
      this.onSample(shownAt, lat, arr, ws);
    });
  }

  // The session: status, transport, version; the broadcast's status.
  #watchSession(el) {
    const m = this.p.moq;
    el.connection.status.subscribe((s) => {
      if (el !== this.el) return;
      m.status = s;
      // The broadcast goes offline with its session: that is not the end of an
      // encoder run, and the element subscribes again once reconnected.
      if (s !== 'connected') { this.wasLive = false; this.offlineSince = null; }
      if (s === 'disconnected') this.#refreshCertificate();
      if (s !== 'connected' && this.status !== 'websocket') this.#setState(this.p.frames.presented ? 'origin unreachable' : 'connecting', s);
    });
    el.broadcast.out.status.subscribe((s) => {
      if (el !== this.el) return;
      m.broadcast = s;
      if (s === 'live') this.wasLive = true;
      this.offlineSince = s === 'offline' && this.wasLive ? now() : null;
    });
    el.connection.established.subscribe((c) => {
      if (el !== this.el) return;
      this.conn = c || null;
      if (!c) { m.transport = null; this.wasLive = false; this.offlineSince = null; return; }
      if (this.hadSession) this.#event('reconnects', 'the session ended; the player reconnected');
      this.hadSession = true;
      m.sessions++;
      m.transport = c.transport;
      m.version = String(c.version);
      if (c.transport === 'websocket') {
        m.websocketSessions++;
        this.onError('MoQ session over WebSocket (the fallback is off, yet it happened): its samples are marked and left out');
        this.#setState('websocket', c.url && c.url.href);
      }
    });
  }

  // A new generation of the broadcast (an encoder restart): its catalog
  // carries new init segments. The first catalog this element receives is
  // its baseline; a later one with another init segment for a rendition it
  // knows starts a new element at once.
  #watchGeneration(el) {
    let inits = null;
    el.broadcast.out.catalog.subscribe((cat) => {
      if (!cat || el !== this.el) return;
      const now = new Map();
      for (const kind of ['video', 'audio']) {
        for (const [name, r] of Object.entries((cat[kind] && cat[kind].renditions) || {})) {
          if (r && r.container && r.container.init) now.set(`${kind}/${name}`, r.container.init);
        }
      }
      const changed = inits !== null && [...now].some(([k, v]) => inits.has(k) && inits.get(k) !== v);
      inits = now;
      if (changed) queueMicrotask(() => { if (el === this.el) this.#recover('new broadcast generation (new init segment in the catalog)'); });
    });
  }

  // Twice a second: counters, and the recoveries (see the top of this file).
  async #tick() {
    const m = this.p.moq, el = this.el;
    m.bufferMs = Math.round(el.sync.out.buffer.peek());
    m.bytes = this.bytesBefore + ((el.video.out.stats.peek() || {}).bytesReceived || 0);
    const probe = this.conn && this.conn.probe.peek();
    if (probe && probe.rtt !== undefined) m.rttMs = Math.round(probe.rtt * 10) / 10;
    if (this.p.frames.presented === 0 || this.probing || now() - (this.recoveredAt || 0) < MIN_RECOVERY_GAP_MS) return;
    if (this.offlineSince !== null && now() - this.offlineSince >= OFFLINE_MS && m.status === 'connected') {
      this.#recover('the broadcast went offline while the session is up');
      return;
    }
    const idle = now() - Math.max(this.lastPaint || 0, this.recoveredAt || 0);
    if (idle < STALL_MS) return;
    if (this.status === 'playing') this.#setState('stalled', 'no new frame');
    this.probing = true;
    try {
      const changed = await this.#refreshCertificate();
      if (changed) this.#recover('the origin restarted (new certificate)');
      else if (changed === null) this.#setState('origin unreachable', 'no certificate hash');
      else if (idle >= RETRY_MS) this.#recover(`nothing painted for ${Math.round(idle / 1000)} s`);
    } finally {
      this.probing = false;
    }
  }

  /** Count a recovery (`kind`: 'restarts' or 'reconnects') in p.moq.recovery. */
  #event(kind, reason) {
    const r = this.p.moq.recovery;
    r[kind]++;
    r.events.push({ t: Date.now(), reason });
    if (r.events.length > 20) r.events.shift();
    console.info(`h3live moq: ${reason}`);
  }

  /** Start over with a new element (see the top of this file); counted in p.moq.recovery. */
  #recover(reason) {
    this.#event('restarts', `new player (${reason})`);
    this.recoveredAt = now();
    this.#createElement();
  }
}
