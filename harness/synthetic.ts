import type { HeadKind, LinearHead } from '../matryoshka/bundle.js';

/** Numbers in [0, 1) from a 32-bit linear congruential generator: the same sequence for a seed on every run. */
export function seeded(seed: number): () => number {
  return () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * A synthetic large-label bundle's heads, nesting 8…d: `classes` prototypes (drawn from `r`, in
 * [−0.5, 0.5)) whose first coordinates carry most of the signal, as an MRL model's do. MRL: one
 * truncated copy per size; MRL-E: the shared matrix. Biases come from `bias`, head by head.
 */
export function syntheticHeads(kind: HeadKind, classes: number, d: number, r: () => number, bias: () => number) {
  const nesting: number[] = [];
  for (let m = 8; m <= d; m *= 2) nesting.push(m);
  const proto = Float32Array.from({ length: classes * d }, (_, i) => (r() * 6) / Math.sqrt(1 + (i % d) / 8));
  const heads: LinearHead[] =
    kind === 'mrl-e'
      ? [{ size: d, weight: proto, bias: Float32Array.from({ length: classes }, bias) }]
      : nesting.map((m) => {
          const w = new Float32Array(classes * m);
          for (let c = 0; c < classes; c++) w.set(proto.subarray(c * d, c * d + m), c * m);
          return { size: m, weight: w, bias: Float32Array.from({ length: classes }, bias) };
        });
  return { nesting, proto, heads };
}
