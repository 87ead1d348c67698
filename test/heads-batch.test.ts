import { describe, expect, it } from 'vitest';
import type { HeadKind, LinearHead } from '../matryoshka/bundle.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { Cascade, type CascadeOptions, type HeadKernel, type StageWork, softmax } from '../matryoshka/cascade.js';
import { ortHeadKernel } from '../matryoshka/ortHeads.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { encode, encoderClient, sliceTensor } from '../cli/clients.js';
import { startMesh } from '../harness/mesh.js';

function rng(seed: number) {
  return () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
}

/** A synthetic bundle's cascade: `classes` prototypes in d dims, nesting 8…d, and inputs near them of mixed strength. */
function synthetic(kind: HeadKind, classes: number, d: number) {
  const r = rng(7);
  const nesting: number[] = [];
  for (let m = 8; m <= d; m *= 2) nesting.push(m);
  const proto = Float32Array.from({ length: classes * d }, (_, i) => (r() * 6) / Math.sqrt(1 + (i % d) / 8));
  const heads: LinearHead[] =
    kind === 'mrl-e'
      ? [{ size: d, weight: proto, bias: Float32Array.from({ length: classes }, () => r()) }]
      : nesting.map((m) => {
          const w = new Float32Array(classes * m);
          for (let c = 0; c < classes; c++) w.set(proto.subarray(c * d, c * d + m), c * m);
          return { size: m, weight: w, bias: Float32Array.from({ length: classes }, () => r()) };
        });
  const zs = Array.from({ length: 96 }, (_, i) => Float32Array.from({ length: d }, (_, j) => proto[(i % classes) * d + j]! * 2 ** (-8 * Math.abs(r())) + r() * 0.5));
  return { cascade: new Cascade(kind, nesting, heads), nesting, zs };
}

/** Per request: a mix of policies, caps and temperatures, as concurrent callers send them. */
const optionsFor = (nesting: number[], n: number): CascadeOptions[] =>
  Array.from({ length: n }, (_, i) => ({
    thresholds: new Array<number>(nesting.length - 1).fill(0.6 + (i % 4) * 0.1),
    temperatures: nesting.map((_, k) => 0.8 + 0.1 * ((i + k) % 4)),
    policy: i % 7 === 3 ? 'full' : 'cascade',
    maxDimension: i % 5 === 2 ? nesting[nesting.length - 2] : undefined,
  }));

/** The kernel, recording how many rows each stage ran. */
function counting(kernel: HeadKernel) {
  const rows = new Map<number, number>();
  const counted: HeadKernel = (work: StageWork) => {
    rows.set(work.to, (rows.get(work.to) ?? 0) + work.rows);
    return kernel(work);
  };
  return { counted, rows };
}

describe('the cascade over a batch, stage by stage', () => {
  for (const kind of ['mrl', 'mrl-e'] as const) {
    it(`${kind}: a batch answers as each request alone, and each stage runs only the requests still unresolved`, async () => {
      const { cascade, nesting, zs } = synthetic(kind, 50, 128);
      const options = optionsFor(nesting, zs.length);
      const { counted, rows } = counting(cascade.js);
      const batch = await cascade.classifyBatch(zs, options, counted);
      batch.forEach((got, i) => {
        const alone = cascade.classify(zs[i]!, options[i]!);
        expect({ classIndex: got.classIndex, dimensionUsed: got.dimensionUsed, trace: got.trace }).toEqual({
          classIndex: alone.classIndex,
          dimensionUsed: alone.dimensionUsed,
          trace: alone.trace,
        });
        expect(got.confidence).toBe(alone.confidence);
      });
      // Stage m ran exactly the requests whose trace reaches m: none twice, none answered before.
      const reached = new Map<number, number>();
      for (const r of batch) for (const s of r.trace) reached.set(s.dimension, (reached.get(s.dimension) ?? 0) + 1);
      expect(rows).toEqual(reached);
      expect(rows.get(nesting[0]!)!).toBeGreaterThan(rows.get(nesting.at(-1)!) ?? 0);
    });

    it(`${kind}: on onnxruntime, the same answers as in JavaScript (float32 against float64)`, async () => {
      const { cascade, nesting, zs } = synthetic(kind, 300, 256);
      const options = optionsFor(nesting, zs.length);
      const [js, ort] = await Promise.all([cascade.classifyBatch(zs, options), cascade.classifyBatch(zs, options, ortHeadKernel(cascade))]);
      let same = 0;
      ort.forEach((got, i) => {
        const want = js[i]!;
        // A top probability within float32's rounding of a threshold may exit one stage apart.
        if (got.dimensionUsed === want.dimensionUsed && got.classIndex === want.classIndex) same++;
        expect(got.trace[0]!.topProbability).toBeCloseTo(want.trace[0]!.topProbability, 4);
      });
      expect(same).toBeGreaterThanOrEqual(zs.length - 1);
    });
  }

  it('onnxruntime heads release their sessions, and a stage run afterwards makes its session again', async () => {
    const { cascade, nesting, zs } = synthetic('mrl-e', 300, 256);
    const options = optionsFor(nesting, zs.length);
    const kernel = ortHeadKernel(cascade);
    const before = await cascade.classifyBatch(zs, options, kernel);
    await kernel.release();
    await kernel.release();
    expect(await cascade.classifyBatch(zs, options, kernel)).toEqual(before);
  });

  for (const kind of ['mrl', 'mrl-e'] as const)
    it(`${kind}: an answer lists the k most probable classes of its stage, as that stage's softmax ranks them, in JavaScript and on onnxruntime`, async () => {
      const { cascade, nesting, zs } = synthetic(kind, 300, 256);
      const temperatures = nesting.map((_, i) => 1 + i / 10);
      const options = zs.map((_, i) => ({ thresholds: new Array<number>(nesting.length - 1).fill(0.8), temperatures, topK: 1 + (i % 6) }));
      const [js, ort] = await Promise.all([cascade.classifyBatch(zs, options), cascade.classifyBatch(zs, options, ortHeadKernel(cascade))]);
      const dims = new Set<number>();
      zs.forEach((z, i) => {
        const result = js[i]!;
        const stage = nesting.indexOf(result.dimensionUsed);
        dims.add(result.dimensionUsed);
        // Every stage's logits from the JavaScript path: the answering stage's softmax is the reference.
        const p = softmax(cascade.logits(z)[stage]!, temperatures[stage]);
        const want = Array.from(p.keys())
          .sort((a, b) => p[b]! - p[a]! || a - b)
          .slice(0, options[i]!.topK);
        expect(result.top.map((t) => t.classIndex)).toEqual(want);
        result.top.forEach((t) => expect(t.probability).toBeCloseTo(p[t.classIndex]!, 12));
        expect(result.top[0]!.probability).toBe(result.confidence);
        if (ort[i]!.dimensionUsed !== result.dimensionUsed) return;
        expect(ort[i]!.top.map((t) => t.classIndex)).toEqual(want);
        ort[i]!.top.forEach((t) => expect(t.probability).toBeCloseTo(p[t.classIndex]!, 5));
      });
      // Answers came from several stages, so the lists were read from different stages' heads.
      expect(dims.size).toBeGreaterThan(2);
    });

  it('the default bundle over its test slice: a batch answers as each image alone', async () => {
    const bundle = await loadBundle();
    const slice = await loadTestSlice(bundle);
    const mesh = await startMesh();
    try {
      const zs = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
        const res = await encode(mesh.encoderClient, { tensor: sliceTensor(slice, i, bundle) });
        return Float32Array.from(res.embedding);
      }));
      const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
      const options = zs.map(() => ({ thresholds: bundle.thresholds, temperatures: bundle.temperatures }));
      const batch = await cascade.classifyBatch(zs, options);
      batch.forEach((got, i) => expect(got).toEqual(cascade.classify(zs[i]!, options[i]!)));
    } finally {
      await mesh.stop();
    }
  });
});
