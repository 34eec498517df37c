// Decoder for the machine-readable timecode strip that scripts/encoder.sh
// burns into the bottom of every frame.  Used by the player page (pixels of
// the displayed frame via canvas) and by the unit tests (raw gray frames that
// ffmpeg extracts from the real encoder output).
//
// Layout (must match scripts/encoder.sh):
//   The strip is the bottom 2*R rows of the picture, R = rowHeight(H).
//   It holds CELLS (38) cells of equal width (W/38), each with two rows:
//   the top row carries a bit (white = 1), the bottom row the inverted bit.
//     cell 0 = 1, cell 1 = 0            marker
//     cells 2..33                       V, 32 bits, most significant first
//     cells 34..37                      (sum of V's eight 4-bit nibbles) mod 16
//   V = encoder wall-clock time in ms since the Unix epoch, mod 2^32.
// Each cell is compared with its own inverse, so no global threshold is
// needed and compression noise has to flip a ~200-level difference.

export const CELLS = 38;
export const WRAP = 2 ** 32;
/** Minimum |top - bottom| luma difference (0..255) for a cell to count. */
export const MIN_CONTRAST = 48;

/** Height in pixels of one of the strip's two rows for a picture of height h. */
export function rowHeight(h) {
  return Math.max(8, 2 * Math.floor(h / 60));
}

/** Height in pixels of the whole strip for a picture of height h. */
export function stripHeight(h) {
  return 2 * rowHeight(h);
}

/** Checksum of a 32-bit value: the sum of its nibbles mod 16. */
export function checksum(v) {
  let s = 0;
  for (let i = 0; i < 8; i++) s += Math.floor(v / 16 ** i) % 16;
  return s % 16;
}

/** The 38 bits (top row) the encoder draws for value v. */
export function encodeBits(v) {
  v = ((v % WRAP) + WRAP) % WRAP;
  const bits = [1, 0];
  for (let k = 31; k >= 0; k--) bits.push(Math.floor(v / 2 ** k) % 2);
  const c = checksum(v);
  for (let k = 3; k >= 0; k--) bits.push((c >> k) & 1);
  return bits;
}

function mean(pix, width, channels, x0, x1, y0, y1) {
  let sum = 0;
  let n = 0;
  for (let y = y0; y < y1; y++) {
    let o = (y * width + x0) * channels;
    for (let x = x0; x < x1; x++, o += channels) {
      // Luma from RGB(A), or the gray byte itself.
      sum += channels >= 3 ? 0.299 * pix[o] + 0.587 * pix[o + 1] + 0.114 * pix[o + 2] : pix[o];
      n++;
    }
  }
  return n ? sum / n : 0;
}

/**
 * Decode a strip image.
 * @param pix      pixels of the strip only (top-left = strip's top-left), row-major
 * @param width    strip width in pixels
 * @param height   strip height in pixels (both rows)
 * @param channels bytes per pixel: 1 (gray) or 4 (RGBA from canvas getImageData)
 * @returns {{ok: boolean, value?: number, error?: string, contrast: number}}
 *          value is the encoder time in ms mod 2^32.
 */
export function decodeStrip(pix, width, height, channels = 1) {
  const half = height / 2;
  const ya0 = Math.floor(half * 0.25), ya1 = Math.max(ya0 + 1, Math.ceil(half * 0.75));
  const yb0 = Math.floor(half + half * 0.25), yb1 = Math.max(yb0 + 1, Math.ceil(half + half * 0.75));
  const cw = width / CELLS;
  const bits = [];
  let contrast = 255;
  for (let i = 0; i < CELLS; i++) {
    const x0 = Math.floor((i + 0.3) * cw);
    const x1 = Math.max(x0 + 1, Math.ceil((i + 0.7) * cw));
    const a = mean(pix, width, channels, x0, x1, ya0, ya1);
    const b = mean(pix, width, channels, x0, x1, yb0, yb1);
    contrast = Math.min(contrast, Math.abs(a - b));
    bits.push(a > b ? 1 : 0);
  }
  if (contrast < MIN_CONTRAST) return { ok: false, error: 'low contrast (no strip?)', contrast };
  if (bits[0] !== 1 || bits[1] !== 0) return { ok: false, error: 'bad marker', contrast };
  let v = 0;
  for (let i = 2; i < 34; i++) v = v * 2 + bits[i];
  let c = 0;
  for (let i = 34; i < 38; i++) c = c * 2 + bits[i];
  if (c !== checksum(v)) return { ok: false, error: 'bad checksum', contrast };
  return { ok: true, value: v, contrast };
}

/**
 * Turn a value mod 2^32 ms into a full epoch time in ms: the one nearest to
 * `nowMs` (the decoder's clock).  Exact while the clocks differ by < 24 days.
 */
export function unwrap(value, nowMs) {
  const base = nowMs - (((nowMs % WRAP) + WRAP) % WRAP);
  let t = base + value;
  if (t - nowMs > WRAP / 2) t -= WRAP;
  else if (nowMs - t > WRAP / 2) t += WRAP;
  return t;
}

/**
 * Browser helper: decode the timecode of a picture: `source` is anything a
 * canvas can draw (a <video>, or the <canvas> a WebCodecs player paints),
 * `w` x `h` its size in pixels.  `canvas` is a scratch canvas (reused between
 * calls).  Returns the decode result plus `ms` (full epoch ms) when ok.
 */
export function decodePicture(source, w, h, canvas, nowMs = Date.now()) {
  if (!w || !h) return { ok: false, error: 'no picture size', contrast: 0 };
  const sh = stripHeight(h);
  // Draw only the strip, scaled to 8 px per cell and 16 px high: cheap.
  const cwpx = CELLS * 8, chpx = 16;
  if (canvas.width !== cwpx) canvas.width = cwpx;
  if (canvas.height !== chpx) canvas.height = chpx;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, h - sh, w, sh, 0, 0, cwpx, chpx);
  const img = ctx.getImageData(0, 0, cwpx, chpx);
  const r = decodeStrip(img.data, cwpx, chpx, 4);
  if (r.ok) r.ms = unwrap(r.value, nowMs);
  return r;
}

/** decodePicture() of what a <video> currently shows. */
export function decodeVideo(video, canvas, nowMs = Date.now()) {
  if (!video.videoWidth || !video.videoHeight) return { ok: false, error: 'no video size', contrast: 0 };
  return decodePicture(video, video.videoWidth, video.videoHeight, canvas, nowMs);
}
