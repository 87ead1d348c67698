import type { Pixels } from './decode.js';

/** PIL's resampling filters, indexed by the integers Hugging Face configs store (`PIL.Image.Resampling`). */
export const RESAMPLE = ['nearest', 'lanczos', 'bilinear', 'bicubic', 'box', 'hamming'] as const;
export type Resample = (typeof RESAMPLE)[number];

interface Filter {
  /** Half-width at scale 1; widened by the scale factor when downscaling (antialiasing). */
  support: number;
  at(x: number): number;
}

const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
const FILTERS: Record<Exclude<Resample, 'nearest'>, Filter> = {
  box: { support: 0.5, at: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: { support: 1, at: (x) => Math.max(0, 1 - Math.abs(x)) },
  hamming: { support: 1, at: (x) => (Math.abs(x) >= 1 ? 0 : sinc(x) * (0.54 + 0.46 * Math.cos(Math.PI * x))) },
  bicubic: {
    support: 2,
    at: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      return t < 1 ? ((a + 2) * t - (a + 3)) * t * t + 1 : t < 2 ? (((t - 5) * t + 8) * t - 4) * a : 0;
    },
  },
  lanczos: { support: 3, at: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

// PIL resamples 8-bit images with integer weights of 22 fractional bits and rounds each pass to a byte.
const PRECISION = 22;
const ONE = 2 ** PRECISION;

/** Per output pixel: the first input pixel, how many it weighs, and their fixed-point weights (`taps` per output pixel). */
interface Weights {
  first: Int32Array;
  count: Int32Array;
  k: Int32Array;
  taps: number;
}

function weights(inSize: number, outSize: number, filter: Filter): Weights {
  const scale = inSize / outSize;
  const stretch = Math.max(scale, 1);
  const support = filter.support * stretch;
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Int32Array(outSize * taps);
  const w = new Float64Array(taps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let sum = 0;
    for (let j = 0; j < n; j++) sum += w[j] = filter.at((j + lo - center + 0.5) * (1 / stretch));
    for (let j = 0; j < n; j++) {
      const v = sum === 0 ? w[j]! : w[j]! / sum;
      k[o * taps + j] = Math.trunc(v < 0 ? v * ONE - 0.5 : v * ONE + 0.5);
    }
    first[o] = lo;
    count[o] = n;
  }
  return { first, count, k, taps };
}

const clip8 = (acc: number) => (acc <= 0 ? 0 : acc >= 256 * ONE ? 255 : Math.floor(acc / ONE));

/** One pass along x (`alongX`) or y, to `outSize` pixels on that axis. */
function pass(img: Pixels, outSize: number, alongX: boolean, filter: Filter): Pixels {
  const { width, height, channels: c, data } = img;
  const { first, count, k, taps } = weights(alongX ? width : height, outSize, filter);
  const outW = alongX ? outSize : width;
  const outH = alongX ? height : outSize;
  const out = new Uint8Array(outW * outH * c);
  // Input index of tap j for output (x, y): along x the taps step by one pixel, along y by one row.
  const tapStep = alongX ? c : width * c;
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++) {
      const o = alongX ? x : y;
      const base = alongX ? (y * width + first[o]!) * c : (first[o]! * width + x) * c;
      for (let ch = 0; ch < c; ch++) {
        let acc = ONE / 2;
        for (let j = 0, at = base + ch; j < count[o]!; j++, at += tapStep) acc += data[at]! * k[o * taps + j]!;
        out[(y * outW + x) * c + ch] = clip8(acc);
      }
    }
  return { width: outW, height: outH, channels: c, data: out };
}

function nearest(img: Pixels, outW: number, outH: number): Pixels {
  const { width, height, channels: c, data } = img;
  const out = new Uint8Array(outW * outH * c);
  const xs = Int32Array.from({ length: outW }, (_, x) => Math.min(Math.floor(((x + 0.5) * width) / outW), width - 1));
  for (let y = 0; y < outH; y++) {
    const sy = Math.min(Math.floor(((y + 0.5) * height) / outH), height - 1);
    for (let x = 0; x < outW; x++) out.set(data.subarray((sy * width + xs[x]!) * c, (sy * width + xs[x]! + 1) * c), (y * outW + x) * c);
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/**
 * Resizes 8-bit pixels to `outW` × `outH` as PIL's `Image.resize` does: nearest samples pixel
 * centres; the other filters are separable (x pass, then y pass, each rounded to bytes) and
 * widen with the scale factor when downscaling, so they average every input pixel they cover.
 */
export function resize(img: Pixels, outW: number, outH: number, resample: Resample): Pixels {
  if (resample === 'nearest') return nearest(img, outW, outH);
  const filter = FILTERS[resample];
  const wide = outW === img.width ? img : pass(img, outW, true, filter);
  return outH === img.height ? wide : pass(wide, outH, false, filter);
}
