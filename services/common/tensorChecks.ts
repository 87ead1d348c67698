import type { InputSpec } from '../../matryoshka/bundle.js';
import type { Tensor__Output } from './generated/mrl/v1/Tensor.js';
import { firstNonFinite } from './finite.js';
import { type StatusError, invalidArgument } from './statusError.js';

export const fmtShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Whether `shape` is one of `shapes`. */
export const shapeIsOneOf = (shape: readonly number[], shapes: readonly (readonly number[])[]) =>
  shapes.some((s) => s.length === shape.length && s.every((d, i) => d === shape[i]));

/** Values in one image as the model takes it. */
export const imageSize = (spec: Pick<InputSpec, 'dims'>): number => spec.dims.reduce((a, b) => a * b, 1);

/**
 * The shapes a tensor for one image may take: the model's dims, with or without a batch axis of
 * 1; a one-channel NCHW model also takes [H, W].
 */
export function acceptedShapes(spec: Pick<InputSpec, 'dims' | 'height' | 'width'>): number[][] {
  const plain = spec.dims[0] === 1 && spec.dims.length === 3 ? [[spec.height, spec.width]] : [];
  return [...plain, spec.dims, [1, ...spec.dims]];
}

/** The tensor's values as float32 (from `raw` or `values`), checked to be `count` of them; `what` names it in errors. */
export function tensorValues(tensor: Tensor__Output, count: number, what: string): Float32Array {
  const hasValues = tensor.values.length > 0;
  const hasRaw = tensor.raw.length > 0;
  if (hasValues === hasRaw) throw invalidArgument(`${what} must set exactly one of values or raw`);
  if (hasValues) {
    if (tensor.values.length !== count) throw invalidArgument(`${what} has ${tensor.values.length} values; shape ${fmtShape(tensor.shape)} needs ${count}`);
    return Float32Array.from(tensor.values);
  }
  if (tensor.raw.length !== count * 4)
    throw invalidArgument(`${what} raw has ${tensor.raw.length} bytes; shape ${fmtShape(tensor.shape)} needs ${count * 4} (float32)`);
  // One copy into an aligned buffer (the bytes may start at any offset); float32 bytes are
  // little-endian on every platform onnxruntime-node ships for.
  const values = new Float32Array(count);
  new Uint8Array(values.buffer).set(tensor.raw);
  return values;
}

/** INVALID_ARGUMENT naming the first non-finite value, if any; `what` names the values. */
export function nonFiniteError(values: Float32Array, what: string): StatusError | undefined {
  const bad = firstNonFinite(values);
  return bad >= 0 ? invalidArgument(`${what} value ${bad} is ${values[bad]}; values must be finite`) : undefined;
}

/** A packed images tensor, checked: every image's values, and the refusal of each that holds a non-finite value. */
export interface PackedImages {
  count: number;
  /** count × the image size, one aligned copy; a refused image's values are zeros. */
  values: Float32Array;
  /** Per image, its INVALID_ARGUMENT (`image i`, counting from the tensor's first image), if refused. */
  refused: (StatusError | undefined)[];
}

/**
 * Validates images packed in one tensor (shape [N, H, W] or [N, 1, H, W], 1 ≤ N ≤ `maxImages`,
 * N × H × W values). The encoder and the cascade (which sends such a tensor on in calls of its
 * own) refuse the same tensors and images with the same words.
 */
export function packedImages(tensor: Tensor__Output, spec: InputSpec, maxImages: number): PackedImages {
  const [n = 0, ...rest] = tensor.shape;
  // One image's shapes, less the one with a batch axis of its own.
  const shapes = acceptedShapes(spec).filter((s) => s.length < spec.dims.length + 1);
  if (!shapeIsOneOf(rest, shapes)) throw invalidArgument(`images shape ${fmtShape(tensor.shape)} is not ${shapes.map((s) => fmtShape([-1, ...s]).replace('-1', 'N')).join(' or ')}`);
  if (n < 1 || n > maxImages) throw invalidArgument(`images holds ${n} images; send 1 to ${maxImages}`);
  const size = imageSize(spec);
  const values = tensorValues(tensor, n * size, 'images');
  const refused = Array.from({ length: n }, (_, i) => {
    const one = values.subarray(i * size, (i + 1) * size);
    const bad = nonFiniteError(one, `image ${i}`);
    // Zeros stand in for it, so that the values can go on whole: its answer is its refusal.
    if (bad) one.fill(0);
    return bad;
  });
  return { count: n, values, refused };
}
