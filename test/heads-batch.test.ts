import * as ort from 'onnxruntime-node';
import { describe, expect, it, vi } from 'vitest';
import type { HeadKind } from '../matryoshka/bundle.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { Cascade, type CascadeOptions, type HeadKernel, type StageWork } from '../matryoshka/cascade.js';
import { softmax } from './helpers/softmax.js';
import { ortHeadKernel } from '../matryoshka/ortHeads.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { encode, sliceTensor } from '../cli/clients.js';
import { startMesh } from '../harness/mesh.js';
import { seeded, syntheticHeads } from '../harness/synthetic.js';

/** A synthetic bundle's cascade: `classes` prototypes in d dims, nesting 8…d, and inputs near them of mixed strength. */
function synthetic(kind: HeadKind, classes: number, d: number) {
  const u = seeded(7);
  const r = () => u() - 0.5;
  const { nesting, proto, heads } = syntheticHeads(kind, classes, d, r, r);
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
    topK: 1 + (i % 3),
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
        expect(got.top).toEqual(alone.top);
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
      const [js, onOrt] = await Promise.all([cascade.classifyBatch(zs, options), cascade.classifyBatch(zs, options, ortHeadKernel(cascade))]);
      let same = 0;
      onOrt.forEach((got, i) => {
        const want = js[i]!;
        // A top probability within float32's rounding of a threshold may exit one stage apart.
        if (got.dimensionUsed === want.dimensionUsed && got.classIndex === want.classIndex) same++;
        expect(got.trace[0]!.topProbability).toBeCloseTo(want.trace[0]!.topProbability, 4);
      });
      expect(same).toBeGreaterThanOrEqual(zs.length - 1);
    });
  }

  for (const kind of ['mrl', 'mrl-e'] as const)
    it(`${kind}: an embedding whose values are as large as the heads take gives finite answers that agree on onnxruntime and in JavaScript; a larger one is refused by both`, async () => {
      const { cascade, nesting } = synthetic(kind, 300, 256);
      const d = nesting.at(-1)!;
      const options: CascadeOptions = { ...cascade.everyStage(nesting.map((_, k) => 0.5 + 0.25 * k)), topK: 3 };
      const largest = cascade.largestValue(options.temperatures);
      expect(largest).toBeLessThan(3e38);
      // The float32 at or just below the limit.
      const at = Math.fround(largest) > largest ? Math.fround(largest * (1 - 2 ** -23)) : Math.fround(largest);
      // Every value at the limit, signed as the largest head's weights for each class in turn: its logits as large as they get.
      const { weight, size } = cascade.heads.at(-1)!;
      const kernel = ortHeadKernel(cascade);
      for (const c of [0, 1, 2]) {
        const z = Float32Array.from({ length: d }, (_, j) => (weight[c * size + j]! < 0 ? -at : at));
        const [js, onOrt] = await Promise.all([cascade.classifyBatch([z], [options]), cascade.classifyBatch([z], [options], kernel)]);
        expect(onOrt[0]!.trace.map((s) => s.classIndex)).toEqual(js[0]!.trace.map((s) => s.classIndex));
        for (const s of onOrt[0]!.trace) expect(Number.isFinite(s.topProbability)).toBe(true);
        expect(onOrt[0]!.top.map((t) => t.classIndex)).toEqual(js[0]!.top.map((t) => t.classIndex));
        const over = z.slice();
        over[7] = over[7]! * 1.01;
        const refusal = new RegExp(`^embedding value 7 is ${over[7]}; this model's heads take values of at most `.replace(/[.+]/g, '\\$&'));
        await expect(cascade.classifyBatch([over], [options])).rejects.toThrow(refusal);
        await expect(cascade.classifyBatch([over], [options], kernel)).rejects.toThrow(refusal);
      }
      await kernel.release();
    });

  it('onnxruntime heads let a running stage finish, then release every session they made, and refuse stages afterwards', async () => {
    const { cascade, nesting, zs } = synthetic('mrl-e', 300, 256);
    const options = optionsFor(nesting, zs.length);
    const created = vi.spyOn(ort.InferenceSession, 'create');
    // The factory is the session class itself: its instances' release is on its prototype.
    const released = vi.spyOn((ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype, 'release');
    try {
      const kernel = ortHeadKernel(cascade);
      await cascade.classifyBatch(zs, options, kernel);
      const stages: Promise<unknown>[] = [];
      const watched: HeadKernel = (work) => {
        const run = Promise.resolve(kernel(work));
        stages.push(run);
        return run;
      };
      // Released while its first stage runs: that stage answers, the batch's next is refused.
      const batch = cascade.classifyBatch(zs, options, watched);
      const release = kernel.release();
      await expect(stages[0]).resolves.toBeDefined();
      await expect(batch).rejects.toThrow(/released/);
      await release;
      expect(created.mock.calls.length).toBeGreaterThan(1);
      expect(released).toHaveBeenCalledTimes(created.mock.calls.length);
      // Nothing is made again after release.
      await expect(cascade.classifyBatch(zs, options, kernel)).rejects.toThrow(/released/);
      expect(created.mock.calls.length).toBe(released.mock.calls.length);
    } finally {
      created.mockRestore();
      released.mockRestore();
    }
  });

  for (const kind of ['mrl', 'mrl-e'] as const)
    it(`${kind}: the logits come back from onnxruntime only for stages that carry them or answer a request asking for more than its top class`, async () => {
      const { cascade, nesting, zs } = synthetic(kind, 300, 256);
      const seen: { to: number; rows: number; keepLogits: boolean }[] = [];
      const kernel = ortHeadKernel(cascade);
      const watched: HeadKernel = (work) => (seen.push({ to: work.to, rows: work.rows, keepLogits: work.keepLogits }), kernel(work));
      const options = zs.map(() => ({ thresholds: new Array<number>(nesting.length - 1).fill(0.8) }));
      await cascade.classifyBatch(zs, options, watched);
      // MRL-E carries logits to every stage but its last; separate MRL heads carry none.
      expect(seen.map((s) => s.keepLogits)).toEqual(seen.map((s) => kind === 'mrl-e' && s.to < nesting.at(-1)!));
      // One request of the batch asking for 5 classes: every stage it reaches returns the logits.
      seen.length = 0;
      const reach = (await cascade.classifyBatch([zs[0]!], [options[0]!], kernel))[0]!.dimensionUsed;
      const batch = await cascade.classifyBatch(zs, [{ ...options[0]!, topK: 5 }, ...options.slice(1)], watched);
      expect(batch[0]!.top).toHaveLength(5);
      expect(batch.slice(1).every((r) => r.top.length === 1)).toBe(true);
      expect(seen.map((s) => s.keepLogits)).toEqual(seen.map((s) => s.to <= reach || (kind === 'mrl-e' && s.to < nesting.at(-1)!)));
      await kernel.release();
    });

  for (const kind of ['mrl', 'mrl-e'] as const)
    it(`${kind}: an answer lists the k most probable classes of its stage, as that stage's softmax ranks them, in JavaScript and on onnxruntime`, async () => {
      const { cascade, nesting, zs } = synthetic(kind, 300, 256);
      const temperatures = nesting.map((_, i) => 1 + i / 10);
      const options = zs.map((_, i) => ({ thresholds: new Array<number>(nesting.length - 1).fill(0.8), temperatures, topK: 1 + (i % 6) }));
      const [js, onOrt] = await Promise.all([cascade.classifyBatch(zs, options), cascade.classifyBatch(zs, options, ortHeadKernel(cascade))]);
      const dims = new Set<number>();
      let compared = 0;
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
        if (onOrt[i]!.dimensionUsed !== result.dimensionUsed) return;
        compared++;
        expect(onOrt[i]!.top.map((t) => t.classIndex)).toEqual(want);
        onOrt[i]!.top.forEach((t) => expect(t.probability).toBeCloseTo(p[t.classIndex]!, 5));
      });
      // Answers came from several stages, so the lists were read from different stages' heads.
      expect(dims.size).toBeGreaterThan(2);
      // A top probability within float32's rounding of a threshold may exit one stage apart.
      expect(compared).toBeGreaterThanOrEqual(zs.length - 1);
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
