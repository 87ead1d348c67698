import { topOf } from './cascade.js';
import type { LogitTable } from './calibration.js';

/** Bins of the expected calibration error, as the temperature-scaling literature reports it. */
export const ECE_BINS = 15;

/** Mean negative log-likelihood of the labels for stage `k` at `temperature`. */
function nll(table: LogitTable, labels: ArrayLike<number>, k: number, temperature: number): number {
  const K = table.dims.length;
  const C = table.classes;
  let sum = 0;
  for (let i = 0; i < table.n; i++) {
    const row = table.logits.subarray((i * K + k) * C, (i * K + k + 1) * C);
    let max = -Infinity;
    for (let c = 0; c < C; c++) if (row[c]! > max) max = row[c]!;
    let z = 0;
    for (let c = 0; c < C; c++) z += Math.exp((row[c]! - max) / temperature);
    sum += Math.log(z) - (row[labels[i]!]! - max) / temperature;
  }
  return sum / table.n;
}

/**
 * Per stage, the temperature T that minimises the labels' negative log-likelihood of
 * softmax(logits / T) (Guo et al. 2017). The NLL is convex in 1/T, so a golden-section search
 * over log T in [1e-2, 1e2] finds the optimum; deterministic, no step size to tune.
 */
export function fitTemperatures(table: LogitTable): number[] {
  const labels = table.labels;
  if (!labels) throw new Error('fitting temperatures needs labelled inputs');
  const phi = (Math.sqrt(5) - 1) / 2;
  return table.dims.map((_, k) => {
    let lo = Math.log(1e-2);
    let hi = Math.log(1e2);
    const f = (x: number) => nll(table, labels, k, Math.exp(x));
    let a = hi - phi * (hi - lo);
    let b = lo + phi * (hi - lo);
    let fa = f(a);
    let fb = f(b);
    for (let it = 0; it < 60; it++) {
      if (fa <= fb) {
        hi = b;
        b = a;
        fb = fa;
        a = hi - phi * (hi - lo);
        fa = f(a);
      } else {
        lo = a;
        a = b;
        fa = fb;
        b = lo + phi * (hi - lo);
        fb = f(b);
      }
    }
    return Math.exp((lo + hi) / 2);
  });
}

/**
 * Expected calibration error of each stage at the given temperatures: the top probability split
 * into `bins` equal-width bins, and the gap between each bin's accuracy and mean confidence,
 * weighted by its share of inputs.
 */
export function expectedCalibrationErrors(table: LogitTable, temperatures: readonly number[], bins = ECE_BINS): number[] {
  const labels = table.labels;
  if (!labels) throw new Error('calibration error needs labelled inputs');
  const K = table.dims.length;
  const C = table.classes;
  return table.dims.map((_, k) => {
    const count = new Float64Array(bins);
    const conf = new Float64Array(bins);
    const right = new Float64Array(bins);
    for (let i = 0; i < table.n; i++) {
      const { classIndex: best, probability } = topOf(table.logits.subarray((i * K + k) * C, (i * K + k + 1) * C), temperatures[k]);
      const b = Math.min(bins - 1, Math.floor(probability * bins));
      count[b]!++;
      conf[b]! += probability;
      if (best === labels[i]) right[b]!++;
    }
    let ece = 0;
    for (let b = 0; b < bins; b++) if (count[b]! > 0) ece += Math.abs(right[b]! - conf[b]!) / table.n;
    return ece;
  });
}
