import { deflateSync, crc32 } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { decodeImage, type Pixels } from '../matryoshka/image/decode.js';
import { loadTestSlice, slicePixels } from '../cli/testSlice.js';
import { StatusError } from '../services/common/statusError.js';
import { jpegDeclaring, pngDeclaring } from './helpers/hostile.js';

const MAX_PIXELS = 2048 * 2048;
const NOT_DECODABLE = 'image is not a decodable PNG or JPEG';
const REFUSED_DATA = /^image is not a decodable PNG or JPEG$|^image could not be decoded: /;

/** The refusal `decodeImage` gives: always a StatusError with INVALID_ARGUMENT; its message. */
async function refusal(bytes: Uint8Array, maxPixels = MAX_PIXELS): Promise<string> {
  const err = await decodeImage(bytes, maxPixels).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StatusError);
  expect((err as StatusError).code).toBe(status.INVALID_ARGUMENT);
  return (err as StatusError).message;
}

/** sharp's decode of the same bytes; sharp answers in sRGB, so gray comes as three equal channels. */
async function sharpPixels(bytes: Uint8Array): Promise<Pixels> {
  const { data, info } = await sharp(bytes, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data) };
}

/** Gray and gray+alpha pixels as sRGB: the gray repeated in three channels. */
function asSrgb({ width, height, channels, data }: Pixels): Pixels {
  if (channels > 2) return { width, height, channels, data };
  const out = new Uint8Array(width * height * (channels + 2));
  for (let i = 0, o = 0; i < data.length; i += channels) {
    out[o++] = out[o++] = out[o++] = data[i]!;
    if (channels === 2) out[o++] = data[i + 1]!;
  }
  return { width, height, channels: (channels + 2) as 3 | 4, data: out };
}

/** Largest absolute difference between two equally long byte arrays. */
function maxDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

// ---- a PNG writer for what sharp does not write: tRNS colour keys, sub-byte gray, every filter type ----

const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

interface PngSpec {
  width: number;
  height: number;
  colourType: number;
  depth: number;
  interlaced: boolean;
  palette?: Uint8Array;
  trns?: Uint8Array;
  /** Sample `s` of pixel (x, y), at the PNG's bit depth. */
  sample: (x: number, y: number, s: number) => number;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function filterRow(type: number, line: Uint8Array, prev: Uint8Array, bpp: number): Uint8Array {
  return line.map((v, i) => {
    const a = i >= bpp ? line[i - bpp]! : 0;
    const b = prev[i]!;
    const c = i >= bpp ? prev[i - bpp]! : 0;
    const p = a + b - c;
    const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
    return v - [0, a, b, (a + b) >> 1, paeth][type]!;
  });
}

/** The scanlines of `spec`, each filtered by the next of the five filter types in turn. */
function scanlines(spec: PngSpec): Buffer {
  const samples = SAMPLES[spec.colourType]!;
  const bits = samples * spec.depth;
  const bpp = Math.max(1, bits >> 3);
  const rows: Uint8Array[] = [];
  for (const [x0, y0, dx, dy] of spec.interlaced ? ADAM7 : [[0, 0, 1, 1] as const]) {
    const w = Math.ceil((spec.width - x0) / dx);
    const h = Math.ceil((spec.height - y0) / dy);
    if (w <= 0 || h <= 0) continue;
    let prev = new Uint8Array(Math.ceil((w * bits) / 8));
    for (let r = 0; r < h; r++) {
      const line = new Uint8Array(prev.length);
      for (let i = 0; i < w; i++)
        for (let s = 0; s < samples; s++) {
          const v = spec.sample(x0 + i * dx, y0 + r * dy, s);
          const k = i * samples + s;
          if (spec.depth === 16) line.set([v >> 8, v & 0xff], 2 * k);
          else line[(k * spec.depth) >> 3]! |= v << (8 - spec.depth - ((k * spec.depth) & 7));
        }
      const type = rows.length % 5;
      rows.push(Uint8Array.of(type), filterRow(type, line, prev, bpp));
      prev = line;
    }
  }
  return Buffer.concat(rows);
}

function ihdr(spec: Pick<PngSpec, 'width' | 'height' | 'depth' | 'colourType' | 'interlaced'>): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(spec.width, 0);
  data.writeUInt32BE(spec.height, 4);
  data.set([spec.depth, spec.colourType, 0, 0, spec.interlaced ? 1 : 0], 8);
  return chunk('IHDR', data);
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const IEND = chunk('IEND', new Uint8Array(0));

/** A PNG of `spec`, its compressed data split over three IDAT chunks. */
function writePng(spec: PngSpec): Buffer {
  const z = deflateSync(scanlines(spec));
  const third = Math.ceil(z.length / 3);
  return Buffer.concat([
    SIGNATURE,
    ihdr(spec),
    ...(spec.palette ? [chunk('PLTE', spec.palette)] : []),
    ...(spec.trns ? [chunk('tRNS', spec.trns)] : []),
    ...[0, 1, 2].map((i) => chunk('IDAT', z.subarray(i * third, (i + 1) * third))),
    IEND,
  ]);
}

const hash = (x: number, y: number, s: number) => Math.imul(x * 7919 + y * 104729 + s * 1299709 + 1, 0x9e3779b1) >>> 16;
const u16s = (...values: number[]) => Buffer.from(values.flatMap((v) => [v >> 8, v & 0xff]));

/** Every colour type, bit depth and interlacing, with and without tRNS, at sizes that leave Adam7 passes empty and rows ending mid-byte. */
function writtenCases(): { name: string; png: Buffer; channels: number }[] {
  const cases: { name: string; png: Buffer; channels: number }[] = [];
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  for (const [type, list] of Object.entries(depths).map(([t, d]) => [Number(t), d] as const))
    for (const depth of list)
      for (const interlaced of [false, true])
        for (const keyed of type === 4 || type === 6 ? [false] : [false, true])
          for (const [width, height] of [[1, 1], [5, 3], [13, 7], [33, 9]] as const) {
            const max = 2 ** depth - 1;
            const samples = SAMPLES[type]!;
            const entries = type === 3 ? Math.min(max + 1, 5 + depth) : 0;
            // A colour key that a third of the pixels match exactly (the rest differ at full depth).
            const key = Array.from({ length: samples }, (_, s) => hash(7, 7, s) % (max + 1));
            const keyHit = (x: number, y: number) => keyed && type !== 3 && (x + 2 * y) % 3 === 0;
            const spec: PngSpec = {
              width,
              height,
              colourType: type,
              depth,
              interlaced,
              sample: (x, y, s) => (keyHit(x, y) ? key[s]! : hash(x, y, s) % (type === 3 ? entries : max + 1)),
              palette: type === 3 ? Uint8Array.from({ length: 3 * entries }, (_, i) => hash(i, 3, 1) & 0xff) : undefined,
              // Palette alpha for some entries (the rest are opaque); a colour key for gray and RGB.
              trns: !keyed ? undefined : type === 3 ? Uint8Array.from({ length: entries - 1 }, (_, i) => (i * 97) & 0xff) : u16s(...key),
            };
            cases.push({
              name: `type ${type}, ${depth}-bit, ${interlaced ? 'Adam7' : 'not interlaced'}${keyed ? ', tRNS' : ''}, ${width}x${height}`,
              png: writePng(spec),
              // Palette entries are RGB; tRNS adds an alpha channel.
              channels: (type === 3 ? 3 : samples) + (keyed ? 1 : 0),
            });
          }
  return cases;
}

describe('decodeImage: PNG, pixel for pixel as sharp decodes it', () => {
  it.each(writtenCases())('$name', async ({ png, channels }) => {
    const mine = await decodeImage(png, MAX_PIXELS);
    expect(mine.channels).toBe(channels);
    expect(asSrgb(mine)).toEqual(await sharpPixels(png));
  });

  it('a Fashion-MNIST test image comes back as its pixels', async () => {
    const pixels = slicePixels(await loadTestSlice(await loadBundle()), 0);
    const png = await sharp(Buffer.from(pixels), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    expect(await decodeImage(png, MAX_PIXELS)).toEqual({ width: 28, height: 28, channels: 1, data: new Uint8Array(pixels) });
  });

  const W = 29;
  const H = 17;
  const raw = (channels: 1 | 2 | 3 | 4) =>
    sharp(Buffer.from(Uint8Array.from({ length: W * H * channels }, (_, i) => hash(i, 1, 2) & 0xff)), { raw: { width: W, height: H, channels } });
  const made: [string, () => Promise<Buffer>, { depth: number; colourType: number; channels: number; interlaced?: boolean }][] = [
    ['gray', () => raw(1).toColourspace('b-w').png().toBuffer(), { depth: 8, colourType: 0, channels: 1 }],
    ['gray+alpha', () => raw(2).toColourspace('b-w').png().toBuffer(), { depth: 8, colourType: 4, channels: 2 }],
    ['RGB', () => raw(3).png({ adaptiveFiltering: true }).toBuffer(), { depth: 8, colourType: 2, channels: 3 }],
    ['RGBA', () => raw(4).png().toBuffer(), { depth: 8, colourType: 6, channels: 4 }],
    ['gray 16-bit', () => raw(1).toColourspace('grey16').png().toBuffer(), { depth: 16, colourType: 0, channels: 1 }],
    ['RGBA 16-bit', () => raw(4).toColourspace('rgb16').png().toBuffer(), { depth: 16, colourType: 6, channels: 4 }],
    ['palette, 2 colours', () => raw(3).png({ palette: true, colours: 2 }).toBuffer(), { depth: 1, colourType: 3, channels: 3 }],
    ['palette, 4 colours', () => raw(3).png({ palette: true, colours: 4 }).toBuffer(), { depth: 2, colourType: 3, channels: 3 }],
    ['palette, 16 colours', () => raw(3).png({ palette: true, colours: 16 }).toBuffer(), { depth: 4, colourType: 3, channels: 3 }],
    ['palette with alpha', () => raw(4).png({ palette: true }).toBuffer(), { depth: 8, colourType: 3, channels: 4 }],
    ['gray, interlaced', () => raw(1).toColourspace('b-w').png({ progressive: true }).toBuffer(), { depth: 8, colourType: 0, channels: 1, interlaced: true }],
    ['RGBA 16-bit, interlaced', () => raw(4).toColourspace('rgb16').png({ progressive: true }).toBuffer(), { depth: 16, colourType: 6, channels: 4, interlaced: true }],
    ['palette with alpha, 4 colours, interlaced', () => raw(4).png({ palette: true, colours: 4, progressive: true }).toBuffer(), { depth: 2, colourType: 3, channels: 4, interlaced: true }],
  ];
  it.each(made)('made by sharp: %s', async (_, make, want) => {
    const png = await make();
    expect({ depth: png[24], colourType: png[25], interlaced: png[28] === 1 }).toEqual({ depth: want.depth, colourType: want.colourType, interlaced: want.interlaced ?? false });
    const mine = await decodeImage(png, MAX_PIXELS);
    expect(mine.channels).toBe(want.channels);
    expect(asSrgb(mine)).toEqual(await sharpPixels(png));
  });
});

describe('decodeImage: JPEG, as sharp decodes it', () => {
  const photo = (w: number, h: number, channels: 1 | 3) =>
    sharp(
      Buffer.from(Uint8Array.from({ length: w * h * channels }, (_, i) => {
        const p = Math.floor(i / channels);
        return Math.round(127 + 120 * Math.sin(((p % w) * (1 + (i % channels))) / 9 + Math.floor(p / w) / 7));
      })),
      { raw: { width: w, height: h, channels } },
    );
  const cases: [string, () => Promise<Buffer>, { channels: number; tolerance: number }][] = [
    ['gray 28x28', () => photo(28, 28, 1).toColourspace('b-w').jpeg().toBuffer(), { channels: 1, tolerance: 1 }],
    ['gray 28x28, progressive', () => photo(28, 28, 1).toColourspace('b-w').jpeg({ progressive: true }).toBuffer(), { channels: 1, tolerance: 1 }],
    ['colour 28x28, 4:4:4', () => photo(28, 28, 3).jpeg({ chromaSubsampling: '4:4:4' }).toBuffer(), { channels: 3, tolerance: 3 }],
    ['colour 28x28, 4:2:0', () => photo(28, 28, 3).jpeg().toBuffer(), { channels: 3, tolerance: 0 }],
    ['colour 28x28, CMYK', () => photo(28, 28, 3).toColourspace('cmyk').jpeg().toBuffer(), { channels: 3, tolerance: 0 }],
    ['gray 200x200', () => photo(200, 200, 1).toColourspace('b-w').jpeg().toBuffer(), { channels: 1, tolerance: 0 }],
    ['colour 640x480', () => photo(640, 480, 3).jpeg().toBuffer(), { channels: 3, tolerance: 0 }],
  ];
  it.each(cases)('%s', async (_, make, want) => {
    const jpeg = await make();
    const mine = await decodeImage(jpeg, MAX_PIXELS);
    expect(mine.channels).toBe(want.channels);
    const [ours, theirs] = [asSrgb(mine), await sharpPixels(jpeg)];
    expect([ours.width, ours.height, ours.channels]).toEqual([theirs.width, theirs.height, theirs.channels]);
    expect(maxDifference(ours.data, theirs.data)).toBeLessThanOrEqual(want.tolerance);
  });
});

describe('decodeImage refuses', () => {
  let png: Buffer;
  let jpeg: Buffer;
  const gradient = Buffer.from(Uint8Array.from({ length: 28 * 28 }, (_, i) => (i % 28) * 9));
  beforeAll(async () => {
    png = await sharp(gradient, { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    jpeg = await sharp(gradient, { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').jpeg().toBuffer();
  });
  /** A 28x28 8-bit gray PNG whose IDAT holds `z`. */
  const withIdat = (z: Uint8Array) =>
    Buffer.concat([SIGNATURE, ihdr({ width: 28, height: 28, depth: 8, colourType: 0, interlaced: false }), chunk('IDAT', z), IEND]);

  it('empty bytes', async () => {
    expect(await refusal(new Uint8Array(0))).toBe('image is empty');
  });

  it('bytes that are no image', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const bytes = Uint8Array.from({ length: 16 + seed * 13 }, (_, i) => hash(i, seed, 0) & 0xff);
      bytes[0] = 0x42; // neither PNG's 0x89 nor JPEG's 0xff
      expect(await refusal(bytes)).toBe(NOT_DECODABLE);
    }
    expect(await refusal(Buffer.from('definitely not an image'))).toBe(NOT_DECODABLE);
  });

  it('other formats, named', async () => {
    const image = () => sharp(gradient, { raw: { width: 28, height: 28, channels: 1 } });
    const others: [string, Buffer][] = [
      ['gif', await image().gif().toBuffer()],
      ['webp', await image().webp().toBuffer()],
      ['tiff', await image().tiff().toBuffer()],
      ['heif', await image().avif().toBuffer()],
      ['svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/></svg>')],
    ];
    for (const [format, bytes] of others) expect(await refusal(bytes)).toBe(`image format ${format} is not supported; send PNG or JPEG`);
  });

  it('a PNG cut short anywhere', async () => {
    const messages = new Set<string>();
    for (let end = 1; end < png.length; end++) {
      const message = await refusal(png.subarray(0, end));
      expect(message).toMatch(REFUSED_DATA);
      messages.add(message);
    }
    // Cut in the signature or IHDR, in a chunk, and just before IEND.
    expect(messages).toEqual(
      new Set([NOT_DECODABLE, 'image could not be decoded: PNG data ends inside a chunk', 'image could not be decoded: PNG data ends before its IEND chunk']),
    );
  });

  it('a JPEG cut short', async () => {
    for (let end = 1; end < jpeg.length; end += 37) expect(await refusal(jpeg.subarray(0, end))).toMatch(REFUSED_DATA);
    expect(await refusal(jpeg.subarray(0, jpeg.length - 2))).toMatch(/^image could not be decoded: /);
    expect(await refusal(jpegDeclaring(jpeg, 28, 0))).toBe(NOT_DECODABLE);
  });

  it('a bad CRC', async () => {
    const idat = Buffer.from(png);
    idat[png.indexOf('IDAT') + 4]! ^= 0x01;
    expect(await refusal(idat)).toBe('image could not be decoded: PNG IDAT chunk has a bad CRC');
    const header = Buffer.from(png);
    header[20]! ^= 0x01;
    expect(await refusal(header)).toBe(NOT_DECODABLE);
    // A chunk the decoder skips is not checked, as libpng does not: sharp decodes this one too.
    const text = chunk('tEXt', Buffer.from('Comment\0hello'));
    text[text.length - 1]! ^= 0x01;
    const withText = Buffer.concat([png.subarray(0, 33), text, png.subarray(33)]);
    expect(asSrgb(await decodeImage(withText, MAX_PIXELS))).toEqual(await sharpPixels(withText));
  });

  it('more pixels than the limit, from the header alone', async () => {
    expect(await refusal(pngDeclaring(png, 100_000, 100_000))).toBe(`image is 100000x100000, more than the ${MAX_PIXELS} pixels this encoder decodes`);
    expect(await refusal(jpegDeclaring(jpeg, 60_000, 50_000))).toBe(`image is 60000x50000, more than the ${MAX_PIXELS} pixels this encoder decodes`);
    expect(await refusal(png, 28 * 27)).toBe(`image is 28x28, more than the ${28 * 27} pixels this encoder decodes`);
    expect(await refusal(jpeg, 28 * 27)).toBe(`image is 28x28, more than the ${28 * 27} pixels this encoder decodes`);
    expect((await decodeImage(png, 28 * 28)).data.length).toBe(28 * 28);
    // With no limit, a header's size is still only believed once the data inflates to it.
    expect(await refusal(pngDeclaring(png, 20_000, 20_000), Infinity)).toMatch(
      /^image could not be decoded: PNG pixel data inflates to \d+ bytes; its header implies 400020000$/,
    );
  });

  it('an inflate bomb', async () => {
    const bomb = withIdat(deflateSync(Buffer.alloc(64 * 1024 * 1024)));
    expect(bomb.length).toBeLessThan(100_000);
    expect(await refusal(bomb)).toBe('image could not be decoded: PNG pixel data inflates to more than the 812 bytes its header implies');
  });

  it('corrupt or inconsistent PNG data', async () => {
    const rows = (filter: number) => Buffer.concat(Array.from({ length: 28 }, () => Buffer.from([filter, ...gradient.subarray(0, 28)])));
    expect(await refusal(withIdat(deflateSync(rows(5))))).toBe('image could not be decoded: PNG scanline 0 has unknown filter type 5');
    expect(await refusal(withIdat(deflateSync(rows(0).subarray(0, 800))))).toBe(
      'image could not be decoded: PNG pixel data inflates to 800 bytes; its header implies 812',
    );
    const z = deflateSync(rows(0));
    expect(await refusal(withIdat(z.subarray(0, z.length - 6)))).toMatch(/^image could not be decoded: PNG pixel data: unexpected end of file$/);
    expect(await refusal(withIdat(Buffer.from('not zlib data')))).toMatch(/^image could not be decoded: PNG pixel data: /);

    const palette = { width: 2, height: 1, depth: 8, colourType: 3, interlaced: false };
    const line = deflateSync(Buffer.from([0, 0, 1]));
    const twoEntries = chunk('PLTE', Buffer.from([1, 2, 3, 4, 5, 6]));
    const oneEntry = chunk('PLTE', Buffer.from([1, 2, 3]));
    expect(await decodeImage(Buffer.concat([SIGNATURE, ihdr(palette), twoEntries, chunk('IDAT', line), IEND]), MAX_PIXELS)).toEqual({
      width: 2, height: 1, channels: 3, data: Uint8Array.of(1, 2, 3, 4, 5, 6),
    });
    expect(await refusal(Buffer.concat([SIGNATURE, ihdr(palette), oneEntry, chunk('IDAT', line), IEND]))).toBe(
      'image could not be decoded: PNG palette index 1 is beyond its 1 entries',
    );
    expect(await refusal(Buffer.concat([SIGNATURE, ihdr(palette), chunk('IDAT', line), IEND]))).toBe('image could not be decoded: PNG palette image has no PLTE chunk');

    const [first, second] = [line.subarray(0, 4), line.subarray(4)];
    const split = Buffer.concat([SIGNATURE, ihdr(palette), twoEntries, chunk('IDAT', first), chunk('tEXt', Buffer.from('a\0b')), chunk('IDAT', second), IEND]);
    expect(await refusal(split)).toBe('image could not be decoded: PNG IDAT chunks are not consecutive');
    expect(await refusal(Buffer.concat([SIGNATURE, ihdr(palette), twoEntries, IEND]))).toBe('image could not be decoded: PNG has no IDAT chunk');
    expect(await refusal(Buffer.concat([SIGNATURE, ihdr(palette), twoEntries, chunk('ABCD', Buffer.of(1)), chunk('IDAT', line), IEND]))).toBe(
      'image could not be decoded: PNG has an unexpected critical chunk ABCD',
    );
    expect(await refusal(Buffer.concat([SIGNATURE, ihdr({ ...palette, depth: 16 }), twoEntries, chunk('IDAT', line), IEND]))).toBe(NOT_DECODABLE);
  });
});
