import { execFile } from 'node:child_process';
import { status } from '@grpc/grpc-js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../cli/clients.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { linearModel } from '../matryoshka/linearModel.js';
import { imageToInput } from '../matryoshka/modelInput.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { MRL } from './helpers/mrl.js';
import { seeded } from '../harness/synthetic.js';

const run = promisify(execFile);

/** A user's model: RGB images, NHWC 32×32×3, a linear encoder to a 64-d embedding (a stand-in for a CLIP-style one). */
const SIDE = 32;
const D = 64;
const COLOURS = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] } as const;

/** A photo-like picture of a colour: noisy, with a light border, `size` px, as PNG or JPEG. */
async function picture(colour: readonly number[], r: () => number, size: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const data = Buffer.alloc(size * size * 3);
  for (let p = 0; p < size * size; p++) {
    const y = Math.floor(p / size);
    const x = p % size;
    const border = x < size / 8 || y < size / 8 || x >= size - size / 8 || y >= size - size / 8;
    for (let c = 0; c < 3; c++) data[p * 3 + c] = border ? 240 : Math.max(0, Math.min(255, colour[c]! + (r() - 0.5) * 80));
  }
  const image = sharp(data, { raw: { width: size, height: size, channels: 3 } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 90 }).toBuffer();
}

let dir: string;
let mesh: TestMesh | undefined;
const r = seeded(11);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mrl-own-model-'));
  // The encoder: a fixed random projection of the flattened NHWC image.
  const inputs = SIDE * SIDE * 3;
  const weight = Float32Array.from({ length: D * inputs }, () => (r() - 0.5) / Math.sqrt(inputs));
  const model = linearModel({ classes: D, inputs, weight, bias: new Float32Array(D), exitStats: false, inputDims: [SIDE, SIDE, 3] });
  await writeFile(join(dir, 'model.onnx'), model);
  await writeFile(join(dir, 'labels.txt'), Object.keys(COLOURS).join('\n') + '\n');
  // A Hugging Face image processor config, as a CLIP-style model ships it.
  await writeFile(
    join(dir, 'preprocessor_config.json'),
    JSON.stringify({
      image_processor_type: 'CLIPImageProcessor',
      do_convert_rgb: true,
      do_resize: true,
      size: { shortest_edge: SIDE },
      resample: 3,
      do_center_crop: true,
      crop_size: { height: SIDE, width: SIDE },
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [0.4815, 0.4578, 0.4082],
      image_std: [0.2686, 0.2613, 0.2758],
    }),
  );
  // Training pictures in the ImageFolder layout.
  for (const [label, colour] of Object.entries(COLOURS)) {
    await mkdir(join(dir, 'data', label), { recursive: true });
    for (let i = 0; i < 100; i++) await writeFile(join(dir, 'data', label, `${i}.png`), await picture(colour, r, 40 + (i % 5) * 12, 'png'));
  }
});
afterAll(async () => {
  await mesh?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a user’s own model: RGB, NHWC, a Hugging Face preprocessor config', () => {
  it('mrl import, then mrl fit, gives a bundle that serves: its pictures are classified, as PNG, JPEG and tensors', async () => {
    const bundleDir = join(dir, 'bundle');
    await run(process.execPath, [...MRL, 'import', '--encoder', join(dir, 'model.onnx'), '--labels', join(dir, 'labels.txt'), '--nesting', '8,16,32,64', '--preprocess', join(dir, 'preprocessor_config.json'), '--out', bundleDir]);
    await run(process.execPath, [...MRL, 'fit', bundleDir, '--data', join(dir, 'data'), '--l2', '0.1', '--epsilon', '0.05', '--val-fraction', '0.5']);
    const bundle = await loadBundle(bundleDir);
    expect(bundle.input.dims).toEqual([SIDE, SIDE, 3]);

    mesh = await startMesh({ MRL_MODEL_DIR: bundleDir });
    const labels = Object.keys(COLOURS);
    let right = 0;
    let n = 0;
    for (const [label, colour] of Object.entries(COLOURS))
      for (let i = 0; i < 6; i++) {
        const answer = await classify(mesh.classifier, { image: await picture(colour, r, 50 + i * 20, i % 2 ? 'jpeg' : 'png') });
        expect(labels).toContain(answer.label);
        if (answer.label === label) right++;
        n++;
      }
    expect(right / n).toBeGreaterThanOrEqual(0.9);
    // The same picture as the tensor the bundle's pipeline makes of it, in the model's layout (32 × 32 × 3).
    const photo = await picture(COLOURS.red, r, 64, 'png');
    const values = Array.from(await imageToInput(photo, bundle.preprocess, 1 << 20));
    const tensor = { shape: [SIDE, SIDE, 3], values };
    const [fromImage, fromTensor] = await Promise.all([classify(mesh.classifier, { image: photo }), classify(mesh.classifier, { tensor })]);
    expect(fromTensor.label).toBe(fromImage.label);
    expect(fromTensor.confidence).toBeCloseTo(fromImage.confidence, 5);
    await expect(classify(mesh.classifier, { tensor: { shape: [3, SIDE, SIDE], values: tensor.values } })).rejects.toMatchObject({
      details: `tensor shape [3, ${SIDE}, ${SIDE}] is not one of [${SIDE}, ${SIDE}, 3], [1, ${SIDE}, ${SIDE}, 3]`,
    });
    // Finite in float32 through the encoder, but beyond what the heads' float32 logits hold: never an answer.
    await expect(classify(mesh.classifier, { tensor: { ...tensor, values: values.map((v, i) => (i % 2 ? -3e37 : 3e37)) } })).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringMatching(/^encoder unavailable: its embedding is too large for this cascade's heads \(embedding value \d+ is -?[\d.e+]+; this model's heads take values of at most .* in magnitude \(larger ones overflow their float32 logits\)\): a faulty model, or an input far outside the range the model takes$/),
    });
    expect((await classify(mesh.classifier, { tensor })).label).toBe(fromTensor.label);
  }, 120_000);
});
