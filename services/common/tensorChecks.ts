import type { InputSpec } from './bundle.js';
import type { Tensor, Tensor__Output } from './generated/mrl/v1/Tensor.js';
import { firstNonFinite } from './finite.js';
import { type StatusError, invalidArgument } from './statusError.js';

export const fmtShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Checks that `tensor` sets exactly one of values or raw, holding `count` float32 values; `what` names it in errors. */
export function checkValueCount(tensor: Tensor__Output, count: number, what: string): void {
  const hasValues = tensor.values.length > 0;
  const hasRaw = tensor.raw.length > 0;
  if (hasValues === hasRaw) throw invalidArgument(`${what} must set exactly one of values or raw`);
  if (hasRaw && tensor.raw.length !== count * 4)
    throw invalidArgument(`${what} raw has ${tensor.raw.length} bytes; shape ${fmtShape(tensor.shape)} needs ${count * 4} (float32)`);
  if (hasValues && tensor.values.length !== count)
    throw invalidArgument(`${what} has ${tensor.values.length} values; shape ${fmtShape(tensor.shape)} needs ${count}`);
}

/**
 * Checks images packed in one tensor: shape [N, H, W] or [N, 1, H, W] with 1 ≤ N ≤ `maxImages`,
 * and N × H × W values. The encoder and the cascade (which splits such a tensor into calls)
 * refuse the same tensors with the same words. Returns N.
 */
export function checkPacked(tensor: Tensor__Output, spec: InputSpec, maxImages: number): number {
  const [n = 0, ...rest] = tensor.shape;
  const image = [[spec.height, spec.width], [1, spec.height, spec.width]];
  if (!image.some((s) => s.length === rest.length && s.every((d, i) => d === rest[i])))
    throw invalidArgument(`images shape ${fmtShape(tensor.shape)} is not [N, ${spec.height}, ${spec.width}] or [N, 1, ${spec.height}, ${spec.width}]`);
  if (n < 1 || n > maxImages) throw invalidArgument(`images holds ${n} images; send 1 to ${maxImages}`);
  checkValueCount(tensor, n * spec.height * spec.width, 'images');
  return n;
}

/** Images `from` to `to` (exclusive) of a tensor `checkPacked` accepted, as a packed tensor of their own (raw bytes are a view). */
export function packedRange(tensor: Tensor__Output, spec: InputSpec, from: number, to: number): Tensor {
  const size = spec.height * spec.width;
  const shape = [to - from, ...tensor.shape.slice(1)];
  return tensor.raw.length > 0
    ? { shape, raw: tensor.raw.subarray(from * size * 4, to * size * 4) }
    : { shape, values: tensor.values.slice(from * size, to * size) };
}

/** The tensor's values as float32 (from `raw` or `values`), checked to be `count` of them; `what` names it in errors. */
export function tensorValues(tensor: Tensor__Output, count: number, what: string): Float32Array {
  checkValueCount(tensor, count, what);
  if (tensor.raw.length > 0) {
    // One copy into an aligned buffer (the bytes may start at any offset); float32 bytes are
    // little-endian on every platform onnxruntime-node ships for.
    const values = new Float32Array(count);
    new Uint8Array(values.buffer).set(tensor.raw);
    return values;
  }
  return Float32Array.from(tensor.values);
}

/** INVALID_ARGUMENT naming the first non-finite value, if any; `what` names the values. */
export function nonFiniteError(values: Float32Array, what: string): StatusError | undefined {
  const bad = firstNonFinite(values);
  return bad >= 0 ? invalidArgument(`${what} value ${bad} is ${values[bad]}; values must be finite`) : undefined;
}

/**
 * The `n` images of a tensor `checkPacked` accepted: per image its values (views of one aligned
 * copy) or, for an image holding a non-finite value, its own INVALID_ARGUMENT (`image i`
 * counting from the tensor's first image).
 */
export function packedImages(tensor: Tensor__Output, spec: InputSpec, n: number): (Float32Array | StatusError)[] {
  const size = spec.height * spec.width;
  const values = tensorValues(tensor, n * size, 'images');
  return Array.from({ length: n }, (_, i) => {
    const one = values.subarray(i * size, (i + 1) * size);
    return nonFiniteError(one, `image ${i}`) ?? one;
  });
}
