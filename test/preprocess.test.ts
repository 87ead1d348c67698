import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../cli/clients.js';
import { loadTestSlice, slicePixels, slicePng, type TestSlice } from '../cli/testSlice.js';
import { type Bundle, DEFAULT_MODEL_DIR, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import type { Pixels } from '../matryoshka/image/decode.js';
import { type InputTarget, parsePreprocess, preprocessImage, resizedSize } from '../matryoshka/image/preprocess.js';
import { type Resample, resize } from '../matryoshka/image/resample.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import { fashionPhotos } from './helpers/fashionPhotos.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';

const gray = (width: number, height: number, values: number[]): Pixels => ({ width, height, channels: 1, data: Uint8Array.from(values) });
const row = (values: number[]) => gray(values.length, 1, values);
const resized = (img: Pixels, w: number, h: number, r: Resample) => Array.from(resize(img, w, h, r).data);
const GRAY_28: InputTarget = { channels: 1, layout: 'NCHW', height: 28, width: 28 };
/** Bytes out, not floats: no rescale. */
const bytes = (cfg: object, target: InputTarget) => parsePreprocess({ grayscale: true, do_rescale: false, ...cfg }, target);
const run = (img: Pixels, cfg: object, target: InputTarget) => Array.from(preprocessImage(img, bytes(cfg, target)));

describe('resize: PIL arithmetic (weights by hand)', () => {
  it('box averages the pixels each output pixel covers', () => {
    expect(resized(row([10, 20, 30, 40]), 2, 1, 'box')).toEqual([15, 35]);
    expect(resized(gray(2, 2, [0, 100, 50, 250]), 1, 1, 'box')).toEqual([100]);
  });

  it('bilinear widens its support with the scale when downscaling, and interpolates when upscaling', () => {
    // 4 → 2: taps at distances 0.25, 0.25, 0.75 (in output pixels) weigh 3/7, 3/7, 1/7.
    expect(resized(row([10, 20, 30, 40]), 2, 1, 'bilinear')).toEqual([17, 33]);
    expect(resized(row([0, 100]), 4, 1, 'bilinear')).toEqual([0, 25, 75, 100]);
  });

  it('bicubic (a = −0.5) with its negative lobe, nearest at pixel centres, and each channel on its own', () => {
    // 4 → 2, first pixel: weights 0.8672, 0.8672, 0.2266, −0.0703 over 1.8906 → 15.87.
    expect(resized(row([10, 20, 30, 40]), 2, 1, 'bicubic')).toEqual([16, 34]);
    expect(resized(row([10, 20, 30, 40]), 2, 1, 'nearest')).toEqual([20, 40]);
    const rgb: Pixels = { width: 2, height: 1, channels: 3, data: Uint8Array.from([0, 10, 200, 100, 30, 0]) };
    expect(resized(rgb, 1, 1, 'box')).toEqual([50, 20, 100]);
  });

  it('output sizes follow Hugging Face: shortest_edge truncates the long edge, longest_edge rounds the short one, both as DETR', () => {
    expect(resizedSize(480, 640, { shortest_edge: 224 })).toEqual([224, 298]);
    expect(resizedSize(640, 480, { shortest_edge: 224 })).toEqual([298, 224]);
    expect(resizedSize(100, 250, { longest_edge: 28 })).toEqual([11, 28]);
    expect(resizedSize(480, 1280, { shortest_edge: 800, longest_edge: 1333 })).toEqual([500, 1333]);
    expect(resizedSize(600, 800, { shortest_edge: 800, longest_edge: 1333 })).toEqual([800, 1066]);
    expect(resizedSize(5, 7, { height: 2, width: 3 })).toEqual([2, 3]);
  });
});

describe('pipeline steps', () => {
  it('grayscale is PIL luma, and alpha is flattened onto the background', () => {
    const rgba: Pixels = { width: 4, height: 1, channels: 4, data: Uint8Array.from([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 0, 0, 0, 128]) };
    const target: InputTarget = { channels: 1, layout: 'NCHW', height: 1, width: 4 };
    // Red 76, green 150, blue 29; black at half alpha over white 127.
    expect(run(rgba, { do_resize: true, size: { height: 1, width: 4 } }, target)).toEqual([76, 150, 29, 127]);
    expect(run(rgba, { do_resize: true, size: { height: 1, width: 4 }, background: '#000000' }, target)).toEqual([76, 150, 29, 0]);
  });

  it('trim crops to the content, pad_to_square centres it on the border colour, negate "auto" inverts a light border only', () => {
    // An 8×6 light canvas (250) with a 3×2 dark object (10, 40) at x 4..6, y 1..2 and noise under the threshold (240).
    const canvas = new Array<number>(48).fill(250);
    canvas[0] = 240;
    [[4, 1, 10], [5, 1, 10], [6, 1, 40], [4, 2, 10], [5, 2, 40], [6, 2, 40]].forEach(([x, y, v]) => (canvas[y! * 8 + x!] = v!));
    const cfg = { trim: true, do_resize: true, size: { longest_edge: 3 }, resample: 0, pad_to_square: true };
    const target: InputTarget = { channels: 1, layout: 'NCHW', height: 3, width: 3 };
    expect(run(gray(8, 6, canvas), cfg, target)).toEqual([10, 10, 40, 10, 40, 40, 250, 250, 250]);
    expect(run(gray(8, 6, canvas), { ...cfg, negate: 'auto' }, target)).toEqual([245, 245, 215, 245, 215, 215, 5, 5, 5]);
    // A dark border (the dataset's style) is left as it is.
    const dark = canvas.map((v) => 255 - v);
    expect(run(gray(8, 6, dark), { ...cfg, negate: 'auto' }, target)).toEqual([245, 245, 215, 245, 215, 215, 5, 5, 5]);
    // Content in two places, the lower one further left: the box spans both.
    const two = new Array<number>(36).fill(0);
    two[1 * 6 + 4] = 200;
    two[4 * 6 + 1] = 100;
    const square4: InputTarget = { channels: 1, layout: 'NCHW', height: 4, width: 4 };
    expect(run(gray(6, 6, two), { ...cfg, size: { longest_edge: 4 } }, square4)).toEqual([0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0]);
  });

  it('autocontrast stretches the darkest to 0 and the lightest to 255', () => {
    const target: InputTarget = { channels: 1, layout: 'NCHW', height: 1, width: 3 };
    expect(run(row([50, 100, 150]), { autocontrast: true, do_resize: true, size: { height: 1, width: 3 } }, target)).toEqual([0, 127, 255]);
    expect(run(row([50, 50, 50]), { autocontrast: true, do_resize: true, size: { height: 1, width: 3 } }, target)).toEqual([50, 50, 50]);
  });

  it('center_crop takes the central box (HF: floor offsets) and pads a smaller image with zeros (ceil offsets)', () => {
    const five = gray(5, 5, Array.from({ length: 25 }, (_, i) => i + 1));
    expect(run(five, { do_center_crop: true, crop_size: 3 }, { channels: 1, layout: 'NCHW' })).toEqual([7, 8, 9, 12, 13, 14, 17, 18, 19]);
    expect(run(gray(2, 2, [1, 2, 3, 4]), { crop_size: { height: 3, width: 4 } }, { channels: 1, layout: 'NCHW' })).toEqual([
      0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0,
    ]);
  });

  it('rescale then normalize per channel, in the layout the model takes; a gray image fills 3 channels', () => {
    const rgb: Pixels = { width: 2, height: 1, channels: 3, data: Uint8Array.from([255, 0, 51, 0, 255, 102]) };
    const cfg = { do_resize: true, size: { height: 1, width: 2 }, do_rescale: true, rescale_factor: 1 / 255, image_mean: [0.5, 0, 0.2], image_std: [0.5, 1, 0.1] };
    const nchw = preprocessImage(rgb, parsePreprocess(cfg, { channels: 3, layout: 'NCHW' }));
    [1, -1, 0, 1, -0, 2].forEach((v, i) => expect(nchw[i]).toBeCloseTo(v, 6));
    const nhwc = preprocessImage(rgb, parsePreprocess(cfg, { channels: 3, layout: 'NHWC' }));
    [1, 0, -0, -1, 1, 2].forEach((v, i) => expect(nhwc[i]).toBeCloseTo(v, 6));
    const fromGray = preprocessImage(row([255, 0]), parsePreprocess({ ...cfg, image_mean: 0, image_std: 1 }, { channels: 3, layout: 'NCHW' }));
    expect(Array.from(fromGray)).toEqual([1, 0, 1, 0, 1, 0]);
  });

  it('the default pipeline gives a dataset-style image (light object on black, spanning 28 rows, centred) back as its bytes × 1/255, as test slices are sent', async () => {
    const bundle = await loadBundle();
    const img = Uint8Array.from({ length: 784 }, (_, i) => (i % 28 >= 4 && i % 28 < 24 ? (i * 37) % 256 : 0));
    img[38] = 255;
    expect(Array.from(preprocessImage(gray(28, 28, Array.from(img)), bundle.preprocess))).toEqual(Array.from(pixelsToInput(img, bundle.input)));
  });
});

/** laion/CLIP-ViT-style preprocessor_config.json, as saved by transformers. */
const CLIP_CONFIG = {
  crop_size: { height: 224, width: 224 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_processor_type: 'CLIPImageProcessor',
  image_std: [0.26862954, 0.26130258, 0.27577711],
  processor_class: 'CLIPProcessor',
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 224 },
};

describe('a Hugging Face CLIP preprocessor_config.json works as it is', () => {
  const RGB_224: InputTarget = { channels: 3, layout: 'NCHW', height: 224, width: 224 };

  it('gives NCHW 3×224×224 values normalised with the per-channel mean and std', async () => {
    // 320×240, a red stripe down the left 40 columns that the centre crop cuts off (resized to 298 wide, crop from 37).
    const data = new Uint8Array(320 * 240 * 3);
    for (let i = 0; i < 320 * 240; i++) data.set(i % 320 < 40 ? [255, 0, 0] : [200, 100, 50], 3 * i);
    const out = preprocessImage({ width: 320, height: 240, channels: 3, data }, parsePreprocess(CLIP_CONFIG, RGB_224));
    expect(out).toHaveLength(3 * 224 * 224);
    const plane = 224 * 224;
    [200, 100, 50].forEach((b, c) => {
      const want = (b / 255 - CLIP_CONFIG.image_mean[c]!) / CLIP_CONFIG.image_std[c]!;
      for (let y = 0; y < 224; y += 37) for (let x = 2; x < 224; x += 17) expect(out[c * plane + y * 224 + x]).toBeCloseTo(want, 5);
    });
    expect(out[0]).toBeGreaterThan((200 / 255 - CLIP_CONFIG.image_mean[0]!) / CLIP_CONFIG.image_std[0]! + 0.05);
  });

  it("reads openai/clip's bare size only with default_to_square, since processors disagree on it", () => {
    const openai = { ...CLIP_CONFIG, crop_size: 224, size: 224, feature_extractor_type: 'CLIPFeatureExtractor' };
    expect(() => parsePreprocess(openai, { channels: 3, layout: 'NCHW', height: 224, width: 224 })).toThrow(
      '"size" 224 is ambiguous: write {"height": 224, "width": 224} or {"shortest_edge": 224} (or set "default_to_square")',
    );
    expect(parsePreprocess({ ...openai, default_to_square: false }, RGB_224).resize?.size).toEqual({ shortest_edge: 224 });
  });
});

describe('refusals name the field', () => {
  const RGB: InputTarget = { channels: 3, layout: 'NCHW', height: 224, width: 224 };
  it.each([
    ['"crop_pct", "do_pad" are not supported; supported fields: do_convert_rgb', { ...CLIP_CONFIG, crop_pct: 0.875, do_pad: true }],
    ['"image_mean" has 2 values; the model input has 3 channels', { ...CLIP_CONFIG, image_mean: [0.5, 0.5] }],
    ['"image_std" must be a positive number or one per channel, not [1,0,1]', { ...CLIP_CONFIG, image_std: [1, 0, 1] }],
    ['"resample" must be a PIL filter number (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), not 7', { ...CLIP_CONFIG, resample: 7 }],
    ['"size" must be one of {"height", "width"}, {"shortest_edge"}', { ...CLIP_CONFIG, size: { max_height: 224, max_width: 224 } }],
    ['the pipeline gives images of varying sizes', { ...CLIP_CONFIG, do_center_crop: false }],
    ['the pipeline gives 28x28 images; the model input takes 224x224', { ...CLIP_CONFIG, crop_size: 28 }],
    ['"do_resize" must be true or false, not "yes"', { ...CLIP_CONFIG, do_resize: 'yes' }],
    ['"background" must be a colour "#rrggbb", not "white"', { ...CLIP_CONFIG, background: 'white' }],
    ['"negate" must be true, false or "auto", not "sometimes"', { ...CLIP_CONFIG, negate: 'sometimes' }],
    ['"do_normalize" is true but "image_mean" is missing', { ...CLIP_CONFIG, do_normalize: true, image_mean: undefined }],
  ])('%s', (message, cfg) => {
    expect(() => parsePreprocess(cfg, RGB)).toThrow(message);
  });

  it('refuses a colour pipeline for a 1-channel model; takes keys that ask for nothing (false, null)', () => {
    expect(() => parsePreprocess({ size: { height: 28, width: 28 } }, GRAY_28)).toThrow('"grayscale" must be true: the model input has 1 channel');
    expect(parsePreprocess({ ...CLIP_CONFIG, do_pad: false, crop_pct: null, do_convert_rgb: null }, RGB).output).toEqual({ ...RGB });
  });
});

describe('model.json preprocess', () => {
  let dir: string;
  const meta = async () => JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'model.json'), 'utf8')) as Record<string, unknown>;
  const write = async (m: Record<string, unknown>) => writeFile(join(dir, 'model.json'), JSON.stringify(m));
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mrl-preprocess-'));
    await copyFile(join(DEFAULT_MODEL_DIR, 'heads.bin'), join(dir, 'heads.bin'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('takes the channels and layout from the ONNX input', async () => {
    const m = await meta();
    await write({ ...m, input: { name: 'input', shape: [-1, 28, 28, 3], layout: 'NHWC' } });
    expect((await loadBundle(dir)).preprocess.output).toEqual({ channels: 3, layout: 'NHWC', height: 28, width: 28 });
  });

  it('refuses a bad pipeline, or one that does not fit the ONNX input, with the field named', async () => {
    const m = await meta();
    await write({ ...m, preprocess: { ...(m.preprocess as object), resample: 9 } });
    await expect(loadBundle(dir)).rejects.toThrow(`model bundle ${dir}: model.json field "preprocess": "resample" must be a PIL filter number`);
    await write({ ...m, input: { name: 'input', shape: [-1, 1, 32, 32], layout: 'NCHW' } });
    await expect(loadBundle(dir)).rejects.toThrow('model.json field "preprocess": the pipeline gives 28x28 images; the model input takes 32x32');
    await write({ ...m, input: { ...(m.input as object), scale: 1 / 255 } });
    await expect(loadBundle(dir)).rejects.toThrow('model.json field "input.scale" is for bundles without "preprocess"');
    await write({ ...m, input: { name: 'input', shape: [-1, 2, 28, 28], layout: 'NCHW' } });
    await expect(loadBundle(dir)).rejects.toThrow('model.json field "input.shape" must give 1 or 3 channels (NCHW), not 2');
  });

  it('keeps a bundle without preprocess on its old path: grayscale onto black, stretched, byte × scale + offset', async () => {
    const { preprocess: _, ...m } = await meta();
    await write({ ...m, input: { name: 'input', height: 28, width: 28, channels: 1, scale: -1 / 255, offset: 1 } });
    const b = await loadBundle(dir);
    expect(b.input).toEqual({ name: 'input', height: 28, width: 28, channels: 1, dims: [1, 28, 28], scale: -1 / 255, offset: 1 });
    // A 56×28 white-on-transparent image: stretched to 28×28 and inverted by the negative scale.
    const img: Pixels = { width: 56, height: 28, channels: 2, data: Uint8Array.from({ length: 56 * 28 * 2 }, (_, i) => (i % 2 ? (i % 112 < 56 ? 255 : 0) : 255)) };
    const out = preprocessImage(img, b.preprocess);
    expect(out[0]).toBeCloseTo(0, 6);
    expect(out[27]).toBeCloseTo(1, 6);
  });
});

describe('the default bundle classifies photos and dataset-style images (real encoder and cascade on loopback)', () => {
  let mesh: TestMesh;
  let bundle: Bundle;
  let slice: TestSlice;
  beforeAll(async () => {
    bundle = await loadBundle();
    slice = await loadTestSlice(bundle);
    mesh = await startMesh();
  });
  afterAll(() => mesh?.stop());

  /** Share of requests the served cascade labels `labels[i]`. */
  async function accuracy(requests: ClassifyRequest[], labels: Uint8Array): Promise<number> {
    let right = 0;
    for (let first = 0; first < requests.length; first += 50) {
      const answers = await Promise.all(requests.slice(first, first + 50).map((r) => classify(mesh.classifier, r)));
      answers.forEach((a, i) => (right += a.class_index === labels[first + i] ? 1 : 0));
    }
    return right / requests.length;
  }

  it('300 photos of test items (dark on light, 100–300 px, off-centre; JPEG, PNG with alpha, PNG): at least 85% correct', async () => {
    const photos = await fashionPhotos(slice.images, 300, 15);
    expect(new Set(photos.map((p) => p.format))).toEqual(new Set(['jpeg', 'png-alpha', 'png']));
    expect(Math.min(...photos.map((p) => Math.min(p.width, p.height)))).toBeGreaterThanOrEqual(100);
    expect(await accuracy(photos.map((p) => ({ image: p.bytes })), slice.labels.subarray(0, 300))).toBeGreaterThanOrEqual(0.85);
  });

  it('the 1,000-image test slice as PNG: as accurate as the same images sent as tensors (within 0.5 points)', async () => {
    const png = (i: number) => slicePng(slice, i);
    const images = await Promise.all(Array.from({ length: slice.count }, async (_, i) => ({ image: await png(i) })));
    const tensors = Array.from({ length: slice.count }, (_, i) => ({
      tensor: { shape: [28, 28], values: Array.from(pixelsToInput(slicePixels(slice, i), bundle.input)) },
    }));
    const viaPng = await accuracy(images, slice.labels);
    expect(viaPng).toBeGreaterThanOrEqual((await accuracy(tensors, slice.labels)) - 0.005);
  });
});
