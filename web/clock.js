// The player's wall clock drawn over a video picture the way the encoder
// draws its own (scripts/encoder.sh), in two forms:
//   - text "PLAYER  hh:mm:ss.mmm" right under the burned-in "ENCODER ..." line,
//     same font, size and box (font size H/12, margin H/36, box border
//     fontsize/6, class .clock in style.css), as on the player page;
//   - a machine-readable strip with the encoder strip's exact encoding
//     (web/timecode.js: 38 cells, bit row over inverted row, marker,
//     checksum; value = player wall clock in ms mod 2^32), drawn right above
//     the encoder's strip with the same height, so a screenshot of the picture
//     can be decoded into both clocks.
// Text and strip are written in the same animation frame, from one Date.now().
// The clock page (clock.html, ./clock-page.js) draws the same two forms full
// screen, to be filmed by a camera.
//
// The stage (the element holding the <video>) must have the picture's aspect
// ratio, so the picture fills it without letterboxing.
import { CELLS, encodeBits, stripHeight } from './timecode.js';

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** hh:mm:ss.mmm in local time, as ffmpeg's %{localtime\:%T.%3N}. */
export function fmtClock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * Paint wall-clock time `ms` (epoch ms) as the timecode strip on a 38x2
 * canvas context: one pixel per cell and row, the bits over their inverse
 * (web/timecode.js); the canvas is scaled up without smoothing.
 */
export function drawStrip(ctx, ms) {
  const bits = encodeBits(Math.floor(ms));
  for (let i = 0; i < CELLS; i++) {
    ctx.fillStyle = bits[i] ? '#fff' : '#000';
    ctx.fillRect(i, 0, 1, 1);
    ctx.fillStyle = bits[i] ? '#000' : '#fff';
    ctx.fillRect(i, 1, 1, 1);
  }
}

/** A CELLS x 2 canvas for drawStrip, with its 2D context. */
export function stripCanvas(className) {
  const canvas = document.createElement('canvas');
  canvas.className = className;
  canvas.width = CELLS;
  canvas.height = 2;
  return { canvas, ctx: canvas.getContext('2d') };
}

export class PlayerClock {
  /**
   * @param stage  element containing the picture (position: relative)
   * @param video  the <video>, for the picture's source height (null for a canvas player)
   * @param sourceHeight  the picture's source height in pixels, or 0 while unknown
   *               (default: the video's; a canvas player gives its own and
   *               calls layout() when it changes)
   */
  constructor(stage, video, sourceHeight = () => video.videoHeight) {
    /** Container the clock is positioned in. */
    this.stage = stage;
    /** Video whose picture the clock overlays. */
    this.video = video;
    /** The picture's source height (0 while unknown). */
    this.sourceHeight = sourceHeight;
    /** The text clock. */
    this.text = document.createElement('div');
    this.text.className = 'clock';
    this.text.textContent = 'PLAYER  --:--:--.---';
    const { canvas, ctx } = stripCanvas('player-strip');
    /** The machine-readable strip (drawStrip). */
    this.strip = canvas;
    /** Its 2D context. */
    this.ctx = ctx;
    stage.append(this.text, this.strip);
    new ResizeObserver(() => this.layout()).observe(stage);
    if (video) video.addEventListener('loadedmetadata', () => this.layout());
    this.layout();
  }

  /** Size text and strip from the stage height (the picture's height on screen). */
  layout() {
    const h = this.stage.clientHeight;
    const fs = h / 12, border = fs / 6, margin = h / 36;
    const t = this.text.style;
    t.fontSize = `${fs}px`;
    t.padding = `0 ${border}px`;
    t.left = `${margin - border}px`;
    t.top = `${margin + fs * 1.45}px`;
    const srcH = this.sourceHeight() || 720;
    const sh = (stripHeight(srcH) / srcH) * h;
    const s = this.strip.style;
    s.height = `${sh}px`;
    s.bottom = `${sh}px`;
  }

  /** Show wall-clock time `now` (epoch ms) in both forms. */
  draw(now = Date.now()) {
    this.text.textContent = `PLAYER  ${fmtClock(now)}`;
    drawStrip(this.ctx, now);
  }
}
