import { describe, expect, it } from 'vitest';
import { replay, searchThresholds, type StageTable } from '../matryoshka/calibration.js';
import { seeded } from '../harness/synthetic.js';

/** A seeded generator, so every table is the same on every run. */

/** n samples, stages of dims 8, 16, 32, 64: later stages more often right and more confident. */
function randomTable(seed: number, n: number): StageTable {
  const r = seeded(seed);
  const dims = [8, 16, 32, 64];
  const K = dims.length;
  const top = new Float64Array(n * K);
  const classIndex = new Int32Array(n * K);
  const labels = Array.from({ length: n }, () => Math.floor(r() * 3));
  for (let i = 0; i < n; i++)
    for (let k = 0; k < K; k++) {
      const right = r() < 0.55 + 0.15 * k;
      classIndex[i * K + k] = right ? labels[i]! : (labels[i]! + 1) % 3;
      top[i * K + k] = Math.round((0.34 + 0.66 * r()) * 100) / 100; // ties are common, as in real tables
    }
  return { n, dims, top, classIndex, labels };
}

/** Every combination of candidate thresholds (each distinct top of the stage, and 1). */
function bruteForce(table: StageTable, accept: (correct: number, cost: number) => boolean, better: (a: [number, number], b: [number, number]) => boolean) {
  const K = table.dims.length;
  const candidates = table.dims.slice(0, -1).map((_, k) => [1, ...new Set(Array.from({ length: table.n }, (_, i) => table.top[i * K + k]!))]);
  let best: [number, number] | undefined;
  for (const a of candidates[0]!)
    for (const b of candidates[1]!)
      for (const c of candidates[2]!) {
        const r = replay(table, [a, b, c]);
        const p: [number, number] = [r.correct, r.dimensionSum];
        if (accept(...p) && (best === undefined || better(p, best))) best = p;
      }
  return best;
}

describe('threshold search', () => {
  it('finds the known optimum on a hand-made table', () => {
    // Stage 8 is right on samples 0-2 (confident 0.9) and wrong on 3 (0.6); 16 is right on all but 4; 32 on all.
    const table: StageTable = {
      n: 5,
      dims: [8, 16, 32],
      top: Float64Array.from([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.6, 0.95, 0.99, 0.7, 0.6, 0.99]),
      classIndex: Int32Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 1, 2, 2, 1]),
      labels: [0, 1, 2, 1, 1],
    };
    // All 5 right at the least cost: samples 0-2 exit at 8 (t ≤ 0.9), 3 at 16 (t16 ≤ 0.95), 4 goes to 32.
    const best = searchThresholds(table, { kind: 'min-dimension', minCorrect: 5 });
    expect(best.correct).toBe(5);
    expect(best.avgDimension).toBeCloseTo((3 * 8 + 16 + 32) / 5, 12);
    expect(best.exits).toEqual([3, 1, 1]);
    // With one mistake allowed, sample 4 can stop at 8 (wrong) — cheaper.
    expect(searchThresholds(table, { kind: 'min-dimension', minCorrect: 4 }).avgDimension).toBeCloseTo((4 * 8 + 16) / 5, 12);
  });

  it('matches brute force on 150 random tables, for both objectives', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const table = randomTable(seed, 12);
      const fullCorrect = replay(table, [1, 1, 1]).correct;
      for (const slack of [0, 1, 2]) {
        const minCorrect = Math.max(0, fullCorrect - slack);
        const got = searchThresholds(table, { kind: 'min-dimension', minCorrect });
        const want = bruteForce(table, (c) => c >= minCorrect, (a, b) => a[1] < b[1] || (a[1] === b[1] && a[0] > b[0]));
        expect(got.correct, `seed ${seed}`).toBeGreaterThanOrEqual(minCorrect);
        expect(got.avgDimension * table.n, `seed ${seed} slack ${slack}`).toBe(want![1]);
      }
      for (const budget of [12, 20, 32]) {
        const maxDimensionSum = budget * table.n;
        const got = searchThresholds(table, { kind: 'max-accuracy', maxDimensionSum });
        const want = bruteForce(table, (_, cost) => cost <= maxDimensionSum, (a, b) => a[0] > b[0] || (a[0] === b[0] && a[1] < b[1]));
        expect(got.avgDimension * table.n).toBeLessThanOrEqual(maxDimensionSum);
        expect(got.correct, `seed ${seed} budget ${budget}`).toBe(want![0]);
      }
    }
  });

  it('the heuristic for large tables (forced here) is always feasible and finds the optimum on at least 95% of small ones', () => {
    let optimal = 0;
    let runs = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const table = randomTable(seed, 12);
      const minCorrect = replay(table, [1, 1, 1]).correct - 1;
      const got = searchThresholds(table, { kind: 'min-dimension', minCorrect }, { exhaustiveWork: 0 });
      const want = bruteForce(table, (c) => c >= minCorrect, (a, b) => a[1] < b[1] || (a[1] === b[1] && a[0] > b[0]));
      expect(got.correct).toBeGreaterThanOrEqual(minCorrect);
      runs++;
      if (got.avgDimension * table.n === want![1]) optimal++;
    }
    expect(optimal / runs).toBeGreaterThanOrEqual(0.95);
  });

  it('is deterministic', () => {
    const table = randomTable(99, 200);
    const a = searchThresholds(table, { kind: 'min-dimension', minCorrect: 120 }, { exhaustiveWork: 0 });
    const b = searchThresholds(table, { kind: 'min-dimension', minCorrect: 120 }, { exhaustiveWork: 0 });
    expect(a).toEqual(b);
  });
});
