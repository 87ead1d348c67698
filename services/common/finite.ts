/**
 * Index of the first value that is NaN or ±Infinity, or -1. A plain loop: every pixel of every
 * image passes here, and `findIndex` with a callback cost ten times as much per image.
 */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is 0 for every finite v and NaN for NaN and both infinities.
    if (v - v !== 0) return i;
  }
  return -1;
}
