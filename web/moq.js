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
// certificate: while the session is down the hash is fetched again, and the
// next connection attempt uses it.
import { decodePicture } from './timecode.js';
import { RollingMean } from './samples.js';

/** The MoQ endpoint's default port (h3live serve --moq, ./run.sh). */
export const DEFAULT_MOQ_PORT = 4435;
/** A picture not updated for longer than this (ms) after the first frame is a stall. */
export const STALL_GAP_MS = 200;
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
  const r = await fetch(`${origin}/certificate.sha256`, { cache: 'no-store' });
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
 * One <moq-watch> player in `stage` (an element with the picture's aspect ratio),
 * filling the page's per-player stats object `p` (frames, latency, playing;
 * p.moq with the session; see player.js for the schema):
 *   url        MoQ endpoint (https://HOST:PORT/; http:// makes the element fetch
 *              the certificate hash from there itself)
 *   name       broadcast (the stream name)
 *   jitter     jitterOf(latency)
 *   certHash   hex SHA-256 for serverCertificateHashes, or null
 *   refreshCertHash   async () => the current hash (fetched again while disconnected), or null
 *   onFirstFrame(msSinceNavigation), onSample(shownAtEpochMs, latencyMs,
 *   arrivalLatencyMs | null, viaWebSocket), onError(message), onState(status, detail),
 *   onPicture(width, height) when the painted picture's size changes;
 *   with status 'connecting', 'playing', 'stalled', 'origin unreachable', 'websocket'.
 * `stalls` is { count, totalMs, events: [[startEpochMs, ms]] }, stalledNowMs() includes a gap in progress.
 */
export class MoqPlayer {
  constructor(stage, { url, name, jitter = 'real-time', certHash = null, refreshCertHash = null, p, onFirstFrame = () => {}, onSample = () => {}, onError = () => {}, onState = () => {}, onPicture = () => {} }) {
    /** The page's stats object for this player. */
    this.p = p;
    /** Stall state (the <video> arms' watchStalls shape). */
    this.stalls = { count: 0, totalMs: 0, events: [] };
    /** Source height of the painted picture (for the player clock's strip), once known. */
    this.pictureHeight = null;
    this.onSample = onSample;
    this.onFirstFrame = onFirstFrame;
    this.onError = onError;
    this.onState = onState;
    this.onPicture = onPicture;
    this.status = null;
    p.moq = {
      url, name, jitter, certificate: certHash ? 'serverCertificateHashes' : url.startsWith('http:') ? '/certificate.sha256 over http' : 'none',
      status: 'disconnected', broadcast: 'offline', transport: null, version: null, sessions: 0, websocketSessions: 0, certificateChanges: 0,
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

    const el = document.createElement('moq-watch');
    this.el = el;
    // Before the first connection attempt (these options are read per attempt).
    el.connection.websocket = { enabled: false };
    this.certHash = null;
    if (certHash) this.#pin(certHash);
    this.refreshCertHash = refreshCertHash;
    // Keep retrying through an origin restart (the element's default gives up after 10 s).
    el.connection.delay = { initial: 250, multiplier: 2, max: 2000, timeout: 0 };
    el.setAttribute('visible', 'always'); // decode even when scrolled away: the measurement must not depend on it
    el.setAttribute('muted', '');
    el.setAttribute('latency', String(jitter));
    el.setAttribute('name', name);
    el.setAttribute('url', url);
    this.canvas = document.createElement('canvas');
    el.append(this.canvas);
    stage.prepend(el); // under the player clock the page draws over the picture

    this.#watchArrivals();
    this.#watchPaints();
    this.#watchSession();
    const tick = (t) => {
      if (this.prevRaf != null) {
        this.refresh.push(t - this.prevRaf);
        if (this.refresh.length > 60) this.refresh.shift();
      }
      this.prevRaf = t;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
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

  /** While disconnected: fetch the certificate hash again (a restarted origin has a new one). */
  async #refreshCertificate() {
    if (!this.refreshCertHash || this.refreshing || Date.now() - (this.refreshedAt || 0) < 1000) return;
    this.refreshing = true;
    try {
      const hex = await this.refreshCertHash();
      if (hex && hex !== this.certHash) {
        this.#pin(hex);
        this.p.moq.certificateChanges++;
      }
    } catch { /* origin still down: the next disconnect tries again */ } finally {
      this.refreshing = false;
      this.refreshedAt = Date.now();
    }
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
  #watchArrivals() {
    const sync = this.el.sync;
    const received = sync.received.bind(sync);
    sync.received = (ts, kind) => {
      if (kind === 'video') {
        const at = now();
        const us = Math.round(ts * 1000);
        // A timeline that starts again (encoder restart): older entries can never be painted.
        if (this.lastArrivalUs !== null && us < this.lastArrivalUs - 1e6) this.arrivals.clear();
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
  #watchPaints() {
    this.el.renderer.out.timestamp.subscribe((ts) => {
      if (ts === undefined) return;
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
      const c = this.canvas;
      if (c.height && this.pictureHeight !== c.height) {
        this.pictureHeight = c.height;
        this.onPicture(c.width, c.height);
      }
      const us = Math.round(ts * 1000);
      const arrival = this.arrivals.get(us) || null;
      for (const k of this.arrivals.keys()) {
        if (k > us) break;
        this.arrivals.delete(k);
      }
      const r = decodePicture(c, c.width, c.height, this.scratch, shownAt);
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

  // The session: status, transport, version; counters once a second.
  #watchSession() {
    const m = this.p.moq;
    this.el.connection.status.subscribe((s) => {
      m.status = s;
      if (s === 'disconnected') this.#refreshCertificate();
      if (s !== 'connected' && this.status !== 'websocket') this.#setState(this.p.frames.presented ? 'origin unreachable' : 'connecting', s);
    });
    this.el.broadcast.out.status.subscribe((s) => { m.broadcast = s; });
    let conn = null;
    this.el.connection.established.subscribe((c) => {
      conn = c || null;
      if (!c) { m.transport = null; return; }
      m.sessions++;
      m.transport = c.transport;
      m.version = String(c.version);
      if (c.transport === 'websocket') {
        m.websocketSessions++;
        this.onError('MoQ session over WebSocket (the fallback is off, yet it happened): its samples are marked and left out');
        this.#setState('websocket', c.url && c.url.href);
      }
    });
    setInterval(() => {
      m.bufferMs = Math.round(this.el.sync.out.buffer.peek());
      // Media bytes the decoder received (CMAF sample data, all sessions).
      const vs = this.el.video.out.stats.peek();
      if (vs) m.bytes = vs.bytesReceived;
      const probe = conn && conn.probe.peek();
      if (probe && probe.rtt !== undefined) m.rttMs = Math.round(probe.rtt * 10) / 10;
      if (this.lastPaint !== null && now() - this.lastPaint > STALL_GAP_MS * 5 && m.status === 'connected' && this.status === 'playing') this.#setState('stalled', 'no new frame');
    }, 1000);
  }
}
