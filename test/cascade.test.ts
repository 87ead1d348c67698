import { describe, expect, it } from 'vitest';
import type { LinearHead } from '../matryoshka/bundle.js';
import { Cascade, exitsAt, topIndices } from '../matryoshka/cascade.js';
import { seeded } from '../harness/synthetic.js';
import { softmax } from './helpers/softmax.js';

// Synthetic heads over nesting [2, 4, 8] and 3 classes, built so each stage's confidence is known:
// stage 2 sees only z[0..1], stage 4 adds z[2..3], stage 8 adds z[4..7].
const NESTING = [2, 4, 8];
const CLASSES = 3;

function mrlHead(size: number, weights: number[][]): LinearHead {
  return { size, weight: Float32Array.from(weights.flat()), bias: new Float32Array(CLASSES) };
}

/** Head m puts `scale` × z[j] on class j % 3, for j < m. */
function mrlHeads(scale: number): LinearHead[] {
  return NESTING.map((m) => mrlHead(m, Array.from({ length: CLASSES }, (_, c) => Array.from({ length: m }, (_, j) => (j % CLASSES === c ? scale : 0)))));
}

const z = (...v: number[]) => Float32Array.from(v);

describe('Cascade (MRL heads)', () => {
  const cascade = new Cascade('mrl', NESTING, mrlHeads(1));

  it('answers at the first stage whose top probability reaches its threshold', () => {
    // Stage 2: logits [5, 0, 0] → top ≈ 0.987.
    const r = cascade.classify(z(5, 0, 0, 0, 0, 0, 0, 0), { thresholds: [0.9, 0.9] });
    expect(r.dimensionUsed).toBe(2);
    expect(r.classIndex).toBe(0);
    expect(r.confidence).toBeCloseTo(Math.exp(5) / (Math.exp(5) + 2), 6);
    expect(r.trace).toHaveLength(1);
    expect(r.trace[0]).toMatchObject({ dimension: 2, threshold: 0.9, escalated: false, classIndex: 0 });
  });

  it('escalates while stages are unsure, and the last stage always answers', () => {
    // Stage 2: logits [0, 0, 0] (1/3). Stage 4: z[2] on class 2 → [0, 0, 1]. Stage 8: z[5] on class 2 → [0, 0, 4].
    const input = z(0, 0, 1, 0, 0, 3, 0, 0);
    const r = cascade.classify(input, { thresholds: [0.99, 0.99] });
    expect(r.dimensionUsed).toBe(8);
    expect(r.classIndex).toBe(2);
    expect(r.trace.map((s) => s.escalated)).toEqual([true, true, false]);
    expect(r.trace[2]!.threshold).toBe(0);
    expect(r.trace[0]!.topProbability).toBeCloseTo(1 / 3, 6);
    // A lower second threshold stops at 4.
    expect(cascade.classify(input, { thresholds: [0.99, 0.5] }).dimensionUsed).toBe(4);
  });

  it('never goes past the dimension cap, and the capped stage answers', () => {
    const r = cascade.classify(z(0, 0, 1, 0, 0, 3, 0, 0), { thresholds: [0.99, 0.99], maxDimension: 4 });
    expect(r.dimensionUsed).toBe(4);
    expect(r.trace.map((s) => [s.dimension, s.escalated])).toEqual([[2, true], [4, false]]);
  });

  it('the full policy runs only the largest allowed stage', () => {
    const r = cascade.classify(z(5, 0, 0, 0, 0, 0, 0, 0), { thresholds: [0, 0], policy: 'full' });
    expect(r.dimensionUsed).toBe(8);
    expect(r.trace).toHaveLength(1);
    expect(cascade.classify(z(5, 0, 0, 0), { thresholds: [0, 0], policy: 'full' }).dimensionUsed).toBe(4);
  });

  it('a shorter embedding caps the cascade at its own length; lengths off the nesting are refused', () => {
    expect(cascade.classify(z(0, 0, 1, 0), { thresholds: [0.99, 0.99] }).dimensionUsed).toBe(4);
    expect(cascade.lastStage(new Float32Array(5))).toMatch(/expected one of the nesting sizes 2, 4, 8/);
    expect(cascade.lastStage(new Float32Array(8), { maxDimension: 3 })).toMatch(/max_dimension 3/);
    expect(() => cascade.classify(z(1, 2, 3), { thresholds: [0, 0] })).toThrow(RangeError);
  });

  it('lists the top k classes asked for, and refuses a k outside the classes', () => {
    const classes = cascade.classes;
    const all = cascade.classify(z(0, 0, 1, 0, 0, 3, 0, 0), { thresholds: [2, 2], topK: classes }).top;
    expect(all.map((t) => t.classIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: classes }, (_, i) => i));
    expect(all.reduce((p, t) => p + t.probability, 0)).toBeCloseTo(1, 12);
    // Best first.
    all.slice(1).forEach((t, i) => expect(t.probability).toBeLessThanOrEqual(all[i]!.probability));
    for (const topK of [0, classes + 1, 1.5]) expect(() => cascade.classify(z(0, 0, 1, 0), { thresholds: [0, 0], topK })).toThrow(/topK/);
  });

  it('allStages traces every stage with its class', () => {
    const t = cascade.allStages(z(0, 0, 1, 0, 0, 3, 0, 0));
    expect(t.map((s) => s.dimension)).toEqual(NESTING);
    expect(t.map((s) => s.classIndex)).toEqual([0, 2, 2]);
  });
});

describe('Cascade (MRL-E shared head)', () => {
  // A random shared head, 3 × 8, and a bias.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const weight = Float32Array.from({ length: CLASSES * 8 }, rand);
  const bias = Float32Array.from({ length: CLASSES }, rand);
  const shared = new Cascade('mrl-e', NESTING, [{ size: 8, weight, bias }]);

  it('incremental logits equal a from-scratch computation at every stage', () => {
    const input = Float32Array.from({ length: 8 }, rand);
    const trace = shared.allStages(input);
    NESTING.forEach((m, i) => {
      const logits = new Float64Array(CLASSES);
      for (let c = 0; c < CLASSES; c++) {
        logits[c] = bias[c]!;
        for (let j = 0; j < m; j++) logits[c]! += weight[c * 8 + j]! * input[j]!;
      }
      const p = softmax(logits);
      const best = p.indexOf(Math.max(...p));
      expect(trace[i]!.classIndex).toBe(best);
      expect(trace[i]!.topProbability).toBeCloseTo(p[best]!, 12);
    });
    // And the full policy (one step over all columns) agrees with the last stage.
    const full = shared.classify(input, { thresholds: [0, 0], policy: 'full' });
    expect(full.confidence).toBeCloseTo(trace[2]!.topProbability, 12);
  });
});

describe('topIndices', () => {
  it('gives the k largest, best first, ties to the lower index: a stable sort\'s first k', () => {
    const next = seeded(5);
    for (const length of [1, 7, 300]) {
      // Few distinct values, so that ties are everywhere.
      const logits = Float64Array.from({ length }, () => Math.floor(next() * 5));
      const sorted = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
      for (const k of [1, 2, 3, Math.ceil(length / 2), length]) expect(topIndices(logits, k)).toEqual(sorted.slice(0, k));
    }
  });
});

describe('exitsAt', () => {
  it('exits at the last stage or at a threshold reached', () => {
    expect(exitsAt(0, 2, 0.5, [0.5, 0.9])).toBe(true);
    expect(exitsAt(0, 2, 0.49, [0.5, 0.9])).toBe(false);
    expect(exitsAt(2, 2, 0, [0.5, 0.9])).toBe(true);
  });
});
