import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { embeddingError } from '../services/encoder/embeddingCheck.js';

describe('embeddingError: which non-finite embeddings are the caller\'s fault', () => {
  it('passes a finite embedding, blames an input outside the range, and the model for one inside it', async () => {
    const { input: spec } = await loadBundle();
    const inside = new Float32Array(784).fill(0.5);
    const outside = inside.slice();
    outside[300] = 1e38;
    const nan = new Float32Array(8).fill(Number.NaN);
    expect(embeddingError(outside, new Float32Array(8).fill(1), spec)).toBeUndefined();
    expect(embeddingError(outside, nan, spec)).toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: 'input gave a non-finite embedding: its values are far outside the 0 to 1 the model takes (pixel byte × scale + offset)',
    });
    const inf = nan.slice().fill(1);
    inf[3] = -Infinity;
    expect(embeddingError(inside, inf, spec)).toMatchObject({
      code: status.UNAVAILABLE,
      message: "the encoder's model gave a non-finite embedding for an input within the range it takes",
    });
    // A NaN input is outside every range (the services refuse those earlier, by index).
    expect(embeddingError(new Float32Array(784).fill(Number.NaN), nan, spec)?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('names the range low end first when the scale is negative', () => {
    const spec = { name: 'x', height: 28, width: 28, channels: 1, dims: [1, 28, 28], scale: -1 / 255, offset: 1 };
    expect(embeddingError(new Float32Array(4).fill(7), new Float32Array(2).fill(Number.NaN), spec)?.message).toMatch(/outside the 0 to 1 the model takes/);
    expect(embeddingError(new Float32Array(4).fill(0.25), new Float32Array(2).fill(Number.NaN), spec)?.code).toBe(status.UNAVAILABLE);
  });
});
