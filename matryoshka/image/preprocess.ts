import type { Pixels } from './decode.js';
import { RESAMPLE, type Resample, resize } from './resample.js';
import { resetScratch, scratchBytes, scratchInt32 } from './scratch.js';

export type Layout = 'NCHW' | 'NHWC';

/** The model input a pipeline must fill: channels, layout, and the height and width where the model fixes them. */
export interface InputTarget {
  channels: 1 | 3;
  layout: Layout;
  height?: number;
  width?: number;
}

/** Hugging Face's resize sizes: a fixed box, or edges that keep the aspect ratio. */
export type Size = { height: number; width: number } | { shortest_edge: number; longest_edge?: number } | { longest_edge: number };

/**
 * A validated `preprocess` config: the steps in the order they run (alpha flattened onto
 * `background` and colour converted, trim, resize, pad to square, centre crop, negate,
 * autocontrast, then rescale and normalize as one byte × scale + offset per channel), and the
 * tensor they make.
 */
export interface ImagePipeline {
  /** RGB colour that alpha is flattened onto. */
  background: readonly [number, number, number];
  grayscale: boolean;
  /** Trim to the content: pixels farther than this × 255 from the border colour, in any channel. Off when undefined. */
  trimThreshold: number | undefined;
  padToSquare: boolean;
  resize: { size: Size; resample: Resample } | undefined;
  centerCrop: { height: number; width: number } | undefined;
  /** `auto`: negate when the border colour is light (its luma 128 or more). */
  negate: boolean | 'auto';
  /** Stretch each channel's darkest to 0 and its lightest to 255, as PIL's `ImageOps.autocontrast` (cutoff 0). */
  autocontrast: boolean;
  /** Per output channel: value = byte × scale + offset (do_rescale then do_normalize). */
  scale: number[];
  offset: number[];
  output: { channels: 1 | 3; height: number; width: number; layout: Layout };
}

/** A config this pipeline cannot run; the message names the field. */
export class PreprocessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PreprocessError';
  }
}

// Hugging Face keys that say nothing about the pixels (the output layout is the ONNX input's).
const IGNORED = new Set([
  'image_processor_type', 'processor_class', '_processor_class', 'feature_extractor_type', 'auto_map',
  'data_format', 'input_data_format', 'return_tensors', 'device', 'disable_grouping',
]);
const KNOWN = new Set([
  'do_convert_rgb', 'do_resize', 'size', 'resample', 'default_to_square', 'do_center_crop', 'crop_size',
  'do_rescale', 'rescale_factor', 'do_normalize', 'image_mean', 'image_std',
  'background', 'grayscale', 'trim', 'trim_threshold', 'pad_to_square', 'negate', 'autocontrast',
]);

const SIZE_FORMS = '{"height", "width"}, {"shortest_edge"}, {"longest_edge"} or {"shortest_edge", "longest_edge"}';
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const fail = (message: string): never => {
  throw new PreprocessError(message);
};
const show = (v: unknown) => JSON.stringify(v);

/**
 * Validates a `preprocess` object (Hugging Face `preprocessor_config.json` field names plus our
 * extensions) against the model input it must fill. HF metadata keys are ignored, and so is any
 * other key set to false or null (it asks for nothing); other keys are refused by name. A step whose
 * switch is absent runs when its parameters are given, as HF processors do by default; rescale
 * runs at 1/255 unless `do_rescale` is false.
 */
export function parsePreprocess(raw: unknown, target: InputTarget): ImagePipeline {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('must be an object');
  // null is how HF configs write "unset".
  const cfg = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null)) as Record<string, unknown>;
  const unsupported = Object.keys(cfg).filter((k) => !KNOWN.has(k) && !IGNORED.has(k) && cfg[k] !== false);
  if (unsupported.length)
    fail(`${unsupported.map((k) => `"${k}"`).join(', ')} ${unsupported.length > 1 ? 'are' : 'is'} not supported; supported fields: ${[...KNOWN].join(', ')}`);

  const bool = (key: string): boolean | undefined => {
    const v = cfg[key];
    if (v !== undefined && typeof v !== 'boolean') fail(`"${key}" must be true or false, not ${show(v)}`);
    return v as boolean | undefined;
  };
  const step = (key: string, ...params: string[]) => bool(key) ?? params.some((p) => cfg[p] !== undefined);
  bool('do_convert_rgb'); // always honoured: images become the input's channels whatever it says

  const grayscale = bool('grayscale') ?? false;
  if (target.channels === 1 && !grayscale) fail('"grayscale" must be true: the model input has 1 channel');

  let background: [number, number, number] = [255, 255, 255];
  if (cfg.background !== undefined) {
    const m = typeof cfg.background === 'string' ? /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(cfg.background) : null;
    if (!m) return fail(`"background" must be a colour "#rrggbb", not ${show(cfg.background)}`);
    background = [parseInt(m[1]!, 16), parseInt(m[2]!, 16), parseInt(m[3]!, 16)];
  }

  let trimThreshold: number | undefined;
  if (step('trim', 'trim_threshold')) {
    trimThreshold = cfg.trim_threshold === undefined ? 0.05 : (cfg.trim_threshold as number);
    if (!(typeof trimThreshold === 'number' && trimThreshold >= 0 && trimThreshold < 1))
      fail(`"trim_threshold" must be a number from 0 up to 1 (a fraction of 255), not ${show(cfg.trim_threshold)}`);
  }
  const padToSquare = bool('pad_to_square') ?? false;

  let resizeStep: ImagePipeline['resize'];
  if (step('do_resize', 'size')) {
    if (cfg.size === undefined) fail('"do_resize" is true but "size" is missing');
    const resample = cfg.resample ?? 2;
    if (!(Number.isInteger(resample) && (resample as number) >= 0 && (resample as number) < RESAMPLE.length))
      fail(`"resample" must be a PIL filter number (${RESAMPLE.map((r, i) => `${i} ${r}`).join(', ')}), not ${show(resample)}`);
    resizeStep = { size: parseSize(cfg.size, bool('default_to_square')), resample: RESAMPLE[resample as number]! };
  }

  let centerCrop: ImagePipeline['centerCrop'];
  if (step('do_center_crop', 'crop_size')) {
    const c = cfg.crop_size;
    if (c === undefined) fail('"do_center_crop" is true but "crop_size" is missing');
    // HF reads a bare crop size as a square.
    if (isPositiveInt(c)) centerCrop = { height: c, width: c };
    else if (isBox(c)) centerCrop = { height: c.height, width: c.width };
    else fail(`"crop_size" must be a positive integer or {"height", "width"} of positive integers, not ${show(c)}`);
  }

  const negate = cfg.negate ?? false;
  if (negate !== true && negate !== false && negate !== 'auto') return fail(`"negate" must be true, false or "auto", not ${show(negate)}`);

  const autocontrast = bool('autocontrast') ?? false;
  const channels = target.channels;
  let factor = 1 / 255;
  if (bool('do_rescale') === false) factor = 1;
  else if (cfg.rescale_factor !== undefined) {
    if (typeof cfg.rescale_factor !== 'number' || !Number.isFinite(cfg.rescale_factor)) fail(`"rescale_factor" must be a number, not ${show(cfg.rescale_factor)}`);
    factor = cfg.rescale_factor as number;
  }
  let mean = new Array<number>(channels).fill(0);
  let std = new Array<number>(channels).fill(1);
  if (step('do_normalize', 'image_mean', 'image_std')) {
    mean = perChannel(cfg, 'image_mean', channels, (v) => Number.isFinite(v), 'a number');
    std = perChannel(cfg, 'image_std', channels, (v) => Number.isFinite(v) && v > 0, 'a positive number');
  }

  return {
    background,
    grayscale,
    trimThreshold,
    padToSquare,
    resize: resizeStep,
    centerCrop,
    negate,
    autocontrast,
    scale: std.map((s) => factor / s),
    offset: mean.map((m, c) => -m / std[c]! || 0), // || 0: no -0
    output: { channels, layout: target.layout, ...outputSize(resizeStep?.size, centerCrop, padToSquare, target) },
  };
}

const isBox = (v: unknown): v is { height: number; width: number } =>
  typeof v === 'object' && v !== null && Object.keys(v).sort().join() === 'height,width' &&
  isPositiveInt((v as { height: unknown }).height) && isPositiveInt((v as { width: unknown }).width);

function parseSize(v: unknown, defaultToSquare: boolean | undefined): Size {
  if (isPositiveInt(v)) {
    // A bare number means a square to some HF processors and the shortest edge to others (CLIP).
    if (defaultToSquare === undefined)
      fail(`"size" ${v} is ambiguous: write {"height": ${v}, "width": ${v}} or {"shortest_edge": ${v}} (or set "default_to_square")`);
    return defaultToSquare ? { height: v, width: v } : { shortest_edge: v };
  }
  const keys = typeof v === 'object' && v !== null ? Object.keys(v).sort().join() : '';
  const values = keys ? Object.values(v as object) : [];
  const s = v as { shortest_edge: number; longest_edge: number };
  const ok =
    values.every(isPositiveInt) &&
    (keys === 'height,width' || keys === 'shortest_edge' || keys === 'longest_edge' || (keys === 'longest_edge,shortest_edge' && s.longest_edge > s.shortest_edge));
  if (!ok) fail(`"size" must be one of ${SIZE_FORMS} of positive integers (longest_edge above shortest_edge), not ${show(v)}`);
  return v as Size;
}

function perChannel(cfg: Record<string, unknown>, key: string, channels: number, valid: (v: number) => boolean, what: string): number[] {
  const v = cfg[key];
  if (v === undefined) fail(`"do_normalize" is true but "${key}" is missing`);
  const list = Array.isArray(v) ? v : [v];
  if (Array.isArray(v) && v.length !== channels)
    fail(`"${key}" has ${v.length} values; the model input has ${channels} channel${channels > 1 ? 's' : ''}`);
  if (!list.every((x) => typeof x === 'number' && valid(x))) fail(`"${key}" must be ${what} or one per channel, not ${show(v)}`);
  return Array.isArray(v) ? (v as number[]) : new Array<number>(channels).fill(v as number);
}

/** The output height and width, which must not depend on the image and must fit the model's. */
function outputSize(
  size: Size | undefined,
  crop: ImagePipeline['centerCrop'],
  padToSquare: boolean,
  target: InputTarget,
): { height: number; width: number } {
  let out = crop;
  if (!out && size && padToSquare && !('shortest_edge' in size)) {
    const edge = 'height' in size ? Math.max(size.height, size.width) : size.longest_edge;
    out = { height: edge, width: edge };
  } else if (!out && size && 'height' in size) out = size;
  if (!out)
    return fail(
      'the pipeline gives images of varying sizes, and the model takes one size: resize to {"height", "width"} or {"longest_edge"} with pad_to_square, or add do_center_crop with crop_size',
    );
  if ((target.height !== undefined && target.height !== out.height) || (target.width !== undefined && target.width !== out.width))
    fail(`the pipeline gives ${out.height}x${out.width} images; the model input takes ${target.height ?? 'any'}x${target.width ?? 'any'}`);
  return out;
}

/** Python's round(): halves to even. */
const roundHalfEven = (x: number) => {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/**
 * [height, width] after resizing an h × w image to `size`, with Hugging Face's arithmetic:
 * shortest_edge as torchvision (long edge truncated; with longest_edge, as DETR: rescaled so the
 * long edge fits, rounded), longest_edge alone as SAM (short edge rounded).
 */
export function resizedSize(h: number, w: number, size: Size): [number, number] {
  if ('height' in size) return [size.height, size.width];
  const short = Math.min(h, w);
  const long = Math.max(h, w);
  let newShort: number;
  let newLong: number;
  if (!('shortest_edge' in size)) {
    newLong = size.longest_edge;
    newShort = Math.max(1, Math.trunc((short * newLong) / long + 0.5));
  } else if (size.longest_edge === undefined) {
    newShort = size.shortest_edge;
    newLong = Math.trunc((newShort * long) / short);
  } else {
    let edge = size.shortest_edge;
    let raw = edge;
    if ((long / short) * edge > size.longest_edge) {
      raw = (size.longest_edge * short) / long;
      edge = roundHalfEven(raw);
    }
    if (short === edge) return [h, w];
    newShort = edge;
    newLong = Math.trunc((raw * long) / short);
  }
  return h <= w ? [newShort, newLong] : [newLong, newShort];
}

/** PIL's luma (`convert("L")`): R 299/1000 + G 587/1000 + B 114/1000, in 16-bit fixed point, rounded. */
const luma = (r: number, g: number, b: number) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
/** Composites a byte with alpha `a` over a background byte, rounded. */
const over = (v: number, a: number, bg: number) => Math.trunc((v * a + bg * (255 - a) + 127) / 255);

/** Flattens alpha onto the background and converts to 1 (grayscale) or 3 channels. */
function convert(px: Pixels, p: ImagePipeline): Pixels {
  const c = p.grayscale ? 1 : 3;
  // Opaque pixels with the output's channels already (no step writes to its input).
  if (px.channels === c) return px;
  const n = px.width * px.height;
  const out = scratchBytes(n * c);
  const [br, bg, bb] = p.background;
  const bgLuma = luma(br, bg, bb);
  const d = px.data;
  const k = px.channels;
  const alpha = k === 2 || k === 4;
  for (let i = 0, at = 0, o = 0; i < n; i++, at += k, o += c) {
    const a = alpha ? d[at + k - 1]! : 255;
    if (k <= 2) {
      // Gray onto the background's luma for gray output, onto each of its channels otherwise.
      if (c === 1) out[o] = a === 255 ? d[at]! : over(d[at]!, a, bgLuma);
      else for (let ch = 0; ch < 3; ch++) out[o + ch] = over(d[at]!, a, p.background[ch]!);
      continue;
    }
    const r = a === 255 ? d[at]! : over(d[at]!, a, br);
    const g = a === 255 ? d[at + 1]! : over(d[at + 1]!, a, bg);
    const b = a === 255 ? d[at + 2]! : over(d[at + 2]!, a, bb);
    if (c === 1) out[o] = luma(r, g, b);
    else {
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = b;
    }
  }
  return { width: px.width, height: px.height, channels: c, data: out };
}

/** The colour of the image's outermost pixels: per channel, the (lower) median of the border ring. */
function borderColour(img: Pixels): number[] {
  const { width: w, height: h, channels: c, data } = img;
  // One 256-bin histogram per channel.
  const hist = scratchInt32(256 * c);
  let n = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x += y === 0 || y === h - 1 ? 1 : Math.max(1, w - 1)) {
      for (let ch = 0, at = (y * w + x) * c; ch < c; ch++) hist[256 * ch + data[at + ch]!]!++;
      n++;
    }
  const colour: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    let v = 0;
    for (let seen = 0; v < 255 && (seen += hist[256 * ch + v]!) <= (n - 1) / 2; ) v++;
    colour.push(v);
  }
  return colour;
}

/** Crops to the bounding box of the pixels farther than `threshold` × 255 from `colour` in any channel (all of it if none are). */
function trim(img: Pixels, colour: number[], threshold: number): Pixels {
  const { width: w, height: h, channels: c, data } = img;
  const limit = threshold * 255;
  // Per channel and byte: whether it is that far from the colour.
  const far = scratchBytes(256 * c);
  for (let ch = 0; ch < c; ch++) for (let v = 0; v < 256; v++) far[256 * ch + v] = Math.abs(v - colour[ch]!) > limit ? 1 : 0;
  const content = (x: number, y: number) => {
    for (let ch = 0, at = (y * w + x) * c; ch < c; ch++) if (far[256 * ch + data[at + ch]!]) return true;
    return false;
  };
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    let x = 0;
    while (x < w && !content(x, y)) x++;
    if (x === w) continue;
    x0 = Math.min(x0, x);
    // From the right, only columns past the box found so far can widen it.
    let r = w - 1;
    while (r > Math.max(x, x1) && !content(r, y)) r--;
    x1 = Math.max(x1, r);
    y0 = Math.min(y0, y);
    y1 = y;
  }
  return x1 < 0 ? img : place(img, x1 - x0 + 1, y1 - y0 + 1, -x0, -y0, colour);
}

/** A `w` × `h` canvas of `fill` with `img` drawn at (`dx`, `dy`), cropped to the canvas. */
function place(img: Pixels, w: number, h: number, dx: number, dy: number, fill: readonly number[]): Pixels {
  const c = img.channels;
  const out = scratchBytes(w * h * c);
  if (dx > 0 || dy > 0 || dx + img.width < w || dy + img.height < h) {
    if (c === 1) out.fill(fill[0]!);
    else for (let i = 0; i < out.length; i++) out[i] = fill[i % c]!;
  }
  const xa = Math.max(0, dx);
  const xb = Math.min(w, dx + img.width);
  for (let y = Math.max(0, dy); y < Math.min(h, dy + img.height); y++)
    if (xb > xa) out.set(img.data.subarray(((y - dy) * img.width + xa - dx) * c, ((y - dy) * img.width + xb - dx) * c), (y * w + xa) * c);
  return { width: w, height: h, channels: c, data: out };
}

/** Extends the shorter edge to the longer, centred (the extra pixel of an odd difference after), with `fill`. */
function padToSquare(img: Pixels, fill: number[]): Pixels {
  const e = Math.max(img.width, img.height);
  return place(img, e, e, Math.floor((e - img.width) / 2), Math.floor((e - img.height) / 2), fill);
}

/** Hugging Face's center_crop: the central box, with zeros where the image is smaller than the box. */
function centerCrop(img: Pixels, { height, width }: { height: number; width: number }): Pixels {
  // HF centres the crop at floor((size - crop) / 2) and pads a smaller image at ceil(... / 2).
  const off = (size: number, crop: number) => (crop > size ? Math.ceil((crop - size) / 2) : -Math.floor((size - crop) / 2));
  return place(img, width, height, off(img.width, width), off(img.height, height), [0, 0, 0]);
}

/**
 * The pipeline's output of decoded pixels: a float32 tensor of output.channels × height × width
 * values in the output's layout (one image, no batch axis). Steps that would leave the image as
 * it is (a resize to its own size) are skipped; the images between steps are scratch.
 */
export function preprocessImage(pixels: Pixels, p: ImagePipeline): Float32Array {
  resetScratch();
  let img = convert(pixels, p);
  const border = p.trimThreshold !== undefined || p.padToSquare || p.negate === 'auto' ? borderColour(img) : [];
  if (p.trimThreshold !== undefined) img = trim(img, border, p.trimThreshold);
  if (p.resize) {
    const [h, w] = resizedSize(img.height, img.width, p.resize.size);
    if (h !== img.height || w !== img.width) img = resize(img, w, h, p.resize.resample);
  }
  if (p.padToSquare) img = padToSquare(img, border);
  if (p.centerCrop) img = centerCrop(img, p.centerCrop);
  const negate = p.negate === 'auto' ? (border.length === 1 ? border[0]! : luma(border[0]!, border[1]!, border[2]!)) >= 128 : p.negate;
  return toTensor(img, p.scale, p.offset, p.output.layout, byteMaps(img, negate, p.autocontrast));
}

/** Per image channel, the byte each byte becomes: 255 − byte when negating, then the autocontrast stretch. */
function byteMaps(img: Pixels, negate: boolean, autocontrast: boolean): Uint8Array[] {
  const { channels, data } = img;
  const maps: Uint8Array[] = [];
  for (let ch = 0; ch < channels; ch++) {
    const map = scratchBytes(256);
    for (let b = 0; b < 256; b++) map[b] = negate ? 255 - b : b;
    maps.push(map);
    if (!autocontrast) continue;
    let lo = 255;
    let hi = 0;
    for (let i = ch; i < data.length; i += channels) {
      const v = map[data[i]!]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    // PIL leaves a flat channel as it is, and truncates the stretched values.
    if (hi > lo) for (let b = 0; b < 256; b++) map[b] = Math.max(0, Math.min(255, Math.trunc(((map[b]! - lo) * 255) / (hi - lo))));
  }
  return maps;
}

/** toTensor's value per byte, for one channel at a time (allocating it costs more than filling it). */
const TABLE = new Float32Array(256);

/**
 * 8-bit pixels (at the model's size) → float32 values: per output channel, byte × scale + offset
 * (the byte first passed through `maps`, one per image channel, when given), in `layout`. A
 * 1-channel image fills every output channel.
 */
export function toTensor(img: Pixels, scale: readonly number[], offset: readonly number[], layout: Layout, maps?: Uint8Array[]): Float32Array {
  const channels = scale.length;
  const { channels: k, data } = img;
  const n = img.width * img.height;
  const out = new Float32Array(n * channels);
  for (let c = 0; c < channels; c++) {
    const src = k === 1 ? 0 : c;
    const map = maps?.[src];
    for (let b = 0; b < 256; b++) TABLE[b] = (map ? map[b]! : b) * scale[c]! + offset[c]!;
    // This channel's value for pixel i goes to first + i × step.
    const first = layout === 'NCHW' ? c * n : c;
    const step = layout === 'NCHW' ? 1 : channels;
    for (let i = 0, at = src, o = first; i < n; i++, at += k, o += step) out[o] = TABLE[data[at]!]!;
  }
  return out;
}
