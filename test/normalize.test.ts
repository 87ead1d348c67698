import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify, classifyBatch, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { type Bundle, DEFAULT_MODEL_DIR, type LinearHead, loadBundle } from '../matryoshka/bundle.js';
import { Cascade, argmax } from '../matryoshka/cascade.js';
import { softmax } from './helpers/softmax.js';
import { normalizePrefix, prefixNormalizer } from '../matryoshka/normalize.js';

const f32 = (...v: number[]) => Float32Array.from(v);
const close = (got: Float32Array, want: number[]) => {
  expect(got).toHaveLength(want.length);
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 6));
};

describe('normalizePrefix', () => {
  it('none: the prefix as it is', () => {
    expect(Array.from(normalizePrefix(f32(3, 4, 12), 2, 'none'))).toEqual([3, 4]);
  });

  it('l2: the prefix scaled to unit length after truncation; a zero prefix stays zero', () => {
    close(normalizePrefix(f32(3, 4, 12), 2, 'l2'), [0.6, 0.8]);
    close(normalizePrefix(f32(3, 4, 12), 3, 'l2'), [3 / 13, 4 / 13, 12 / 13]);
    expect(Array.from(normalizePrefix(f32(0, 0, 5), 2, 'l2'))).toEqual([0, 0]);
  });

  it('layer_norm_l2: a layer norm over the whole embedding, then truncation, then l2 (nomic-embed-text-v1.5)', () => {
    // z = 1, 2, 3, 4: mean 2.5, so the layer norm makes it proportional to -1.5, -0.5, 0.5, 1.5.
    close(normalizePrefix(f32(1, 2, 3, 4), 2, 'layer_norm_l2'), [-1.5 / Math.sqrt(2.5), -0.5 / Math.sqrt(2.5)]);
    close(normalizePrefix(f32(1, 2, 3, 4), 4, 'layer_norm_l2'), [-1.5, -0.5, 0.5, 1.5].map((v) => v / Math.sqrt(5)));
    // Not a layer norm of the prefix alone, which would centre 1, 2 on 1.5: -0.707, 0.707.
    expect(normalizePrefix(f32(1, 2, 3, 4), 2, 'layer_norm_l2')[0]).not.toBeCloseTo(-Math.SQRT1_2, 3);
    // A constant embedding has no direction: zeros, as PyTorch gives.
    expect(Array.from(normalizePrefix(f32(2, 2, 2, 2), 2, 'layer_norm_l2'))).toEqual([0, 0]);
  });

  it('leaves z as it was; prefixNormalizer gives the same prefixes for every size', () => {
    const z = f32(0.5, -1, 2, 0.25, 3, -2, 1, 1);
    for (const kind of ['none', 'l2', 'layer_norm_l2'] as const) {
      const at = prefixNormalizer(z, kind);
      for (const m of [1, 2, 4, 8]) expect(Array.from(at(m))).toEqual(Array.from(normalizePrefix(z, m, kind)));
    }
    expect(Array.from(z)).toEqual([0.5, -1, 2, 0.25, 3, -2, 1, 1]);
  });
});

/** W · x + b in float64, W being classes × cols row-major and x the first x.length columns' input. */
function byHand(head: LinearHead, cols: number, x: readonly number[]): number[] {
  return Array.from(head.bias, (b, c) => x.reduce((acc, v, j) => acc + head.weight[c * cols + j]! * v, b));
}
const unit = (x: readonly number[]) => {
  const norm = Math.hypot(...x);
  return x.map((v) => v / norm);
};

describe('Cascade with a normalisation', () => {
  let mrl: Bundle;
  let mrlE: Bundle;
  let embeddings: Float32Array[];

  beforeAll(async () => {
    mrl = await loadBundle();
    mrlE = await loadBundle(join(DEFAULT_MODEL_DIR, '..', 'fashion-mnist-mrl-e'));
    const ref = JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'reference-embeddings.json'), 'utf8')) as { embeddings: number[][] };
    embeddings = ref.embeddings.slice(0, 25).map((row) => Float32Array.from(row));
  });

  it('l2, MRL heads: each stage answers as its head does on the L2-normalised prefix, computed by hand', () => {
    const cascade = new Cascade('mrl', mrl.nesting, mrl.heads, 'l2');
    for (const z of embeddings) {
      const stages = cascade.allStages(z, mrl.temperatures);
      mrl.nesting.forEach((m, k) => {
        const probabilities = softmax(byHand(mrl.heads[k]!, m, unit(Array.from(z.subarray(0, m)))), mrl.temperatures[k]);
        expect(stages[k]!.classIndex).toBe(argmax(probabilities));
        expect(stages[k]!.topProbability).toBeCloseTo(Math.max(...probabilities), 6);
      });
    }
  });

  it('l2, an MRL-E head: each stage recomputes its first m columns on the normalised prefix; none still adds columns', () => {
    const d = mrlE.embeddingDim;
    const l2 = new Cascade('mrl-e', mrlE.nesting, mrlE.heads, 'l2');
    const none = new Cascade('mrl-e', mrlE.nesting, mrlE.heads);
    for (const z of embeddings) {
      const [normalised, raw] = [l2.logits(z), none.logits(z)];
      mrlE.nesting.forEach((m, k) => {
        const prefix = Array.from(z.subarray(0, m));
        byHand(mrlE.heads[0]!, d, unit(prefix)).forEach((v, c) => expect(normalised[k]![c]).toBeCloseTo(v, 4));
        byHand(mrlE.heads[0]!, d, prefix).forEach((v, c) => expect(raw[k]![c]).toBeCloseTo(v, 4));
      });
    }
  });

  it('layer_norm_l2 takes whole embeddings only, and needs the whole one whatever the cap', () => {
    const cascade = new Cascade('mrl', mrl.nesting, mrl.heads, 'layer_norm_l2');
    expect(cascade.embeddingLengths).toEqual([512]);
    expect(cascade.neededLength(8)).toBe(512);
    expect(cascade.embeddingError(64)).toBe('embedding has 64 values; expected all 512 (normalization layer_norm_l2 normalises the whole embedding before truncating it)');
    expect(() => cascade.classify(embeddings[0]!.subarray(0, 64), { thresholds: mrl.thresholds })).toThrow(RangeError);
    expect(new Cascade('mrl', mrl.nesting, mrl.heads, 'l2').neededLength(8)).toBe(8);
  });
});

describe('the cascade service applies the bundle\'s normalisation (layer_norm_l2, real encoder and cascade)', () => {
  let dir: string;
  let mesh: TestMesh;
  let bundle: Bundle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mrl-normalize-'));
    for (const file of ['encoder.onnx', 'heads.bin', 'test-slice.bin']) await copyFile(join(DEFAULT_MODEL_DIR, file), join(dir, file));
    const meta = JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'model.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'model.json'), JSON.stringify({ ...meta, normalization: 'layer_norm_l2' }));
    bundle = await loadBundle(dir);
    mesh = await startMesh({ MRL_MODEL_DIR: dir });
  });
  afterAll(async () => {
    await mesh?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks the encoder for the whole embedding even under max_dimension 8, and answers as the offline cascade on it', async () => {
    const slice = await loadTestSlice(bundle);
    const offline = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
    for (let i = 0; i < 10; i++) {
      const tensor = sliceTensor(slice, i, bundle);
      const z = Float32Array.from((await encode(mesh.encoderClient, { tensor })).embedding);
      for (const max_dimension of [0, 8]) {
        const want = offline.classify(z, { thresholds: bundle.thresholds, temperatures: bundle.temperatures, maxDimension: max_dimension });
        const got = await classify(mesh.classifier, { tensor, max_dimension });
        expect([got.class_index, got.dimension_used]).toEqual([want.classIndex, want.dimensionUsed]);
        expect(got.confidence).toBeCloseTo(want.confidence, 5);
      }
    }
    // ClassifyBatch's packed images take the same path.
    const images = { shape: [4, 28, 28], raw: Buffer.concat([0, 1, 2, 3].map((i) => sliceTensor(slice, i, bundle).raw)) };
    const batch = await classifyBatch(mesh.classifier, { images, max_dimension: 8 });
    for (const [i, r] of batch.results.entries()) {
      const alone = await classify(mesh.classifier, { tensor: sliceTensor(slice, i, bundle), max_dimension: 8 });
      expect([r.code, r.response?.class_index, r.response?.dimension_used]).toEqual([status.OK, alone.class_index, alone.dimension_used]);
    }
  });

  it('refuses an embedding shorter than the whole, saying why', async () => {
    const err = await classify(mesh.classifier, { embedding: { values: new Array<number>(64).fill(0.1) } }).then(
      () => expect.fail('expected a refusal'),
      (e: ServiceError) => e,
    );
    expect([err.code, err.details]).toEqual([status.INVALID_ARGUMENT, 'embedding has 64 values; expected all 512 (normalization layer_norm_l2 normalises the whole embedding before truncating it)']);
  });
});
