import sharp from 'sharp';
import { type InputSpec, pixelsToInput } from '../../matryoshka/bundle.js';
import { type StatusError, invalidArgument } from '../common/statusError.js';
import { fmtShape, nonFiniteError, shapeIsOneOf, tensorValues } from '../common/tensorChecks.js';
import type { Tensor__Output } from '../common/generated/mrl/v1/Tensor.js';

const IMAGE_FORMATS = new Set(['png', 'jpeg']);

/**
 * Decodes PNG or JPEG bytes into the encoder's input: grayscale (alpha flattened onto black, the
 * dataset's background), resized to the bundle's size, each byte × scale + offset.
 * @param maxPixels images with more pixels than this are refused before they are decoded.
 */
export async function imageToInput(bytes: Buffer, spec: InputSpec, maxPixels: number): Promise<Float32Array> {
  if (bytes.length === 0) throw invalidArgument('image is empty');
  let format: string | undefined;
  let width = 0;
  let height = 0;
  try {
    // Header only, no pixels decoded: lift sharp's own pixel limit so that an oversized image
    // is refused below with its size, not as undecodable.
    ({ format, width = 0, height = 0 } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch {
    throw invalidArgument('image is not a decodable PNG or JPEG');
  }
  if (!format || !IMAGE_FORMATS.has(format)) throw invalidArgument(`image format ${format ?? 'unknown'} is not supported; send PNG or JPEG`);
  if (width * height > maxPixels)
    throw invalidArgument(`image is ${width}x${height}, more than the ${maxPixels} pixels this encoder decodes`);
  let pixels: Buffer;
  try {
    pixels = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .flatten({ background: '#000000' })
      .toColourspace('b-w')
      .resize(spec.width, spec.height, { fit: 'fill' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw invalidArgument(`image could not be decoded: ${(err as Error).message.split('\n')[0]}`);
  }
  if (pixels.length !== spec.width * spec.height) throw invalidArgument('image did not decode to one grayscale channel');
  return pixelsToInput(pixels, spec);
}

/** The shapes a tensor for one image may take: [H, W], [1, H, W] or [1, 1, H, W]. */
export function acceptedShapes(spec: InputSpec): number[][] {
  return [[spec.height, spec.width], [1, spec.height, spec.width], [1, 1, spec.height, spec.width]];
}

/** Validates a preprocessed tensor (shape, value count, finite values) and returns its values. */
export function tensorToInput(tensor: Tensor__Output, spec: InputSpec): Float32Array {
  const shapes = acceptedShapes(spec);
  if (!shapeIsOneOf(tensor.shape, shapes))
    throw invalidArgument(`tensor shape ${fmtShape(tensor.shape)} is not one of ${shapes.map(fmtShape).join(', ')}`);
  const values = tensorValues(tensor, spec.height * spec.width, 'tensor');
  const bad = nonFiniteError(values, 'tensor');
  if (bad) throw bad;
  return values;
}

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
