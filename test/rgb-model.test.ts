import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../cli/clients.js';
import type { ClassifierClient } from '../services/common/generated/mrl/v1/Classifier.js';
import { loadSplit } from '../cli/fashionMnist.js';
import { type EncoderModel, embedInputs, labelFolder } from '../cli/fitData.js';
import { type ClassifierBundle, loadBundle, readBundle, requireHeads } from '../matryoshka/bundle.js';
import { type ImagePipeline, parsePreprocess } from '../matryoshka/image/preprocess.js';
import { Cascade, type CascadeResult } from '../matryoshka/cascade.js';
import { imageToInput } from '../matryoshka/modelInput.js';
import { maxImagePixels } from '../services/common/settings.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import type { ClassifyResponse__Output } from '../services/common/generated/mrl/v1/ClassifyResponse.js';
import { exitSettings } from '../services/cascade/thresholds.js';
import { killStarted, type MrlStart, startMrl } from './helpers/mrlStart.js';
import { mrl } from './helpers/mrl.js';

/**
 * A second image model, of another shape than the bundled ones: made by `training/rgb_fixture.py`
 * (3 channels, 32×32 NCHW, per-channel mean and std), kept in test/fixtures, not in models/.
 */
const FIXTURE = fileURLToPath(new URL('./fixtures/rgb-fashion/', import.meta.url));
const NESTING = '8,16,32,64';
const D = 64;
// 600 held out leave 360 for the certificate's tests: enough for disagreement ≤ 2 %.
const EPSILON = '0.02';

interface PytorchHeads {
  fit: { per_class: number };
  test: { per_class: number };
  /** Per nesting size, the test accuracy of heads fitted by PyTorch on the same frozen embeddings. */
  accuracy: Record<string, number>;
}


const FOREGROUND = [[230, 60, 40], [250, 200, 30], [60, 180, 75], [0, 130, 200], [145, 30, 180], [240, 240, 240]];
const BACKGROUND = [[0, 0, 0], [40, 20, 60], [10, 50, 40], [70, 40, 10]];

/** A 28×28 Fashion-MNIST image as the fixture's RGB PNG: `render` in training/rgb_fixture.py, the same integers. */
function renderPng(pixels: Uint8Array): Promise<Buffer> {
  const sum = pixels.reduce((s, p) => s + p, 0);
  const [fg, bg] = [FOREGROUND[sum % 6]!, BACKGROUND[Math.floor(sum / 6) % 4]!];
  const rgb = Buffer.alloc(pixels.length * 3);
  pixels.forEach((p, i) => {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Math.floor((p * fg[c]! + (255 - p) * bg[c]! + 127) / 255);
  });
  return sharp(rgb, { raw: { width: 28, height: 28, channels: 3 } }).png().toBuffer();
}

/** The first `per` images of each class of a split, class by class, as PNGs: the fixture's selections. */
async function firstPerClass(split: 'train' | 'test', per: number): Promise<{ pngs: Buffer[]; labels: number[] }> {
  const { count, images } = await loadSplit(split);
  const inClass = count / 10;
  const pngs: Buffer[] = [];
  const labels: number[] = [];
  for (let c = 0; c < 10; c++)
    for (let i = 0; i < per; i++) {
      const at = c * inClass + i;
      pngs.push(await renderPng(images.subarray(at * 784, (at + 1) * 784)));
      labels.push(c);
    }
  return { pngs, labels };
}

/** Offline, as `mrl fit` embeds images: the encoder service's preprocessing (`imageToInput`) and the fixture's ONNX encoder on onnxruntime. */
async function embedOffline(encoderPath: string, pngs: Buffer[], preprocess: ImagePipeline): Promise<Float32Array[]> {
  const { channels, height, width } = preprocess.output;
  const encoder: EncoderModel = { encoderPath, outputName: 'embedding', embeddingDim: D, input: { name: 'input', dims: [channels, height, width] } };
  const maxPixels = Number(maxImagePixels.default);
  const source = { count: pngs.length, load: (i: number) => imageToInput(pngs[i]!, preprocess, maxPixels), name: (i: number) => `image ${i}` };
  const z = await embedInputs(encoder, source, '', true);
  return pngs.map((_, i) => z.slice(i * D, (i + 1) * D));
}

/** `mrl start` (what `npm start` runs) with MRL_MODEL_DIR, once the cascade answers `probe`. */
async function start(modelDir: string, probe: ClassifyRequest): Promise<MrlStart> {
  const mesh = await startMrl({ env: { MRL_MODEL_DIR: modelDir } });
  if (!(await mesh.answer(probe, 30_000))) {
    await mesh.stop();
    throw new Error(`mrl start did not answer:\n${mesh.supervisor.output.join('\n')}`);
  }
  return mesh;
}

/** Classifies every request, 32 at a time, under both policies. */
async function serve(client: ClassifierClient, requests: ClassifyRequest[]) {
  const answers = async (policy: ClassifyRequest['policy']) => {
    const out: ClassifyResponse__Output[] = [];
    for (let first = 0; first < requests.length; first += 32)
      out.push(...(await Promise.all(requests.slice(first, first + 32).map((r) => classify(client, { ...r, policy })))));
    return out;
  };
  return { cascade: await answers('POLICY_CASCADE'), full: await answers('POLICY_FULL') };
}

/** The served answers are the offline cascade's, under the bundle's thresholds and temperatures, for both policies. */
function expectServedEqualsOffline(bundle: ClassifierBundle, zs: Float32Array[], served: Awaited<ReturnType<typeof serve>>) {
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
  const settings = exitSettings(bundle);
  for (const policy of ['cascade', 'full'] as const) {
    const offline: CascadeResult[] = zs.map((z) => cascade.classify(z, { ...settings, policy }));
    const got = served[policy].map((a) => [a.label, a.class_index, a.dimension_used]);
    expect(got).toEqual(offline.map((o) => [bundle.labels[o.classIndex], o.classIndex, o.dimensionUsed]));
    const worst = Math.max(...served[policy].map((a, i) => Math.abs(a.confidence - offline[i]!.confidence)));
    expect(worst, `${policy}: largest confidence difference`).toBeLessThanOrEqual(1e-5);
  }
}

/** Per nesting size, the test accuracy of the bundle's heads (offline, policy full capped at the size); the full size's from the served answers. */
function accuracies(bundle: ClassifierBundle, zs: Float32Array[], labels: number[], servedFull: ClassifyResponse__Output[]): Record<string, number> {
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
  const settings = exitSettings(bundle);
  const rate = (hits: boolean[]) => hits.filter(Boolean).length / hits.length;
  const out = Object.fromEntries(
    bundle.nesting.map((m) => [String(m), rate(zs.map((z, i) => cascade.classify(z, { ...settings, policy: 'full', maxDimension: m }).classIndex === labels[i]))]),
  );
  expect(rate(servedFull.map((a, i) => a.class_index === labels[i]))).toBe(out[String(D)]);
  return out;
}

/** The served cascade's accuracy and average dimension, for the log. */
const summary = (answers: ClassifyResponse__Output[], labels: number[]) => ({
  cascadeAccuracy: answers.filter((a, i) => a.class_index === labels[i]).length / answers.length,
  averageDimension: answers.reduce((s, a) => s + a.dimension_used, 0) / answers.length,
});

/** Every size's accuracy within 2 points of PyTorch's heads (the full size's is the one the issue asks about). */
function expectWithinTwoPoints(acc: Record<string, number>, pytorch: Record<string, number>) {
  for (const [m, a] of Object.entries(acc)) expect(Math.abs(a - pytorch[m]!), `${m}-d: mrl fit ${a}, PyTorch ${pytorch[m]}`).toBeLessThanOrEqual(0.02);
}

let tmp: string;
let labels: string[];
let reference: PytorchHeads;
let fitSet: { pngs: Buffer[]; labels: number[] };
let testSet: { pngs: Buffer[]; labels: number[] };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mrl-rgb-model-'));
  reference = JSON.parse(await readFile(join(FIXTURE, 'pytorch-heads.json'), 'utf8')) as PytorchHeads;
  [fitSet, testSet] = [await firstPerClass('train', reference.fit.per_class), await firstPerClass('test', reference.test.per_class)];
  // The training images in the ImageFolder layout, named so that `mrl fit` reads them in the fixture's order.
  labels = (await readFile(join(FIXTURE, 'labels.txt'), 'utf8')).trim().split('\n');
  for (const [i, png] of fitSet.pngs.entries()) {
    const folder = join(tmp, 'photos', labelFolder(labels[fitSet.labels[i]!]!));
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `${String(i).padStart(5, '0')}.png`), png);
  }
});
afterAll(async () => {
  killStarted();
  await rm(tmp, { recursive: true, force: true });
});

describe('a second image model (RGB, 32×32, per-channel mean and std) from ONNX file and image folder to a served cascade', () => {
  it('mrl import, mrl fit --data, mrl start: served answers equal the offline cascade, and accuracy matches PyTorch heads', async () => {
    const dir = join(tmp, 'rgb-bundle');
    await mrl('import', '--encoder', join(FIXTURE, 'model.onnx'), '--labels', join(FIXTURE, 'labels.txt'), '--nesting', NESTING, '--preprocess', join(FIXTURE, 'preprocessor_config.json'), '--out', dir);
    await mrl('fit', dir, '--data', join(tmp, 'photos'), '--epsilon', EPSILON);
    const bundle = await loadBundle(dir);
    expect(bundle.input.dims).toEqual([3, 32, 32]);
    expect(bundle.preprocess.output).toMatchObject({ channels: 3, height: 32, width: 32, layout: 'NCHW' });

    // The TypeScript pipeline (PNG decode, bilinear resize 28 → 32, per-channel normalisation) agrees with PIL and PyTorch's.
    const zs = await embedOffline(bundle.encoderPath, testSet.pngs, bundle.preprocess);
    const ref = JSON.parse(await readFile(join(FIXTURE, 'reference-embeddings.json'), 'utf8')) as { test_positions: number[]; embeddings: number[][] };
    const gap = Math.max(...ref.test_positions.flatMap((at, k) => ref.embeddings[k]!.map((v, j) => Math.abs(zs[at]![j]! - v))));
    expect(gap, 'largest difference from PyTorch\'s embeddings').toBeLessThan(1e-4);

    const served = await start(dir, { image: testSet.pngs[0] });
    const answers = await serve(served.client, testSet.pngs.map((image) => ({ image })));
    expectServedEqualsOffline(bundle, zs, answers);
    const acc = accuracies(bundle, zs, testSet.labels, answers.full);
    console.log('rgb model:', summary(answers.cascade, testSet.labels), 'test accuracy per size, mrl fit', acc, 'PyTorch', reference.accuracy);
    expectWithinTwoPoints(acc, reference.accuracy);
    expect(await served.stop()).toEqual({ code: 0, signal: null });
  }, 120_000);
});

describe('an embeddings-only bundle fitted from a JSONL file', () => {
  it('mrl import --embedding-dim, mrl fit --embeddings, mrl start runs the cascade alone: Classify on embeddings equals the offline cascade, and accuracy matches PyTorch heads', async () => {
    // The fixture encoder's embeddings of the training and test images, made elsewhere as far as the bundle knows.
    const encoderPath = join(FIXTURE, 'model.onnx');
    const pipeline = parsePreprocess(JSON.parse(await readFile(join(FIXTURE, 'preprocessor_config.json'), 'utf8')), { channels: 3, layout: 'NCHW', height: 32, width: 32 });
    const [fitZ, testZ] = [await embedOffline(encoderPath, fitSet.pngs, pipeline), await embedOffline(encoderPath, testSet.pngs, pipeline)];
    const jsonl = join(tmp, 'train.jsonl');
    await writeFile(jsonl, fitZ.map((z, i) => JSON.stringify({ embedding: Array.from(z), label: labels[fitSet.labels[i]!] })).join('\n') + '\n');

    const dir = join(tmp, 'embeddings-bundle');
    await mrl('import', '--embedding-dim', String(D), '--labels', join(FIXTURE, 'labels.txt'), '--nesting', NESTING, '--out', dir);
    await mrl('fit', dir, '--embeddings', jsonl, '--epsilon', EPSILON);
    const bundle = requireHeads(await readBundle(dir));
    expect(bundle.input).toBeUndefined();

    const served = await start(dir, { embedding: { values: Array.from(testZ[0]!) } });
    expect([served.pids('cascade').length, served.pids('encoder').length], served.supervisor.output.join('\n')).toEqual([1, 0]);
    const answers = await serve(served.client, testZ.map((z) => ({ embedding: { values: Array.from(z) } })));
    expectServedEqualsOffline(bundle, testZ, answers);
    const acc = accuracies(bundle, testZ, testSet.labels, answers.full);
    console.log('embeddings-only:', summary(answers.cascade, testSet.labels), 'test accuracy per size, mrl fit', acc, 'PyTorch', reference.accuracy);
    expectWithinTwoPoints(acc, reference.accuracy);
    expect(await served.stop()).toEqual({ code: 0, signal: null });
  }, 120_000);
});
