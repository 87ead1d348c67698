/** A request's image or tensor as the encoder model's input: what the encoder and a cascade speaking KServe V2 both make. */
import type { InputSpec } from './bundle.js';
import { decodeImage } from './image/decode.js';
import { type ImagePipeline, preprocessImage } from './image/preprocess.js';
import { invalidArgument } from '../services/common/statusError.js';
import { acceptedShapes, fmtShape, imageSize, nonFiniteError, shapeIsOneOf, tensorValues } from '../services/common/tensorChecks.js';
import type { Tensor__Output } from '../services/common/generated/mrl/v1/Tensor.js';

/**
 * Decodes PNG or JPEG bytes and runs the bundle's preprocessing pipeline on them.
 * @param maxPixels images with more pixels than this are refused before they are decoded.
 */
export async function imageToInput(bytes: Buffer, pipeline: ImagePipeline, maxPixels: number): Promise<Float32Array> {
  return preprocessImage(await decodeImage(bytes, maxPixels), pipeline);
}

/** Validates a preprocessed tensor (shape, value count, finite values) and returns its values. */
export function tensorToInput(tensor: Tensor__Output, spec: InputSpec): Float32Array {
  const shapes = acceptedShapes(spec);
  if (!shapeIsOneOf(tensor.shape, shapes))
    throw invalidArgument(`tensor shape ${fmtShape(tensor.shape)} is not one of ${shapes.map(fmtShape).join(', ')}`);
  const values = tensorValues(tensor, imageSize(spec), 'tensor');
  const bad = nonFiniteError(values, 'tensor');
  if (bad) throw bad;
  return values;
}
