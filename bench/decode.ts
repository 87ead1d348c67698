/**
 * CPU per decoded image: the encoder's image path with the default bundle's pipeline
 * (decodeImage, preprocessImage, and both as imageToInput) for a 28x28 gray PNG and the RGB PNG
 * the Classify benchmark sends (slicePng), side by side with an earlier tree's when --baseline
 * names one; sharp as the encoder used it before decodeImage (metadata, then a decode to 28x28
 * gray), decodeImage, and bare zlib inflate of the PNG's pixel data; a large PNG against sharp;
 * and, for the JPEG size above which decodeImage hands JPEGs to sharp, sharp against jpeg-js by size.
 * Run: node --import tsx bench/decode.ts [--rounds 3] [--baseline DIR]
 * DIR: an earlier commit's tree outside the repository, with this one's node_modules, e.g.
 *   mkdir /tmp/base && git archive HEAD | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { inflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import sharp from 'sharp';
import { loadBundle } from '../matryoshka/bundle.js';
import { decodeImage } from '../matryoshka/image/decode.js';
import { preprocessImage } from '../matryoshka/image/preprocess.js';
import { imageToInput } from '../matryoshka/modelInput.js';
import { loadTestSlice, slicePixels, slicePng } from '../cli/testSlice.js';

const MAX_PIXELS = 2048 * 2048;
const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, baseline: { type: 'string' } } });
const rounds = Number(args.rounds);

/** The encoder's path before decodeImage: a header read, then sharp's pipeline to 28x28 gray. */
async function oldSharpPath(bytes: Buffer): Promise<Buffer> {
  const { width = 0, height = 0 } = await sharp(bytes, { limitInputPixels: false }).metadata();
  if (width * height > MAX_PIXELS) throw new Error('too large');
  return sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: 'error' })
    .flatten({ background: '#000000' })
    .toColourspace('b-w')
    .resize(28, 28, { fit: 'fill' })
    .raw()
    .toBuffer();
}

/** The concatenated IDAT data of a PNG. */
function idatOf(png: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 8; at < png.length; at += 12 + png.readUInt32BE(at))
    if (png.toString('latin1', at + 4, at + 8) === 'IDAT') parts.push(png.subarray(at + 8, at + 8 + png.readUInt32BE(at)));
  return Buffer.concat(parts);
}

/** Median over rounds of CPU microseconds (all threads: sharp decodes on libuv's pool) per call. */
async function cpuMicros(n: number, call: () => unknown): Promise<number> {
  for (let i = 0; i < Math.min(n, 50); i++) await call();
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.cpuUsage();
    for (let i = 0; i < n; i++) await call();
    const used = process.cpuUsage(start);
    perRound.push((used.user + used.system) / n);
  }
  return perRound.sort((a, b) => a - b)[Math.floor(rounds / 2)]!;
}

const fmt = (us: number) => `${us.toFixed(1).padStart(8)} µs`;
const row = (label: string, us: number, notes = '') => console.log(`  ${label.padEnd(42)}${fmt(us)}  ${notes}`);

const bundle = await loadBundle();
const slice = await loadTestSlice(bundle);
const item = sharp(Buffer.from(slicePixels(slice, 0)), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w');
const png = await item.clone().png().toBuffer();
const grayJpeg = await item.clone().jpeg().toBuffer();
const idat = idatOf(png);
const photo = (w: number, h: number, channels: 1 | 3) =>
  sharp(
    Buffer.from(Uint8Array.from({ length: w * h * channels }, (_, i) => {
      const p = Math.floor(i / channels);
      return Math.round(127 + 120 * Math.sin(((p % w) * (1 + (i % channels))) / 23 + Math.floor(p / w) / 17));
    })),
    { raw: { width: w, height: h, channels } },
  );
const bigJpeg = await photo(640, 480, 3).jpeg().toBuffer();
console.log(`CPU per image, median of ${rounds} rounds (node ${process.version}, sharp ${sharp.versions.sharp})\n`);

/** The encoder's image path, from this tree or the baseline's. */
interface ImagePath {
  decodeImage: typeof decodeImage;
  preprocessImage: typeof preprocessImage;
  imageToInput: typeof imageToInput;
}
const baseline: ImagePath | undefined = args.baseline
  ? {
      ...((await import(resolve(args.baseline, 'matryoshka/image/decode.ts'))) as ImagePath),
      ...((await import(resolve(args.baseline, 'matryoshka/image/preprocess.ts'))) as ImagePath),
      ...((await import(resolve(args.baseline, 'matryoshka/modelInput.ts'))) as ImagePath),
    }
  : undefined;
console.log(`The default bundle's pipeline (${bundle.id})${baseline ? `; before: ${args.baseline}` : ''}`);
for (const [name, bytes] of [['28x28 gray PNG', png], ['slicePng, 28x28 RGB', await slicePng(slice, 0)]] as const) {
  const steps: [string, (path: ImagePath) => () => unknown][] = [
    ['decodeImage', (path) => () => path.decodeImage(bytes, MAX_PIXELS)],
    ['preprocessImage', (path) => {
      const pixels = decodeImage(bytes, MAX_PIXELS);
      return async () => path.preprocessImage(await pixels, bundle.preprocess);
    }],
    ['imageToInput', (path) => () => path.imageToInput(bytes, bundle.preprocess, MAX_PIXELS)],
  ];
  console.log(`  ${name} (${bytes.length} bytes)`);
  for (const [step, call] of steps) {
    const now = await cpuMicros(20000, call({ decodeImage, preprocessImage, imageToInput }));
    const before = baseline && (await cpuMicros(20000, call(baseline)));
    row(`  ${step}`, now, before === undefined ? '' : `before ${fmt(before)}, before/now = ${(before / now).toFixed(2)}`);
  }
}
console.log();

console.log(`Fashion-MNIST test image 0, 28x28 gray PNG (${png.length} bytes, IDAT ${idat.length} bytes)`);
const pngOld = await cpuMicros(2000, () => oldSharpPath(png));
const pngNew = await cpuMicros(2000, () => decodeImage(png, MAX_PIXELS));
const inflate = await cpuMicros(2000, () => inflateSync(idat));
row('(a) sharp: metadata, then decode', pngOld);
row('(b) decodeImage', pngNew, `(a)/(b) = ${(pngOld / pngNew).toFixed(1)}`);
row('(c) zlib.inflateSync of IDAT alone', inflate, `(b)/(c) = ${(pngNew / inflate).toFixed(2)}`);

console.log(`\nThe same image as a 28x28 gray JPEG (${grayJpeg.length} bytes)`);
const jpegOld = await cpuMicros(2000, () => oldSharpPath(grayJpeg));
const jpegNew = await cpuMicros(2000, () => decodeImage(grayJpeg, MAX_PIXELS));
row('(a) sharp: metadata, then decode', jpegOld);
row('(b) decodeImage (jpeg-js)', jpegNew, `(a)/(b) = ${(jpegOld / jpegNew).toFixed(1)}`);

console.log(`\n640x480 colour JPEG (${bigJpeg.length} bytes)`);
const bigOld = await cpuMicros(100, () => oldSharpPath(bigJpeg));
const bigNew = await cpuMicros(100, () => decodeImage(bigJpeg, MAX_PIXELS));
const bigJs = await cpuMicros(20, () => jpeg.decode(bigJpeg, { useTArray: true, formatAsRGBA: false }));
row('(a) sharp: metadata, then decode to 28x28', bigOld, 'shrinks while decoding');
row('(b) decodeImage (sharp, full size)', bigNew, `(a)/(b) = ${(bigOld / bigNew).toFixed(2)}`);
row('    jpeg-js, full size', bigJs, `jpeg-js/(b) = ${(bigJs / bigNew).toFixed(1)}`);

const bigPng = await photo(640, 480, 3).png().toBuffer();
console.log(`\n640x480 colour PNG (${bigPng.length} bytes)`);
const bigPngNew = await cpuMicros(30, () => decodeImage(bigPng, MAX_PIXELS));
const bigPngSharp = await cpuMicros(30, () => sharp(bigPng, { failOn: 'error' }).raw().toBuffer());
row('(b) decodeImage', bigPngNew);
row('    sharp, one call, full size', bigPngSharp, `(b)/sharp = ${(bigPngNew / bigPngSharp).toFixed(2)}`);

console.log('\nJPEG by size: sharp (one call, full size) against jpeg-js; decodeImage takes jpeg-js up to 16384 samples (128x128 gray, 73x73 colour)');
for (const size of [28, 64, 96, 128, 192, 256])
  for (const [kind, make] of [
    ['gray', () => photo(size, size, 1).toColourspace('b-w').jpeg()],
    ['colour 4:4:4', () => photo(size, size, 3).jpeg({ chromaSubsampling: '4:4:4' })],
  ] as const) {
    const bytes = await make().toBuffer();
    const n = Math.max(50, Math.round(300_000 / (size * size)));
    const viaSharp = await cpuMicros(n, () => sharp(bytes, { failOn: 'error' }).raw().toBuffer());
    const viaJs = await cpuMicros(n, () => jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false }));
    row(`${size}x${size} ${kind}: sharp`, viaSharp);
    row(`${size}x${size} ${kind}: jpeg-js`, viaJs, `sharp/jpeg-js = ${(viaSharp / viaJs).toFixed(2)}`);
  }
