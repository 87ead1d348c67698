/** The first `dimension` values, optionally scaled to unit L2 norm (a zero vector stays zero). */
export function prefix(embedding: Float32Array, dimension: number, normalize: boolean): Float32Array {
  const out = embedding.slice(0, dimension);
  if (normalize) {
    let sq = 0;
    for (const v of out) sq += v * v;
    const norm = Math.sqrt(sq);
    if (norm > 0) for (let i = 0; i < out.length; i++) out[i]! /= norm;
  }
  return out;
}
