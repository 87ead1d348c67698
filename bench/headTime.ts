import { Cascade } from '../matryoshka/cascade.js';
import type { HeadKind, LinearHead } from '../matryoshka/bundle.js';

export interface HeadTimeResult {
  kind: HeadKind;
  classes: number;
  dimension: number;
  requests: number;
  avg_dimension: number;
  cascade_us_per_request: number;
  full_us_per_request: number;
  /** cascade ÷ full head time. */
  time_ratio: number;
  /** average ÷ full dimension. */
  dimension_ratio: number;
}

function rng(seed: number) {
  return () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
}

/**
 * A synthetic large-label bundle (L classes, d dims, nesting 8…d): class prototypes whose first
 * coordinates carry most of the signal, as an MRL model's do, so that easy inputs exit early.
 * Heads are the prototypes (MRL: one truncated copy per size; MRL-E: the shared matrix).
 */
export function headTimeBenchmark(kind: HeadKind, classes = 1000, d = 2048, requests = 400, threshold = 0.9, signal = 1): HeadTimeResult {
  const nesting: number[] = [];
  for (let m = 8; m <= d; m *= 2) nesting.push(m);
  const r = rng(42);
  const proto = Float32Array.from({ length: classes * d }, (_, i) => r() * 6 / Math.sqrt(1 + (i % d) / 8));
  const heads: LinearHead[] =
    kind === 'mrl-e'
      ? [{ size: d, weight: proto, bias: new Float32Array(classes) }]
      : nesting.map((m) => {
          const w = new Float32Array(classes * m);
          for (let c = 0; c < classes; c++) w.set(proto.subarray(c * d, c * d + m), c * m);
          return { size: m, weight: w, bias: new Float32Array(classes) };
        });
  const cascade = new Cascade(kind, nesting, heads);
  // Inputs: a class prototype scaled by a per-input strength, plus noise: strong ones are
  // confident at 8 dimensions, weak ones need many more.
  const inputs = Array.from({ length: requests }, (_, i) => {
    const c = i % classes;
    const strength = signal * 2 ** (-6 * Math.abs(r()) * 2);
    return Float32Array.from({ length: d }, (_, j) => proto[c * d + j]! * strength + r() * 0.5);
  });
  const thresholds = new Array<number>(nesting.length - 1).fill(threshold);
  const time = (run: (z: Float32Array) => number): { us: number; dims: number } => {
    let dims = 0;
    for (const z of inputs.slice(0, 20)) run(z); // warm-up
    const t0 = performance.now();
    for (const z of inputs) dims += run(z);
    return { us: ((performance.now() - t0) * 1000) / inputs.length, dims: dims / inputs.length };
  };
  const cas = time((z) => cascade.classify(z, { thresholds }).dimensionUsed);
  const full = time((z) => cascade.classify(z, { thresholds, policy: 'full' }).dimensionUsed);
  return {
    kind,
    classes,
    dimension: d,
    requests,
    avg_dimension: cas.dims,
    cascade_us_per_request: cas.us,
    full_us_per_request: full.us,
    time_ratio: cas.us / full.us,
    dimension_ratio: cas.dims / d,
  };
}
