// LL-HLS playback for the h3live pages: hls.js (npm "hls.js", pinned in
// package-lock.json) in low-latency mode on the playlists the origin
// generates from the same ingest (/live/NAME/hls.m3u8, see src/hls).
//
// startHls() returns an object with the two dash.js methods the pages read
// (getCurrentLiveLatency, getBufferLength), so the pages measure both
// formats by the same code; the timecode latency is format-independent
// (measure.js watchFrames).
//
// hls.js uses the playlist's PART-HOLD-BACK as its target latency unless a
// latency is given (then liveSyncDuration), and catches up by playback rate
// up to maxLiveSyncPlaybackRate. hls.js loads parts by their byte ranges
// after a blocking playlist reload; it does not use EXT-X-PRELOAD-HINT.
// Where hls.js cannot run (no MediaSource) or with native=true the <video>
// element plays the playlist itself (Safari's own LL-HLS player).

/** Where the pages load hls.js from (ES module build). */
export const HLS_MODULE = './node_modules/hls.js/dist/hls.mjs';

/** URL of the origin-generated multivariant playlist of `stream`. */
export function hlsUrl(origin, stream) {
  return `${origin}/live/${encodeURIComponent(stream)}/hls.m3u8`;
}

/** hls.js settings: low-latency mode, catch-up like the dash.js arm. */
export function hlsConfig(targetLatency, debug = false) {
  const cfg = {
    lowLatencyMode: true,
    maxLiveSyncPlaybackRate: 1.3,
    backBufferLength: 10,
    enableWorker: true,
    debug,
  };
  if (targetLatency) cfg.liveSyncDuration = targetLatency;
  return cfg;
}

function bufferAhead(video) {
  const b = video.buffered, t = video.currentTime;
  for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.1 && t <= b.end(i)) return b.end(i) - t;
  return 0;
}

/**
 * Play `url` on `video` (muted). `targetLatency` in s, or null for the
 * playlist's PART-HOLD-BACK. Fatal hls.js errors go to `onError(message)`
 * (after one recovery attempt for media and network errors).
 */
export async function startHls(video, url, { targetLatency = null, debug = false, native = false, onError }) {
  video.muted = true;
  let Hls = null;
  if (!native) {
    try {
      Hls = (await import(HLS_MODULE)).default;
    } catch (e) {
      onError(`hls.js did not load (run npm ci in web/): ${e.message || e}`);
    }
  }
  if (!Hls || !Hls.isSupported()) {
    if (!video.canPlayType('application/vnd.apple.mpegurl')) {
      onError('neither hls.js (MediaSource) nor native HLS is available in this browser');
      return null;
    }
    video.src = url;
    video.play().catch(() => {});
    return {
      kind: 'native',
      getCurrentLiveLatency: () => null,
      getBufferLength: () => bufferAhead(video),
      getTargetLatency: () => null,
    };
  }
  const hls = new Hls(hlsConfig(targetLatency, debug));
  const recovered = { media: false, network: false };
  hls.on(Hls.Events.ERROR, (_ev, data) => {
    if (!data.fatal) return;
    onError(`hls.js: ${data.type} ${data.details}${data.response ? ` (HTTP ${data.response.code})` : ''}`);
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered.media) {
      recovered.media = true;
      hls.recoverMediaError();
    } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR && !recovered.network) {
      recovered.network = true;
      hls.startLoad();
    }
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
  return {
    kind: 'hls.js',
    hls,
    getCurrentLiveLatency: () => (hls.latency > 0 ? hls.latency : null),
    getBufferLength: () => bufferAhead(video),
    getTargetLatency: () => hls.targetLatency,
  };
}
