import zlib from 'node:zlib';
import jpeg from 'jpeg-js';
import sharp from 'sharp';
import { invalidArgument } from '../../services/common/statusError.js';

/** Decoded 8-bit pixels, row-major, channels interleaved: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. */
export interface Pixels {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/**
 * PNG or JPEG bytes → pixels. PNG is decoded here (node:zlib inflate, no sharp call). JPEG: small
 * ones that jpeg-js decodes as sharp would (gray, or colour without chroma subsampling) by jpeg-js,
 * the rest by sharp in one call; the size is read from the frame header first either way. EXIF
 * orientation is not applied (nor was it before), nor are a PNG's ICC profile and gamma.
 * Refuses with INVALID_ARGUMENT: empty bytes, formats other than PNG and JPEG, images of more
 * than `maxPixels` pixels (judged from the header, before any pixel is decoded), and truncated
 * or corrupt data.
 */
export async function decodeImage(bytes: Uint8Array, maxPixels: number): Promise<Pixels> {
  if (bytes.length === 0) throw invalidArgument('image is empty');
  if (startsWith(bytes, PNG_SIGNATURE)) return decodePng(bytes, maxPixels);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return decodeJpeg(bytes, maxPixels);
  let format: string | undefined;
  try {
    // Refusal path only: sharp names the format the way the encoder always has.
    ({ format } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch {
    throw notDecodable();
  }
  throw invalidArgument(`image format ${format ?? 'unknown'} is not supported; send PNG or JPEG`);
}

const notDecodable = () => invalidArgument('image is not a decodable PNG or JPEG');
const corrupt = (why: string) => invalidArgument(`image could not be decoded: ${why}`);

function checkSize(width: number, height: number, maxPixels: number): void {
  if (width * height > maxPixels)
    throw invalidArgument(`image is ${width}x${height}, more than the ${maxPixels} pixels this encoder decodes`);
}

const startsWith = (bytes: Uint8Array, prefix: readonly number[]) => prefix.every((b, i) => bytes[i] === b);
const u32 = (b: Uint8Array, at: number) => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
const u16 = (b: Uint8Array, at: number) => (b[at]! << 8) | b[at + 1]!;

// ---- JPEG ----

/**
 * JPEGs of up to this many samples (pixels × components) go to jpeg-js: sharp's fixed cost per
 * call (about 0.4 ms of CPU) outweighs jpeg-js's slower decode up to about 150x150 gray or 80x80
 * colour (bench/decode.ts).
 */
const JS_JPEG_MAX_SAMPLES = 128 * 128;

interface JpegFrame {
  width: number;
  height: number;
  /** The SOF marker: C0 baseline, C1 extended, C2 progressive (Huffman); the rest arithmetic, lossless or hierarchical. */
  marker: number;
  precision: number;
  components: number;
  /** Whether some component has other sampling factors than the first (chroma subsampling). */
  subsampled: boolean;
}

/** SOFn markers (frame headers); C4 (DHT), C8 (JPG) and CC (DAC) share the range. */
const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

/** The first frame header, or undefined if the header ends (or scan data starts) before one. */
function jpegFrame(b: Uint8Array): JpegFrame | undefined {
  let at = 2;
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // TEM and RSTn stand alone
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return undefined;
    const end = at + 2 + u16(b, at + 2);
    if (isSof(marker)) {
      const components = b[at + 9] ?? 0;
      if (end > b.length || at + 10 + 3 * components > end) return undefined;
      const sampling = (c: number) => b[at + 11 + 3 * c]!;
      let subsampled = false;
      for (let c = 1; c < components; c++) subsampled ||= sampling(c) !== sampling(0);
      const frame = { marker, precision: b[at + 4]!, height: u16(b, at + 5), width: u16(b, at + 7), components, subsampled };
      // Height 0 defers it to a DNL marker, which libjpeg does not support either.
      return frame.width > 0 && frame.height > 0 ? frame : undefined;
    }
    at = end;
  }
  return undefined;
}

async function decodeJpeg(bytes: Uint8Array, maxPixels: number): Promise<Pixels> {
  const frame = jpegFrame(bytes);
  if (!frame) throw notDecodable();
  checkSize(frame.width, frame.height, maxPixels);
  // jpeg-js upsamples chroma by repetition where libjpeg interpolates (up to 150 levels apart on a
  // 28x28 colour image), so it gets only gray and unsubsampled colour: within 3 levels of sharp.
  const jsDecodes =
    frame.width * frame.height * frame.components <= JS_JPEG_MAX_SAMPLES && frame.precision === 8 && frame.marker <= 0xc2 &&
    (frame.components === 1 || (frame.components === 3 && !frame.subsampled));
  return (jsDecodes && decodeWithJpegJs(bytes, frame)) || decodeWithSharp(bytes, frame, maxPixels);
}

/** The pixels, or undefined where jpeg-js refuses the data: sharp then decides, with its own message. */
function decodeWithJpegJs(bytes: Uint8Array, frame: JpegFrame): Pixels | undefined {
  let rgb: Uint8Array;
  try {
    ({ data: rgb } = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: false,
      // A later frame header could declare a larger image than the first one checked.
      maxResolutionInMP: JS_JPEG_MAX_SAMPLES / 1e6,
      maxMemoryUsageInMB: 16,
    }));
  } catch {
    return undefined;
  }
  const { width, height } = frame;
  if (rgb.length !== width * height * 3) return undefined;
  if (frame.components === 3) return { width, height, channels: 3, data: rgb };
  // jpeg-js repeats gray in three channels.
  const data = new Uint8Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = rgb[3 * i]!;
  return { width, height, channels: 1, data };
}

async function decodeWithSharp(bytes: Uint8Array, frame: JpegFrame, maxPixels: number): Promise<Pixels> {
  try {
    const image = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' });
    // sharp answers in sRGB unless asked: keep a gray image's one channel.
    if (frame.components === 1) image.toColourspace('b-w');
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, channels: info.channels, data };
  } catch (err) {
    throw corrupt((err as Error).message.split('\n')[0]!);
  }
}

// ---- PNG ----

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;

/** Bit depths allowed for each colour type, and its samples per pixel. */
const COLOUR_TYPES: Record<number, { depths: number[]; samples: number }> = {
  0: { depths: [1, 2, 4, 8, 16], samples: 1 },
  2: { depths: [8, 16], samples: 3 },
  3: { depths: [1, 2, 4, 8], samples: 1 },
  4: { depths: [8, 16], samples: 2 },
  6: { depths: [8, 16], samples: 4 },
};

/** Adam7 passes: x start, y start, x step, y step. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function tableCrc32(bytes: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
// zlib.crc32 arrived in Node 20.15; the engines field allows 20.9.
const crc32: (bytes: Uint8Array) => number = zlib.crc32 ?? tableCrc32;

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colourType: number;
  interlaced: boolean;
}

interface Chunk {
  type: string;
  data: Uint8Array;
}

/** A critical chunk's type starts with an upper-case letter. */
const isCritical = (type: string) => type >= 'A' && type < '[';

/**
 * The chunks from `at` on, up to and including IEND. The CRC is checked for the chunks read:
 * the critical ones and tRNS (others are skipped unchecked, as libpng does).
 */
function* chunks(b: Uint8Array, at: number): Generator<Chunk> {
  for (;;) {
    if (at + 12 > b.length) throw corrupt('PNG data ends before its IEND chunk');
    const end = at + 8 + u32(b, at);
    if (end + 4 > b.length) throw corrupt('PNG data ends inside a chunk');
    const type = String.fromCharCode(b[at + 4]!, b[at + 5]!, b[at + 6]!, b[at + 7]!);
    if ((isCritical(type) || type === 'tRNS') && crc32(b.subarray(at + 4, end)) !== u32(b, end))
      throw corrupt(`PNG ${type} chunk has a bad CRC`);
    yield { type, data: b.subarray(at + 8, end) };
    if (type === 'IEND') return;
    at = end + 4;
  }
}

function readHeader(b: Uint8Array): PngHeader {
  // IHDR must come first: length 13 at byte 8, type at 12, data at 16, CRC at 29.
  if (b.length < 33 || u32(b, 8) !== 13 || !startsWith(b.subarray(12), [0x49, 0x48, 0x44, 0x52])) throw notDecodable();
  if (crc32(b.subarray(12, 29)) !== u32(b, 29)) throw notDecodable();
  const header = { width: u32(b, 16), height: u32(b, 20), depth: b[24]!, colourType: b[25]!, interlaced: b[28] === 1 };
  const colour = COLOUR_TYPES[header.colourType];
  if (
    header.width === 0 || header.height === 0 || header.width > 0x7fffffff || header.height > 0x7fffffff ||
    !colour?.depths.includes(header.depth) || b[26] !== 0 || b[27] !== 0 || b[28]! > 1
  )
    throw notDecodable();
  return header;
}

/** Bytes of one filtered scanline (without its filter byte) of a row `width` pixels wide. */
const rowBytes = (width: number, bitsPerPixel: number) => Math.ceil((width * bitsPerPixel) / 8);

/** Undoes the scanline filters of one (sub)image in place; `at` is its first filter byte. */
function unfilter(buf: Uint8Array, at: number, rows: number, stride: number, bpp: number): void {
  for (let y = 0; y < rows; y++) {
    const row = at + y * (stride + 1);
    const filter = buf[row]!;
    const cur = row + 1;
    const prev = cur - stride - 1;
    // In the first row the row above counts as zeros: Up is None, and Average and Paeth simplify.
    const first = y === 0;
    switch (filter) {
      case 0:
        break;
      case 1:
        for (let i = bpp; i < stride; i++) buf[cur + i] = buf[cur + i]! + buf[cur + i - bpp]!;
        break;
      case 2:
        if (!first) for (let i = 0; i < stride; i++) buf[cur + i] = buf[cur + i]! + buf[prev + i]!;
        break;
      case 3:
        if (first) for (let i = bpp; i < stride; i++) buf[cur + i] = buf[cur + i]! + (buf[cur + i - bpp]! >> 1);
        else {
          for (let i = 0; i < bpp; i++) buf[cur + i] = buf[cur + i]! + (buf[prev + i]! >> 1);
          for (let i = bpp; i < stride; i++) buf[cur + i] = buf[cur + i]! + ((buf[cur + i - bpp]! + buf[prev + i]!) >> 1);
        }
        break;
      case 4:
        if (first) for (let i = bpp; i < stride; i++) buf[cur + i] = buf[cur + i]! + buf[cur + i - bpp]!;
        else {
          for (let i = 0; i < bpp; i++) buf[cur + i] = buf[cur + i]! + buf[prev + i]!;
          for (let i = bpp; i < stride; i++) {
            const a = buf[cur + i - bpp]!;
            const b = buf[prev + i]!;
            const c = buf[prev + i - bpp]!;
            // |p − a|, |p − b|, |p − c| for p = a + b − c.
            const pa = Math.abs(b - c);
            const pb = Math.abs(a - c);
            const pc = Math.abs(a + b - 2 * c);
            buf[cur + i] = buf[cur + i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          }
        }
        break;
      default:
        throw corrupt(`PNG scanline ${y} has unknown filter type ${filter}`);
    }
  }
}

function decodePng(b: Uint8Array, maxPixels: number): Pixels {
  const header = readHeader(b);
  const { width, height, depth, colourType, interlaced } = header;
  checkSize(width, height, maxPixels);

  let palette: Uint8Array | undefined;
  let trns: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let idatEnded = false;
  for (const { type, data } of chunks(b, 33)) {
    if (type === 'IDAT') {
      if (idatEnded) throw corrupt('PNG IDAT chunks are not consecutive');
      idat.push(data);
    } else if (idat.length > 0) idatEnded = true;
    if (type === 'PLTE') {
      if (data.length === 0 || data.length % 3 !== 0 || data.length > 768) throw corrupt('PNG PLTE chunk has a bad length');
      palette = data;
    } else if (type === 'tRNS') trns = data;
    else if (isCritical(type) && type !== 'IDAT' && type !== 'IEND') throw corrupt(`PNG has an unexpected critical chunk ${type}`);
  }
  if (idat.length === 0) throw corrupt('PNG has no IDAT chunk');
  if (colourType === 3 && !palette) throw corrupt('PNG palette image has no PLTE chunk');

  const samples = COLOUR_TYPES[colourType]!.samples;
  const bitsPerPixel = samples * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const passes = interlaced
    ? ADAM7.map(([x0, y0, dx, dy]) => ({ x0, y0, dx, dy, w: Math.ceil((width - x0) / dx), h: Math.ceil((height - y0) / dy) }))
    : [{ x0: 0, y0: 0, dx: 1, dy: 1, w: width, h: height }];
  let expected = 0;
  for (const p of passes) if (p.w > 0 && p.h > 0) expected += p.h * (1 + rowBytes(p.w, bitsPerPixel));

  const raw = inflate(idat.length === 1 ? idat[0]! : Buffer.concat(idat), expected);
  if (raw.length !== expected) throw corrupt(`PNG pixel data inflates to ${raw.length} bytes; its header implies ${expected}`);

  const channels = pixelChannels(header, trns);
  if (!interlaced && isVerbatim(header, channels)) {
    // The unfiltered rows are the pixels: close the gaps their filter bytes leave, then copy once.
    const stride = rowBytes(width, bitsPerPixel);
    unfilter(raw, 0, height, stride, bpp);
    for (let y = 0; y < height; y++) raw.copyWithin(y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
    return { width, height, channels, data: new Uint8Array(raw.subarray(0, height * stride)) };
  }
  const out = pixelWriter(header, channels, palette, trns);
  let at = 0;
  for (const p of passes) {
    if (p.w === 0 || p.h === 0) continue;
    const stride = rowBytes(p.w, bitsPerPixel);
    unfilter(raw, at, p.h, stride, bpp);
    for (let y = 0; y < p.h; y++) out.row(raw, at + y * (stride + 1) + 1, p.y0 + y * p.dy, p.x0, p.dx, p.w);
    at += p.h * (stride + 1);
  }
  return { width, height, channels, data: out.data };
}

/**
 * The pixel data inflated, capped at `expected` bytes: the exact size the header implies, so a
 * deflate bomb stops there.
 */
function inflate(data: Uint8Array, expected: number): Buffer {
  // One output chunk just larger than a small image's pixels (from Buffer's pool) rather than
  // zlib's 16 KiB: about 1 µs, a fifth of the call.
  const chunkSize = Math.max(zlib.constants.Z_MIN_CHUNK, Math.min(zlib.constants.Z_DEFAULT_CHUNK, expected + 1));
  try {
    return zlib.inflateSync(data, { maxOutputLength: expected, chunkSize });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw corrupt(e.code === 'ERR_BUFFER_TOO_LARGE' ? `PNG pixel data inflates to more than the ${expected} bytes its header implies` : `PNG pixel data: ${e.message}`);
  }
}

/** Channels of the decoded pixels. tRNS: a colour key for gray and RGB (→ an alpha channel), alpha per palette entry; ignored with an alpha channel, as libpng does. */
function pixelChannels({ colourType }: PngHeader, trns: Uint8Array | undefined): 1 | 2 | 3 | 4 {
  const key = trns !== undefined && (colourType === 0 ? trns.length >= 2 : colourType === 2 ? trns.length >= 6 : colourType === 3);
  return ((colourType === 3 ? 3 : COLOUR_TYPES[colourType]!.samples) + (key ? 1 : 0)) as 1 | 2 | 3 | 4;
}

/** Whether the scanlines hold the pixels as they are: 8-bit samples, no palette, no colour key. */
const isVerbatim = ({ depth, colourType }: PngHeader, channels: number) => depth === 8 && colourType !== 3 && channels === COLOUR_TYPES[colourType]!.samples;

/** Writes unfiltered scanlines into 8-bit pixels: `row(src, at, y, x0, dx, count)` fills every `dx`-th pixel of row `y` from `x0`. */
function pixelWriter(
  header: PngHeader,
  channels: 1 | 2 | 3 | 4,
  palette: Uint8Array | undefined,
  trns: Uint8Array | undefined,
): { data: Uint8Array; row: (src: Uint8Array, at: number, y: number, x0: number, dx: number, count: number) => void } {
  const { width, height, depth, colourType } = header;
  const samples = COLOUR_TYPES[colourType]!.samples;
  const key = channels > (colourType === 3 ? 3 : samples);
  const data = new Uint8Array(width * height * channels);

  // 8-bit samples kept as they are, whole rows copied.
  if (isVerbatim(header, channels))
    return {
      data,
      row(src, at, y, x0, dx, count) {
        if (dx === 1) data.set(src.subarray(at, at + count * channels), y * width * channels);
        else for (let i = 0, o = (y * width + x0) * channels; i < count; i++, o += dx * channels)
          for (let c = 0; c < channels; c++) data[o + c] = src[at + i * channels + c]!;
      },
    };

  const mask = (1 << Math.min(depth, 8)) - 1;
  const scale = colourType === 3 ? 1 : 255 / mask;
  /** Sample `k` of a row at full depth (16-bit as a whole). */
  const sample =
    depth === 16 ? (src: Uint8Array, at: number, k: number) => u16(src, at + 2 * k)
    : depth === 8 ? (src: Uint8Array, at: number, k: number) => src[at + k]!
    : (src: Uint8Array, at: number, k: number) => (src[at + ((k * depth) >> 3)]! >> (8 - depth - ((k * depth) & 7))) & mask;
  const to8 = depth === 16 ? (v: number) => v >> 8 : (v: number) => v * scale;
  const keyValues = key && colourType !== 3 ? Array.from({ length: samples }, (_, s) => u16(trns!, 2 * s)) : undefined;
  const paletteEntries = palette ? palette.length / 3 : 0;

  return {
    data,
    row(src, at, y, x0, dx, count) {
      for (let i = 0, o = (y * width + x0) * channels; i < count; i++, o += dx * channels) {
        if (colourType === 3) {
          const index = sample(src, at, i);
          if (index >= paletteEntries) throw corrupt(`PNG palette index ${index} is beyond its ${paletteEntries} entries`);
          data[o] = palette![3 * index]!;
          data[o + 1] = palette![3 * index + 1]!;
          data[o + 2] = palette![3 * index + 2]!;
          if (key) data[o + 3] = index < trns!.length ? trns![index]! : 255;
          continue;
        }
        let keyed = keyValues !== undefined;
        for (let s = 0; s < samples; s++) {
          const v = sample(src, at, i * samples + s);
          if (keyed && v !== keyValues![s]) keyed = false;
          data[o + s] = to8(v);
        }
        if (keyValues) data[o + samples] = keyed ? 0 : 255;
      }
    },
  };
}
