/**
 * Zeroed scratch arrays for the intermediate images of one preprocessImage call, carved from one
 * buffer kept for the next call: allocating a typed array costs about a microsecond (its memory
 * lives outside V8's heap), as much as a whole step on a 28x28 image; a view of a buffer that
 * exists costs a few tens of nanoseconds. A request that does not fit gets an array of its own.
 */
const BUFFER = new ArrayBuffer(1 << 18);
let used = 0;

/** Makes the whole buffer free again: no array taken before may be in use any longer. */
export function resetScratch(): void {
  used = 0;
}

function take(bytes: number): number {
  const at = used;
  if (at + bytes > BUFFER.byteLength) return -1;
  // 8-byte aligned, for any element type.
  used = at + ((bytes + 7) & ~7);
  return at;
}

/** `n` zeroed bytes, valid until the next resetScratch. */
export function scratchBytes(n: number): Uint8Array {
  const at = take(n);
  return at < 0 ? new Uint8Array(n) : new Uint8Array(BUFFER, at, n).fill(0);
}

/** `n` zeroed 32-bit integers, valid until the next resetScratch. */
export function scratchInt32(n: number): Int32Array {
  const at = take(4 * n);
  return at < 0 ? new Int32Array(n) : new Int32Array(BUFFER, at, n).fill(0);
}
