import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { type Bundle, DEFAULT_MODEL_DIR, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import { loadTestSlice, type TestSlice } from '../cli/testSlice.js';

// The shipped bundles, checked against what PyTorch computed when it wrote them.
describe.each([DEFAULT_MODEL_DIR, join(DEFAULT_MODEL_DIR, '..', 'fashion-mnist-mrl-e')])('model bundle %s', (dir) => {
  let bundle: Bundle;
  let session: ort.InferenceSession;
  let slice: TestSlice;

  beforeAll(async () => {
    bundle = await loadBundle(dir);
    session = await ort.InferenceSession.create(bundle.encoderPath);
    slice = await loadTestSlice(bundle);
  });

  async function embed(first: number, count: number): Promise<Float32Array> {
    const pixels = slice.images.subarray(first * 784, (first + count) * 784);
    const input = new ort.Tensor('float32', pixelsToInput(pixels, bundle.input), [count, 1, 28, 28]);
    const out = await session.run({ [bundle.input.name]: input });
    return out[bundle.outputName]!.data as Float32Array;
  }

  it('declares a Matryoshka nesting from 1 to a d of at least 512, ten labels, a threshold per stage but the last and a temperature per stage', () => {
    expect(bundle.embeddingDim).toBeGreaterThanOrEqual(512);
    expect(bundle.nesting[0]).toBe(1);
    bundle.nesting.slice(1).forEach((m, i) => expect(m).toBe(2 * bundle.nesting[i]!));
    expect(bundle.labels).toHaveLength(10);
    expect(bundle.thresholds).toHaveLength(bundle.nesting.length - 1);
    expect(bundle.meta.temperatures).toHaveLength(bundle.nesting.length);
  });

  it('stays under 10 MB', async () => {
    const files = await readdir(bundle.dir);
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(bundle.dir, f))).size));
    expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(10 * 1024 * 1024);
  });

  it('encoder.onnx has a dynamic batch axis and reproduces the PyTorch reference embeddings (max abs diff < 1e-4)', async () => {
    const ref = JSON.parse(await readFile(join(bundle.dir, 'reference-embeddings.json'), 'utf8')) as {
      slice_indices: number[];
      embeddings: number[][];
    };
    expect(ref.slice_indices).toEqual(ref.slice_indices.map((_, i) => i));
    const got = await embed(0, ref.embeddings.length);
    let maxDiff = 0;
    ref.embeddings.forEach((row, i) => {
      expect(row).toHaveLength(bundle.embeddingDim);
      row.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - got[i * bundle.embeddingDim + j]!))));
    });
    expect(maxDiff).toBeLessThan(1e-4);
  });

  it('reproduces the per-size accuracies on the test slice that model.json and the model card state', async () => {
    const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
    const embeddings = await embed(0, slice.count);
    const right = new Array<number>(bundle.nesting.length).fill(0);
    for (let i = 0; i < slice.count; i++) {
      const stages = cascade.allStages(embeddings.subarray(i * bundle.embeddingDim, (i + 1) * bundle.embeddingDim));
      stages.forEach((s, k) => (right[k]! += s.classIndex === slice.labels[i] ? 1 : 0));
    }
    const stated = (bundle.meta.metrics as { slice_accuracy: Record<string, number> }).slice_accuracy;
    const card = await readFile(join(bundle.dir, 'README.md'), 'utf8');
    bundle.nesting.forEach((m, k) => {
      const accuracy = right[k]! / slice.count;
      expect(accuracy).toBeCloseTo(stated[String(m)]!, 9);
      expect(card).toContain(`${m}: ${(100 * accuracy).toFixed(2)}`);
    });
  });
});
