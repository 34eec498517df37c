// Minimal PNG reader for Chromium screenshots (CDP Page.captureScreenshot):
// 8-bit RGB or RGBA, not interlaced.  Enough to read pixels in tests without
// a dependency; anything else is refused with a clear error.  pictureClocks()
// reads the two timecode strips of a video picture in such a screenshot.
import { inflateSync } from 'node:zlib';
import { decodeStrip, stripHeight, unwrap } from '../timecode.js';

const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Decode `buf` into { width, height, channels (3|4), data: Uint8Array row-major }. */
export function decodePng(buf) {
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIG)) throw new Error('not a PNG');
  let off = 8;
  let width = 0, height = 0, channels = 0;
  const idat = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const body = buf.subarray(off + 8, off + 8 + len);
    off += 12 + len;
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const depth = body[8], color = body[9], interlace = body[12];
      if (depth !== 8 || (color !== 2 && color !== 6) || interlace !== 0) {
        throw new Error(`unsupported PNG: depth ${depth}, color type ${color}, interlace ${interlace}`);
      }
      channels = color === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
  }
  if (!width || !channels) throw new Error('PNG without IHDR');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error('PNG data too short');
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    const prev = y > 0 ? row - stride : -1;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? data[row + x - channels] : 0;
      const b = prev >= 0 ? data[prev + x] : 0;
      const c = prev >= 0 && x >= channels ? data[prev + x - channels] : 0;
      let v = src[x];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`bad PNG filter ${filter}`);
      data[row + x] = v & 255;
    }
  }
  return { width, height, channels, data };
}

/** Copy of the rectangle (x, y, w, h) of a decoded image, same channel count. */
export function crop(img, x, y, w, h) {
  x = Math.round(x); y = Math.round(y); w = Math.round(w); h = Math.round(h);
  const out = new Uint8Array(w * h * img.channels);
  for (let r = 0; r < h; r++) {
    const s = ((y + r) * img.width + x) * img.channels;
    out.set(img.data.subarray(s, s + w * img.channels), r * w * img.channels);
  }
  return { width: w, height: h, channels: img.channels, data: out };
}

/**
 * Both clocks of a video picture in a screenshot `img` (decodePng): the
 * encoder's timecode strip along the picture's bottom (web/timecode.js) and
 * the player's strip right above it (web/clock.js).  `box` is the picture's
 * box in screenshot pixels ({ x, y, w, h }), `srcH` the video's own height,
 * `nowMs` an epoch time near the capture (to unwrap the 32-bit values).
 * Returns { encoder, player }, each { ok, ms } or { ok: false, error }.
 */
export function pictureClocks(img, box, srcH, nowMs) {
  const sh = (stripHeight(srcH) / srcH) * box.h;
  const x = Math.ceil(box.x), w = Math.floor(box.x + box.w) - x;
  const band = (top) => {
    const y = Math.round(top), h = Math.round(top + sh) - y;
    const c = crop(img, x, y, w, h);
    const r = decodeStrip(c.data, c.width, c.height, c.channels);
    return r.ok ? { ok: true, ms: unwrap(r.value, nowMs) } : { ok: false, error: r.error };
  };
  return { encoder: band(box.y + box.h - sh), player: band(box.y + box.h - 2 * sh) };
}
