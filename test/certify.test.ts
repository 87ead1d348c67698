import { describe, expect, it } from 'vitest';
import { binomialCdf, binomialUpperBound } from '../matryoshka/binomial.js';
import { type LogitTable, replay, searchThresholds, stageTable } from '../matryoshka/calibration.js';
import { certifyThresholds, fewestInputs, fewestTested, learnCertifySplit } from '../matryoshka/certify.js';
import { expectedCalibrationErrors, fitTemperatures } from '../matryoshka/temperature.js';
import { seeded } from '../harness/synthetic.js';

/** A seeded generator, so every table is the same on every run. */

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

const DIMS = [1, 2, 4, 8];
const C = 4;

/**
 * n inputs of a 4-stage, 4-class problem: stage k's logits are signal × one-hot(true class) plus
 * noise, the signal growing with k, all scaled by `overconfidence` (a miscalibrated model).
 */
function syntheticTable(seed: number, n: number, overconfidence = 1): LogitTable {
  const r = seeded(seed);
  const K = DIMS.length;
  const logits = new Float64Array(n * K * C);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = Math.floor(r() * C);
    const hardness = r(); // some inputs are hard at every size
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++)
        logits[(i * K + k) * C + c] = overconfidence * ((c === labels[i] ? (0.6 + 0.9 * k) * (1.4 - hardness) : 0) + gaussian(r));
  }
  return { n, dims: DIMS, classes: C, logits, labels };
}

describe('binomial tail', () => {
  it('matches exact values computed with rational arithmetic', () => {
    expect(binomialCdf(5, 10, 0.5)).toBeCloseTo(0.623046875, 12);
    expect(binomialCdf(8, 3000, 0.005)).toBeCloseTo(0.0371064213143239, 10);
    expect(binomialCdf(0, 100, 0.01)).toBeCloseTo(0.3660323412732295, 12);
    expect(binomialCdf(30, 5000, 0.01)).toBeCloseTo(0.0015271786755, 10);
    expect(binomialCdf(-1, 10, 0.3)).toBe(0);
    expect(binomialCdf(10, 10, 0.3)).toBe(1);
  });

  it('the upper bound is where the tail reaches δ', () => {
    for (const [k, n] of [[0, 100], [8, 3000], [40, 2000]] as const) {
      const u = binomialUpperBound(k, n, 0.05);
      expect(u).toBeGreaterThan(k / n);
      expect(binomialCdf(k, n, u)).toBeCloseTo(0.05, 8);
    }
    // The rule of three: no events in n gives about 3/n at 95%.
    expect(binomialUpperBound(0, 1000, 0.05)).toBeCloseTo(1 - 0.05 ** (1 / 1000), 10);
  });
});

describe('the fewest inputs a certificate needs', () => {
  it('is where a cascade without a mistake first passes the test, counted in tested inputs and in inputs before the split', () => {
    for (const epsilon of [0.3, 0.1, 0.05, 0.01, 0.005])
      for (const delta of [0.2, 0.1, 0.05, 0.01]) {
        const tested = fewestTested({ epsilon, delta });
        // No mistake in n tested: its p-value is P(X = 0) = (1 − ε)^n.
        expect(binomialCdf(0, tested, epsilon)).toBeLessThanOrEqual(delta);
        expect(binomialCdf(0, tested - 1, epsilon)).toBeGreaterThan(delta);
        const n = fewestInputs({ epsilon, delta });
        expect(learnCertifySplit(n).certify.length).toBe(tested);
        expect(learnCertifySplit(n - 1).certify.length).toBe(tested - 1);
      }
  });
});

describe('temperature scaling', () => {
  it('recovers the temperature of an overconfident model and lowers its calibration error', () => {
    // True class probabilities softmax(l); the model reports 2.5 × l.
    const r = seeded(7);
    const n = 4000;
    const logits = new Float64Array(n * C);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const l = Array.from({ length: C }, (_, c) => (c === 0 ? 1 : 0) + gaussian(r));
      const exps = l.map(Math.exp);
      let u = r() * exps.reduce((a, b) => a + b, 0);
      labels[i] = Math.max(0, exps.findIndex((e) => (u -= e) <= 0));
      l.forEach((v, c) => (logits[i * C + c] = 2.5 * v));
    }
    const table: LogitTable = { n, dims: [1], classes: C, logits, labels };
    const [t] = fitTemperatures(table);
    expect(t).toBeGreaterThan(2.2);
    expect(t).toBeLessThan(2.8);
    const [before] = expectedCalibrationErrors(table, [1]);
    const [after] = expectedCalibrationErrors(table, [t!]);
    expect(after!).toBeLessThan(before! / 2);
  });
});

describe('certified calibration (Learn then Test)', () => {
  const population = syntheticTable(1_000_001, 30_000, 2);
  const truth = (t: { thresholds: number[]; temperatures: number[] }) => replay(stageTable(population, t.temperatures, 'full-size'), t.thresholds).disagreements / population.n;

  it('picks thresholds whose disagreement on the tested part is within the certified bound', () => {
    const table = syntheticTable(11, 3000, 2);
    const got = certifyThresholds(table, { risk: 'disagreement', epsilon: 0.02, delta: 0.1 });
    const c = got.certificate;
    expect(c.n + c.n_learn).toBe(3000);
    expect(c.n).toBe(learnCertifySplit(3000).certify.length);
    expect(c.p_value).toBeLessThanOrEqual(0.1);
    expect(c.bound).toBeLessThanOrEqual(0.02);
    expect(c.bound).toBeGreaterThanOrEqual(c.empirical_risk);
    expect(c.certified).toBeGreaterThan(1);
    // It escalates less than the full size: the certificate is worth something.
    expect(got.avgDimension).toBeLessThan(DIMS.at(-1)!);
    expect(got.thresholds.every((t) => t >= 0 && t <= 1)).toBe(true);
  });

  it('holds its guarantee: over 60 calibration samples the true risk exceeds ε in at most δ of them (plus slack)', () => {
    const epsilon = 0.03;
    const delta = 0.1;
    let failures = 0;
    let naiveFailures = 0;
    const draws = 60;
    for (let s = 0; s < draws; s++) {
      const sample = syntheticTable(500 + s, 1000, 2);
      const got = certifyThresholds(sample, { risk: 'disagreement', epsilon, delta });
      if (truth(got) > epsilon) failures++;
      // A control: the cheapest thresholds whose disagreement on the same sample is at most ε.
      const scored = stageTable(sample, got.temperatures, 'full-size');
      const naive = searchThresholds(scored, { kind: 'min-dimension', minCorrect: Math.ceil((1 - epsilon) * sample.n) });
      if (truth({ thresholds: naive.thresholds, temperatures: got.temperatures }) > epsilon) naiveFailures++;
    }
    // Binomial(60, 0.1) exceeds 12 with probability below 1%.
    expect(failures).toBeLessThanOrEqual(12);
    // The control overfits its sample: it fails far more often, so the check above can tell.
    expect(naiveFailures).toBeGreaterThan(failures + 12);
  });

  it('works without labels for disagreement, and refuses the error risk there', () => {
    const { labels: _, ...unlabelled } = syntheticTable(12, 2000, 2);
    const got = certifyThresholds(unlabelled, { risk: 'disagreement', epsilon: 0.03, delta: 0.1, temperatures: [1, 1, 1, 1] });
    expect(got.certificate.bound).toBeLessThanOrEqual(0.03);
    expect(() => certifyThresholds(unlabelled, { risk: 'error', epsilon: 0.03, delta: 0.1 })).toThrow(/needs labelled inputs/);
  });

  it('certifies the error risk from labels', () => {
    const table = syntheticTable(13, 3000, 2);
    const got = certifyThresholds(table, { risk: 'error', epsilon: 0.02, delta: 0.1 });
    const scored = stageTable(table, got.temperatures);
    const full = replay(scored, [1, 1, 1], { policy: 'full' }).correct;
    expect(got.certificate.risk).toBe('error');
    expect(got.certificate.bound).toBeLessThanOrEqual(0.02);
    // The loss tested (wrong where the full size is right) bounds the error difference from above.
    const r = replay(scored, got.thresholds);
    expect((full - r.correct) / table.n).toBeLessThanOrEqual(r.harms / table.n);
  });

  it('says so when nothing can be certified', () => {
    const table = syntheticTable(14, 100, 2);
    expect(() => certifyThresholds(table, { risk: 'disagreement', epsilon: 0.001, delta: 0.05 })).toThrow(/no thresholds could be certified/);
  });
});
