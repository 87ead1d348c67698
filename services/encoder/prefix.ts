import { normalizePrefix } from '../../matryoshka/normalize.js';

/**
 * The first `dimension` values, optionally scaled to unit L2 norm as the bundles' `l2`
 * normalisation does (a zero vector stays zero). Unscaled, a view: callers copy it into their answer.
 */
export function prefix(embedding: Float32Array, dimension: number, normalize: boolean): Float32Array {
  return normalize ? normalizePrefix(embedding, dimension, 'l2') : embedding.subarray(0, dimension);
}
