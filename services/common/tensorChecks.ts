import type { InputSpec } from './bundle.js';
import type { Tensor, Tensor__Output } from './generated/mrl/v1/Tensor.js';
import { invalidArgument } from './statusError.js';

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
