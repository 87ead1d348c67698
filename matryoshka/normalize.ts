/**
 * How a bundle normalises the prefix each head sees (model.json `normalization`, default `none`):
 * - `none`: z[:m] as it is;
 * - `l2`: z[:m] scaled to unit L2 norm after truncation;
 * - `layer_norm_l2`: a layer norm over the whole embedding before truncation, then `l2`, as
 *   nomic-embed-text-v1.5 prescribes (`F.layer_norm` over d, `[:, :m]`, `F.normalize`).
 */
export type Normalization = 'none' | 'l2' | 'layer_norm_l2';

export const NORMALIZATIONS: readonly Normalization[] = ['none', 'l2', 'layer_norm_l2'];

/** PyTorch's defaults: `F.layer_norm`'s ε, and the norm `F.normalize` divides by at least. */
const LAYER_NORM_EPS = 1e-5;
const L2_MIN_NORM = 1e-12;

/** Whether `kind` reads the whole embedding (a layer norm before truncation), so that a prefix alone cannot be normalised. */
export function normalizesWhole(kind: Normalization): boolean {
  return kind === 'layer_norm_l2';
}

/** (x − mean) / sqrt(variance + ε) over all of `x`: `F.layer_norm` without weight or bias. */
function layerNorm(x: Float32Array): Float32Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  const scale = 1 / Math.sqrt(variance / x.length + LAYER_NORM_EPS);
  return x.map((v) => (v - mean) * scale);
}

/** `x` scaled in place to unit L2 norm, as `F.normalize` does (a zero vector stays zero). */
function l2InPlace(x: Float32Array): Float32Array {
  let sq = 0;
  for (const v of x) sq += v * v;
  const norm = Math.max(Math.sqrt(sq), L2_MIN_NORM);
  for (let i = 0; i < x.length; i++) x[i]! /= norm;
  return x;
}

/**
 * The prefixes of one embedding `z` as the heads see them: the function returned gives z[:m]
 * normalised by `kind`, for any m up to z.length, doing the whole-embedding part once. For
 * `layer_norm_l2`, `z` must be the whole embedding (d values); otherwise at least m. `none` gives
 * views of `z`, the others fresh arrays.
 */
export function prefixNormalizer(z: Float32Array, kind: Normalization): (m: number) => Float32Array {
  if (kind === 'none') return (m) => z.subarray(0, m);
  const whole = kind === 'layer_norm_l2' ? layerNorm(z) : z;
  return (m) => l2InPlace(whole.slice(0, m));
}

/** z[:m] normalised by `kind` (see prefixNormalizer): what head m is fitted on and applied to. */
export function normalizePrefix(z: Float32Array, m: number, kind: Normalization): Float32Array {
  return prefixNormalizer(z, kind)(m);
}
