import type { Bundle } from '../../matryoshka/bundle.js';
import type { EncodeBatchRequest__Output } from '../common/generated/mrl/v1/EncodeBatchRequest.js';
import type { EncodeBatchResponse } from '../common/generated/mrl/v1/EncodeBatchResponse.js';
import type { EncodeInput__Output } from '../common/generated/mrl/v1/EncodeInput.js';
import type { EncodeRequest__Output } from '../common/generated/mrl/v1/EncodeRequest.js';
import type { EncodeResponse } from '../common/generated/mrl/v1/EncodeResponse.js';
import type { EncoderHandlers } from '../common/generated/mrl/v1/Encoder.js';
import type { Logger } from '../common/logger.js';
import { invalidArgument } from '../common/statusError.js';
import { baseErrorMapper, codeName, unary } from '../common/unary.js';
import type { Batcher } from '../common/batcher.js';
import type { EncoderMetrics } from './metrics.js';
import { imageToInput, tensorToInput } from '../../matryoshka/modelInput.js';
import { normalizePrefix } from '../../matryoshka/normalize.js';
import { packedImages } from '../common/tensorChecks.js';
import { embeddingError } from './embeddingCheck.js';

export interface EncoderServiceDeps {
  bundle: Bundle;
  batcher: Batcher<Float32Array, Float32Array>;
  metrics: EncoderMetrics;
  logger: Logger;
  /** Images with more pixels are refused undecoded. */
  maxImagePixels: number;
  /** Most inputs one EncodeBatch call may carry. */
  maxBatchInputs: number;
}

/** Validates an input (of a request or of a batch) and turns it into the encoder's float input. */
export async function requestInput(req: EncodeRequest__Output | EncodeInput__Output, deps: EncoderServiceDeps): Promise<Float32Array> {
  switch (req.input) {
    case 'image':
      return imageToInput(req.image!, deps.bundle.preprocess, deps.maxImagePixels);
    case 'tensor':
      return tensorToInput(req.tensor!, deps.bundle.input);
    default:
      throw invalidArgument('request has no input: set image or tensor');
  }
}

/**
 * One input's full embedding, through the shared batch queue (and its limits); refused if not
 * finite (see embeddingError). Every protocol the encoder serves encodes through here.
 */
export async function embedInput(deps: Pick<EncoderServiceDeps, 'bundle' | 'batcher'>, input: Float32Array, signal: AbortSignal): Promise<Float32Array> {
  const embedding = await deps.batcher.submit(input, signal);
  const error = embeddingError(input, embedding, deps.bundle.input);
  if (error) throw error;
  return embedding;
}

/** The mrl.v1.Encoder implementation. */
export function createEncoderService(deps: EncoderServiceDeps): EncoderHandlers {
  const { bundle, metrics } = deps;
  const dimensionOf = (requested: number) => {
    const dimension = requested || bundle.embeddingDim;
    if (!bundle.nesting.includes(dimension))
      throw invalidArgument(`dimension ${dimension} is not 0 or one of the nesting sizes ${bundle.nesting.join(', ')}`);
    return dimension;
  };
  const mapError = baseErrorMapper(deps.logger);

  /**
   * Every input (or packed image) joins the shared batch queue on its own; one bad input fails
   * only itself.
   */
  const encodeBatch = async (
    req: EncodeBatchRequest__Output,
    signal: AbortSignal,
  ): Promise<EncodeBatchResponse> => {
    const dimension = dimensionOf(req.dimension);
    if (req.images && req.inputs.length > 0) throw invalidArgument('set inputs or images, not both');
    let settled: PromiseSettledResult<Float32Array>[];
    if (req.images) {
      const { count, values, refused } = packedImages(req.images, bundle.input, deps.maxBatchInputs);
      const size = values.length / count;
      settled = await Promise.allSettled(refused.map(async (err, i) => (err ? Promise.reject(err) : embedInput(deps, values.subarray(i * size, (i + 1) * size), signal))));
    } else {
      if (req.inputs.length === 0) throw invalidArgument('inputs is empty');
      if (req.inputs.length > deps.maxBatchInputs)
        throw invalidArgument(`${req.inputs.length} inputs is more than the ${deps.maxBatchInputs} one EncodeBatch call may carry`);
      settled = await Promise.allSettled(req.inputs.map(async (input) => embedInput(deps, await requestInput(input, deps), signal)));
    }
    const n = settled.length;
    const rows = new Float32Array(n * dimension);
    const errors: EncodeBatchResponse['errors'] = [];
    settled.forEach((s, index) => {
      if (s.status === 'fulfilled') rows.set(normalizePrefix(s.value, dimension, req.normalize ? 'l2' : 'none'), index * dimension);
      else {
        const { code, details } = mapError(s.reason);
        errors.push({ index, code, message: details });
      }
    });
    return { embeddings: Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength), dimension, full_dimension: bundle.embeddingDim, model: bundle.id, errors };
  };

  const encode = async (req: EncodeRequest__Output, signal: AbortSignal): Promise<EncodeResponse> => {
    const dimension = dimensionOf(req.dimension);
    const embedding = await embedInput(deps, await requestInput(req, deps), signal);
    return {
      embedding: Array.from(normalizePrefix(embedding, dimension, req.normalize ? 'l2' : 'none')),
      full_dimension: bundle.embeddingDim,
      model: bundle.id,
    };
  };
  return {
    Encode: unary(encode, mapError, (code, seconds) => {
      metrics.requests.inc({ code: codeName(code) });
      metrics.requestSeconds.observe(seconds);
    }),
    // Every input counts in mrl_encoder_requests_total: with its own outcome when the client got
    // the response, else with the code the whole call ended with.
    EncodeBatch: unary(encodeBatch, mapError, (code, seconds, req, res) => {
      metrics.batchRequests.inc({ code: codeName(code) });
      metrics.requestSeconds.observe(seconds);
      const failed = res?.errors ?? [];
      // A packed tensor counts its images, or one input when its image count is out of bounds (or the call did not parse).
      const images = req?.images?.shape[0] ?? 0;
      const inputs = !req ? 1 : !req.images ? req.inputs.length : images >= 1 && images <= deps.maxBatchInputs ? images : 1;
      metrics.requests.inc({ code: codeName(code) }, inputs - failed.length);
      for (const e of failed) metrics.requests.inc({ code: codeName(e.code!) });
    }),
  };
}
