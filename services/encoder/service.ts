import type * as grpc from '@grpc/grpc-js';
import type { Bundle } from '../common/bundle.js';
import { callSignal } from '../common/callEnd.js';
import type { EncodeRequest__Output } from '../common/generated/mrl/v1/EncodeRequest.js';
import type { EncodeResponse } from '../common/generated/mrl/v1/EncodeResponse.js';
import type { EncoderHandlers } from '../common/generated/mrl/v1/Encoder.js';
import type { Logger } from '../common/logger.js';
import { invalidArgument } from '../common/statusError.js';
import { baseErrorMapper, codeName, unary } from '../common/unary.js';
import type { Batcher } from './batcher.js';
import type { EncoderMetrics } from './metrics.js';
import { imageToInput, prefix, tensorToInput } from './preprocess.js';

export interface EncoderServiceDeps {
  bundle: Bundle;
  batcher: Batcher<Float32Array, Float32Array>;
  metrics: EncoderMetrics;
  logger: Logger;
  /** Images with more pixels are refused undecoded. */
  maxImagePixels: number;
}

/** Validates the request's input and turns it into the encoder's float input. */
export async function requestInput(req: EncodeRequest__Output, deps: EncoderServiceDeps): Promise<Float32Array> {
  switch (req.input) {
    case 'image':
      return imageToInput(req.image!, deps.bundle.input, deps.maxImagePixels);
    case 'tensor':
      return tensorToInput(req.tensor!, deps.bundle.input);
    default:
      throw invalidArgument('request has no input: set image or tensor');
  }
}

/** The mrl.v1.Encoder implementation. */
export function createEncoderService(deps: EncoderServiceDeps): EncoderHandlers {
  const { bundle, metrics } = deps;
  const encode = async (req: EncodeRequest__Output, call: grpc.ServerUnaryCall<EncodeRequest__Output, EncodeResponse>): Promise<EncodeResponse> => {
    const dimension = req.dimension || bundle.embeddingDim;
    if (!bundle.nesting.includes(dimension))
      throw invalidArgument(`dimension ${dimension} is not 0 or one of the nesting sizes ${bundle.nesting.join(', ')}`);
    const embedding = await deps.batcher.submit(await requestInput(req, deps), callSignal(call));
    return {
      embedding: Array.from(prefix(embedding, dimension, req.normalize)),
      full_dimension: bundle.embeddingDim,
      model: bundle.id,
    };
  };
  return {
    Encode: unary(encode, baseErrorMapper(deps.logger), (code: grpc.status, seconds: number) => {
      metrics.requests.inc({ code: codeName(code) });
      metrics.requestSeconds.observe(seconds);
    }),
  };
}
