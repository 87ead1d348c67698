import { beforeAll, describe, expect, it } from 'vitest';
import { type LogitTable, replay, selectRows, stageTable } from '../matryoshka/calibration.js';
import { certifyThresholds } from '../matryoshka/certify.js';
import { expectedCalibrationErrors } from '../matryoshka/temperature.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { loadSplit } from '../cli/fashionMnist.js';
import { buildLogitTable } from '../cli/logitTable.js';
import { seeded } from '../harness/synthetic.js';

/** A seeded generator, so every draw is the same on every run. */

/** A random permutation of 0..n-1 (Fisher-Yates). */
function permutation(n: number, r: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

let bundle: Bundle;
let validation: LogitTable;
let test: LogitTable;

beforeAll(async () => {
  bundle = await loadBundle();
  validation = await buildLogitTable(bundle, await loadSplit('validation'), '', true);
  test = await buildLogitTable(bundle, await loadSplit('test'), '', true);
}, 120_000);

describe('certified calibration on the default model', () => {
  it('re-drawn 50 times from random halves of validation, the bound fails on the other half in no more than δ of the draws (plus binomial slack)', () => {
    const epsilon = 0.005;
    const delta = 0.05;
    const draws = 50;
    const r = seeded(2026);
    let failures = 0;
    let dimensionSum = 0;
    for (let s = 0; s < draws; s++) {
      const order = permutation(validation.n, r);
      const half = validation.n >> 1;
      const calibration = selectRows(validation, order.slice(0, half));
      const heldOut = selectRows(validation, order.slice(half));
      const got = certifyThresholds(calibration, { risk: 'disagreement', epsilon, delta });
      const out = replay(stageTable(heldOut, got.temperatures, 'full-size'), got.thresholds);
      if (out.disagreements / heldOut.n > epsilon) failures++;
      dimensionSum += out.dimensionSum / heldOut.n;
    }
    // Binomial(50, 0.05) exceeds 8 with probability about 0.003.
    expect(failures).toBeLessThanOrEqual(8);
    // And the certified cascades save dimensions: far below the full size on average.
    expect(dimensionSum / draws).toBeLessThan(bundle.embeddingDim / 4);
  });

  it("the bundle's temperatures lower the test split's calibration error wherever a stage is miscalibrated, and raise it nowhere beyond noise", () => {
    const before = expectedCalibrationErrors(test, bundle.nesting.map(() => 1));
    const after = expectedCalibrationErrors(test, bundle.temperatures);
    const miscalibrated = bundle.nesting.filter((_, k) => before[k]! > 0.01);
    // The small prefixes are the miscalibrated ones (1-d's error is above 20% unscaled).
    expect(miscalibrated).toEqual(expect.arrayContaining([1, 2]));
    bundle.nesting.forEach((m, k) => {
      const msg = `${m}-d: ${before[k]} -> ${after[k]}`;
      if (before[k]! > 0.01) expect(after[k]!, msg).toBeLessThan(before[k]! * 0.8);
      // Stages already within 1% get temperatures near 1; their error's bootstrap spread over these 10,000 images is 0.0012-0.0015.
      else expect(after[k]!, msg).toBeLessThan(before[k]! + 0.002);
    });
  });

  it("re-certifying the bundle's validation split gives the thresholds and temperatures it ships", () => {
    const got = certifyThresholds(validation, { risk: 'disagreement', epsilon: 0.005, delta: 0.05 });
    got.thresholds.forEach((t, k) => expect(t).toBeCloseTo(bundle.thresholds[k]!, 5));
    got.temperatures.forEach((t, k) => expect(t).toBeCloseTo(bundle.temperatures[k]!, 5));
  });
});
