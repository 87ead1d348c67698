import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { firstNonFinite } from '../services/common/finite.js';

describe('firstNonFinite', () => {
  it('finds the first NaN or infinity, as findIndex with Number.isFinite does', () => {
    const value = fc.oneof(fc.float(), fc.constantFrom(NaN, Infinity, -Infinity, 0, -0));
    fc.assert(
      fc.property(fc.array(value, { maxLength: 40 }), (values) => {
        const floats = Float32Array.from(values);
        expect(firstNonFinite(floats)).toBe(floats.findIndex((v) => !Number.isFinite(v)));
        expect(firstNonFinite(values)).toBe(values.findIndex((v) => !Number.isFinite(v)));
      }),
    );
  });

  it('names the index of a bad value among finite ones', () => {
    const values = new Float32Array(784).fill(0.5);
    expect(firstNonFinite(values)).toBe(-1);
    values[700] = -Infinity;
    values[783] = NaN;
    expect(firstNonFinite(values)).toBe(700);
  });
});
