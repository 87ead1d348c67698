import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bundle, DEFAULT_MODEL_DIR, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import { Cascade } from '../matryoshka/cascade.js';
import { type FitStage, fitSoftmaxHead, minimizeLbfgs, stratifiedSplit } from '../matryoshka/fit.js';
import { evaluateTable } from '../cli/evaluate.js';
import { loadSplit } from '../cli/fashionMnist.js';
import { type FitOptions, type FitRecord, fitBundle } from '../cli/fit.js';
import { embedInputs, labelFolder } from '../cli/fitData.js';
import { stageLogits } from '../cli/logitTable.js';
import { loadTestSlice, slicePixels } from '../cli/testSlice.js';
import { exitSettings } from '../services/cascade/thresholds.js';
import { mrl } from './helpers/mrl.js';
import { seeded } from '../harness/synthetic.js';


/** A seeded generator of uniforms in [0, 1), so every problem is the same on every run. */

/** A standard normal from two uniforms (Box-Muller). */
const normal = (r: () => number) => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());

const TIGHT = { gradientTolerance: 1e-10, maxIterations: 2000 };

describe('the solver', () => {
  it('two classes on one feature: the optimum of binary logistic regression, solved by Newton in (w, b)', () => {
    const r = seeded(7);
    const n = 300;
    const x = Float32Array.from({ length: n }, () => normal(r));
    const y = Array.from(x, (v) => (r() < 1 / (1 + Math.exp(-(1.5 * v - 0.3))) ? 1 : 0));
    const l2 = 0.01;
    const fit = fitSoftmaxHead({ classes: 2, labels: y, stages: [{ size: 1, inputs: x }], l2 }, TIGHT);
    expect(fit.converged).toBe(true);
    // Only w1 − w0 and b1 − b0 reach the probabilities; the penalty splits w evenly, so
    // l2/2 (w0² + w1²) = l2/4 (w1 − w0)²: binary logistic regression with penalty l2/4 on v.
    let [v, c] = [0, 0];
    for (let it = 0; it < 50; it++) {
      let [gv, gc, hvv, hvc, hcc] = [(l2 / 2) * v, 0, l2 / 2, 0, 0];
      for (let i = 0; i < n; i++) {
        const p = 1 / (1 + Math.exp(-(v * x[i]! + c)));
        const [e, w] = [(p - y[i]!) / n, (p * (1 - p)) / n];
        gv += e * x[i]!;
        gc += e;
        hvv += w * x[i]! ** 2;
        hvc += w * x[i]!;
        hcc += w;
      }
      const det = hvv * hcc - hvc * hvc;
      v -= (hcc * gv - hvc * gc) / det;
      c -= (hvv * gc - hvc * gv) / det;
    }
    const [w0, w1] = fit.head.weight;
    const [b0, b1] = fit.head.bias;
    expect(w1! - w0!).toBeCloseTo(v, 6);
    expect(b1! - b0!).toBeCloseTo(c, 6);
    expect(w0! + w1!).toBeCloseTo(0, 6);
    // Biases are not penalised: a shift of both changes nothing, and from zero none is taken.
    expect(b0! + b1!).toBeCloseTo(0, 6);
  });

  /** The objective written out plainly: mean over stages of the mean cross-entropy, plus l2/2 ‖W‖². */
  function loss(weight: ArrayLike<number>, bias: ArrayLike<number>, M: number, stages: FitStage[], labels: number[], l2: number): number {
    const C = bias.length;
    let total = 0;
    for (const { size, inputs } of stages)
      labels.forEach((y, i) => {
        const z = Array.from({ length: C }, (_, c) => bias[c]! + Array.from({ length: size }, (_, j) => weight[c * M + j]! * inputs[i * size + j]!).reduce((a, b) => a + b, 0));
        const max = Math.max(...z);
        total += (Math.log(z.reduce((s, v) => s + Math.exp(v - max), 0)) + max - z[y]!) / (labels.length * stages.length);
      });
    return total + (l2 / 2) * Array.from(weight).reduce((s, w) => s + w * w, 0);
  }

  it('an MRL-E problem (3 classes, stages of 1, 2 and 4 columns): zero gradient at the solution, by central differences of that plain objective', () => {
    const r = seeded(11);
    const n = 90;
    const labels = Array.from({ length: n }, (_, i) => i % 3);
    const full = Float32Array.from({ length: n * 4 }, (_, k) => normal(r) + (k % 4 === labels[Math.floor(k / 4)]! ? 1.2 : 0));
    const stages: FitStage[] = [1, 2, 4].map((m) => ({ size: m, inputs: Float32Array.from({ length: n * m }, (_, k) => full[Math.floor(k / m) * 4 + (k % m)]!) }));
    const l2 = 0.05;
    const fit = fitSoftmaxHead({ classes: 3, labels, stages, l2 }, TIGHT);
    expect(fit.converged).toBe(true);
    const params = [...Float64Array.from(fit.head.weight), ...Float64Array.from(fit.head.bias)];
    const f = (p: number[]) => loss(p.slice(0, 12), p.slice(12), 4, stages, labels, l2);
    expect(f(params)).toBeCloseTo(fit.value, 6);
    const h = 1e-4;
    for (let k = 0; k < params.length; k++) {
      const up = params.map((v, j) => (j === k ? v + h : v));
      const down = params.map((v, j) => (j === k ? v - h : v));
      expect(Math.abs((f(up) - f(down)) / (2 * h))).toBeLessThan(1e-6);
    }
  });

  it('is invariant to the order of the inputs, and permuting the classes permutes the head', () => {
    const r = seeded(3);
    const n = 120;
    const labels = Array.from({ length: n }, () => Math.floor(r() * 4));
    const inputs = Float32Array.from({ length: n * 3 }, (_, k) => normal(r) + labels[Math.floor(k / 3)]! * (k % 3) * 0.5);
    const base = fitSoftmaxHead({ classes: 4, labels, stages: [{ size: 3, inputs }], l2: 0.01 }, TIGHT).head;

    const order = Array.from({ length: n }, (_, i) => (i * 37) % n);
    const shuffled = Float32Array.from({ length: n * 3 }, (_, k) => inputs[order[Math.floor(k / 3)]! * 3 + (k % 3)]!);
    const reordered = fitSoftmaxHead({ classes: 4, labels: order.map((i) => labels[i]!), stages: [{ size: 3, inputs: shuffled }], l2: 0.01 }, TIGHT).head;
    reordered.weight.forEach((w, k) => expect(w).toBeCloseTo(base.weight[k]!, 5));
    reordered.bias.forEach((b, k) => expect(b).toBeCloseTo(base.bias[k]!, 5));

    const perm = [2, 0, 3, 1]; // class c is called perm[c]
    const renamed = fitSoftmaxHead({ classes: 4, labels: labels.map((c) => perm[c]!), stages: [{ size: 3, inputs }], l2: 0.01 }, TIGHT).head;
    perm.forEach((to, c) => {
      for (let j = 0; j < 3; j++) expect(renamed.weight[to * 3 + j]).toBeCloseTo(base.weight[c * 3 + j]!, 5);
      expect(renamed.bias[to]).toBeCloseTo(base.bias[c]!, 5);
    });
  });

  it('minimises the Rosenbrock function to (1, 1)', () => {
    const result = minimizeLbfgs(
      (x, g) => {
        const [a, b] = [x[0]!, x[1]!];
        g[0] = -2 * (1 - a) - 400 * a * (b - a * a);
        g[1] = 200 * (b - a * a);
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2;
      },
      Float64Array.from([-1.2, 1]),
      { gradientTolerance: 1e-9 },
    );
    expect(result.converged).toBe(true);
    expect(result.x[0]).toBeCloseTo(1, 7);
    expect(result.x[1]).toBeCloseTo(1, 7);
  });
});

describe('stratifiedSplit', () => {
  // 10, 25 and 7 of classes 0, 1, 2, interleaved (17 is prime to 42).
  const sorted = [...Array<number>(10).fill(0), ...Array<number>(25).fill(1), ...Array<number>(7).fill(2)];
  const labels = sorted.map((_, i) => sorted[(i * 17) % sorted.length]!);

  it('holds out the fraction of each label, the same for a seed, another for another seed', () => {
    const a = stratifiedSplit(labels, 0.2, 5);
    const count = (idx: number[], c: number) => idx.filter((i) => labels[i] === c).length;
    expect([0, 1, 2].map((c) => count(a.validation, c))).toEqual([2, 5, 1]);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(labels.map((_, i) => i));
    expect(a.validation).toEqual([...a.validation].sort((x, y) => x - y));
    expect(stratifiedSplit(labels, 0.2, 5)).toEqual(a);
    expect(stratifiedSplit(labels, 0.2, 6).validation).not.toEqual(a.validation);
  });
});

/** A copy of the default bundle without its heads and what goes with them: what `mrl import` would write for its encoder. */
async function headlessBundle(dir: string, drop: string[] = []): Promise<string> {
  await mkdir(dir, { recursive: true });
  const meta = JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'model.json'), 'utf8')) as Record<string, unknown>;
  for (const key of ['heads', 'thresholds', 'temperatures', 'calibration', ...drop]) delete meta[key];
  await writeFile(join(dir, 'model.json'), JSON.stringify(meta));
  if (!drop.includes('input')) await copyFile(join(DEFAULT_MODEL_DIR, 'encoder.onnx'), join(dir, 'encoder.onnx'));
  return dir;
}

let tmp: string;
let source: Bundle;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mrl-fit-'));
  source = await loadBundle();
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const pixelSource = (images: Uint8Array, count: number) => ({
  count,
  load: (i: number) => pixelsToInput(images.subarray(i * 784, (i + 1) * 784), source.input),
  name: (i: number) => `image ${i}`,
});

describe('mrl fit --embeddings', () => {
  const PER_CLASS = 300;
  const EPSILON = 0.02;
  let dir: string;
  let printed: { fit: FitRecord };
  let fitted: Bundle;
  beforeAll(async () => {
    // 300 training images per class, embedded by the default bundle's own encoder.
    const train = await loadSplit('train');
    const per = train.count / 10;
    const images = new Uint8Array(10 * PER_CLASS * 784);
    for (let c = 0; c < 10; c++) images.set(train.images.subarray(c * per * 784, (c * per + PER_CLASS) * 784), c * PER_CLASS * 784);
    const z = await embedInputs(source, pixelSource(images, 10 * PER_CLASS), '', true);
    const lines = Array.from({ length: 10 * PER_CLASS }, (_, i) =>
      JSON.stringify({ embedding: Array.from(z.subarray(i * 512, (i + 1) * 512)), label: source.labels[Math.floor(i / PER_CLASS)] }),
    );
    await writeFile(join(tmp, 'train.jsonl'), `${lines.join('\n')}\n`);
    dir = await headlessBundle(join(tmp, 'from-embeddings'));
    const { stdout } = await mrl('fit', dir, '--embeddings', join(tmp, 'train.jsonl'), '--epsilon', String(EPSILON), '--json');
    printed = JSON.parse(stdout) as { fit: FitRecord };
    fitted = await loadBundle(dir);
  }, 90_000);

  it('writes MRL heads, temperatures, certified thresholds and the fit record into model.json', () => {
    expect(fitted.headKind).toBe('mrl');
    expect(fitted.heads.map((h) => h.size)).toEqual(fitted.nesting);
    expect(fitted.thresholds).toHaveLength(fitted.nesting.length - 1);
    expect(fitted.temperatures).toHaveLength(fitted.nesting.length);
    const record = fitted.meta.fit as FitRecord;
    expect(record).toEqual(printed.fit);
    expect([record.count, record.train, record.validation]).toEqual([3000, 2400, 600]);
    expect(record.converged).toBe(true);
    expect(record.validation_accuracy['512']).toBeGreaterThanOrEqual(0.85);
    const cert = (fitted.meta.calibration as { certificate: { risk: string; epsilon: number; n: number; bound: number } }).certificate;
    expect(cert).toMatchObject({ risk: 'disagreement', epsilon: EPSILON, n: 360 });
    expect(cert.bound).toBeLessThanOrEqual(EPSILON);
  });

  it('writes a model card with the per-size validation accuracy and the certified cascade', async () => {
    const card = await readFile(join(dir, 'README.md'), 'utf8');
    const record = fitted.meta.fit as FitRecord;
    for (const m of fitted.nesting) expect(card).toContain(`| ${m} | ${(100 * record.validation_accuracy[String(m)]!).toFixed(2)} |`);
    expect(card).toMatch(/with probability at least 0\.95 over that sample, the cascade disagrees with the 512-d answer on at most 2% of inputs/);
    expect(card).toMatch(/average of \*\*[\d.]+ dimensions\*\*/);
  });

  it('on held-out images (the test slice), the served cascade disagrees with its 512-d answer on at most epsilon, and is accurate', async () => {
    const slice = await loadTestSlice(source);
    const z = await embedInputs(source, pixelSource(slice.images, slice.count), '', true);
    const cascade = new Cascade(fitted.headKind, fitted.nesting, fitted.heads, fitted.normalization);
    const table = { n: slice.count, dims: fitted.nesting, classes: 10, logits: stageLogits(cascade, z), labels: slice.labels };
    const result = evaluateTable(fitted, table, 'test slice', { ...exitSettings(fitted), policy: 'cascade', maxDimension: 0 });
    expect(result.disagreement).toBeLessThanOrEqual(EPSILON);
    expect(result.per_dimension_accuracy['512']).toBeGreaterThanOrEqual(0.85);
    expect(result.avg_dimension).toBeLessThan(512);
  });
});

describe('mrl fit --data', () => {
  const PER_CLASS = 20;
  let folder: string;
  beforeAll(async () => {
    // 20 PNGs per class from the test slice, the first label's folder left out.
    folder = join(tmp, 'images');
    const slice = await loadTestSlice(source);
    const written = new Array<number>(10).fill(0);
    for (let i = 0; i < slice.count && written.some((n, c) => c > 0 && n < PER_CLASS); i++) {
      const c = slice.labels[i]!;
      if (c === 0 || written[c]! >= PER_CLASS) continue;
      const path = join(folder, labelFolder(source.labels[c]!));
      await mkdir(path, { recursive: true });
      await sharp(Buffer.from(slicePixels(slice, i)), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(join(path, `${i}.png`));
      written[c]!++;
    }
    await writeFile(join(folder, 'Trouser', 'notes.txt'), 'not an image');
  });

  it('embeds the images with the bundle\'s encoder and preprocessing, fits an MRL-E head and writes a loadable bundle', async () => {
    const dir = await headlessBundle(join(tmp, 'from-images'));
    // On 90 images a weak penalty lets some stage separate the 36 that fit its temperature, which
    // then collapses to 0.01, and "every threshold 1" no longer keeps inputs from exiting there.
    const { stdout, stderr } = await mrl('fit', dir, '--data', folder, '--kind', 'mrl-e', '--val-fraction', '0.5', '--epsilon', '0.1', '--l2', '0.1');
    expect(stderr).toContain('warning: no examples of "T-shirt/top"');
    expect(stderr).toContain('warning: skipped 1 files');
    expect(stdout).toMatch(/^fitted MRL-E heads of fashion-mnist-mrl@2\.0\.0 on 90 of 180 images in /m);
    const fitted = await loadBundle(dir);
    expect(fitted.headKind).toBe('mrl-e');
    expect(fitted.heads.map((h) => h.size)).toEqual([512]);
    const record = fitted.meta.fit as FitRecord;
    expect(record.source).toEqual({ images: folder });
    expect(record.validation_accuracy['512']).toBeGreaterThanOrEqual(0.7);
  });

  const options = (o: Partial<FitOptions>): FitOptions => ({
    kind: 'mrl',
    valFraction: 0.5,
    seed: 0,
    l2: 1e-3,
    target: { kind: 'certified', risk: 'disagreement', epsilon: 0.1, delta: 0.05 },
    json: true,
    ...o,
  });

  it('refuses a folder that is not one of the labels, naming it, before writing anything', async () => {
    const dir = await headlessBundle(join(tmp, 'refused-folder'));
    await mkdir(join(folder, 'Socks'), { recursive: true });
    try {
      const err = (await mrl('fit', dir, '--data', folder).catch((e: unknown) => e)) as { code: number; stderr: string };
      expect(err.code).toBe(1);
      expect(err.stderr).toMatch(/^mrl: --data .*images: folder "Socks" is not one of the bundle's labels \(T-shirt\/top, Trouser, /m);
    } finally {
      await rm(join(folder, 'Socks'), { recursive: true });
    }
    expect(JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')).heads).toBeUndefined();
  });

  it('refuses images for an embeddings-only bundle, and a validation split too small to certify, before embedding', async () => {
    const embeddingsOnly = await headlessBundle(join(tmp, 'embeddings-only'), ['input', 'preprocess', 'output']);
    await expect(fitBundle(embeddingsOnly, options({ data: folder }))).rejects.toThrow(/is embeddings-only .*: fit it with --embeddings FILE\.jsonl/);
    const dir = await headlessBundle(join(tmp, 'too-small'));
    await expect(fitBundle(dir, options({ data: folder, valFraction: 0.2, target: { kind: 'certified', risk: 'disagreement', epsilon: 0.005, delta: 0.05 } }))).rejects.toThrow(
      /the validation split \(36 of 180 inputs\) leaves 21 for the certificate's tests, too few to certify disagreement <= 0\.005 at delta 0\.05 even without a mistake, which takes 598;/,
    );
  });
});

describe('mrl fit --embeddings refuses a bad line, naming it', () => {
  const good = (label: string) => JSON.stringify({ embedding: new Array(512).fill(0.5), label });
  const cases: [string, string, RegExp][] = [
    ['a short embedding', JSON.stringify({ embedding: [1, 2, 3], label: 'Bag' }), /line 3: "embedding" has 3 values; the bundle's embedding_dim is 512/],
    ['an unknown label', good('Socks'), /line 3: "label" "Socks" is not one of the bundle's labels \(T-shirt\/top, /],
    ['a value outside float32', good('Bag').replace('0.5', '1e39'), /line 3: "embedding"\[0\] is 1e\+39, not a finite float32 number/],
    ['a string value', good('Bag').replace('0.5', '"x"'), /line 3: "embedding"\[0\] is "x", not a finite float32 number/],
    ['a line that is not JSON', '{"embedding": [1, 2', /line 3: not JSON/],
    ['no embedding', JSON.stringify({ label: 'Bag' }), /line 3: "embedding" must be an array of 512 numbers/],
  ];
  it.each(cases)('%s', async (_, line, message) => {
    const file = join(tmp, `bad-${Math.random().toString(36).slice(2)}.jsonl`);
    await writeFile(file, [good('Bag'), '', line, good('Coat')].join('\n'));
    const dir = await headlessBundle(join(tmp, 'bad-lines'));
    const options: FitOptions = { embeddings: file, kind: 'mrl', valFraction: 0.2, seed: 0, l2: 1e-3, target: { kind: 'certified', risk: 'disagreement', epsilon: 0.005, delta: 0.05 }, json: true };
    await expect(fitBundle(dir, options)).rejects.toThrow(message);
  });

  it('exits 1 with the message from the command line', async () => {
    const file = join(tmp, 'bad-cli.jsonl');
    await writeFile(file, `${good('Bag')}\n${JSON.stringify({ embedding: [1], label: 'Bag' })}\n`);
    const err = (await mrl('fit', await headlessBundle(join(tmp, 'bad-cli')), '--embeddings', file).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toContain(`mrl: --embeddings ${file} line 2: "embedding" has 1 values; the bundle's embedding_dim is 512`);
  });
});
