import * as grpc from '@grpc/grpc-js';
import type { ClassifierClient } from '../services/common/generated/mrl/v1/Classifier.js';
import type { ClassifyBatchRequest } from '../services/common/generated/mrl/v1/ClassifyBatchRequest.js';
import type { ClassifyBatchResponse__Output } from '../services/common/generated/mrl/v1/ClassifyBatchResponse.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import type { ClassifyResponse__Output } from '../services/common/generated/mrl/v1/ClassifyResponse.js';
import type { EncoderClient } from '../services/common/generated/mrl/v1/Encoder.js';
import type { EncodeRequest } from '../services/common/generated/mrl/v1/EncodeRequest.js';
import type { EncodeResponse__Output } from '../services/common/generated/mrl/v1/EncodeResponse.js';
import { type Bundle, pixelsToInput } from '../matryoshka/bundle.js';
import { loadMrlProtos } from '../services/common/protos.js';
import { type TestSlice, slicePixels } from './testSlice.js';

/** Typed clients for the CLI, benchmarks and tests. */
export function classifierClient(target: string, credentials = grpc.credentials.createInsecure(), options?: grpc.ChannelOptions): ClassifierClient {
  return new (loadMrlProtos().proto.mrl.v1.Classifier)(target, credentials, options);
}

export function encoderClient(target: string, credentials = grpc.credentials.createInsecure(), options?: grpc.ChannelOptions): EncoderClient {
  return new (loadMrlProtos().proto.mrl.v1.Encoder)(target, credentials, options);
}

/** One Classify call as a promise; rejects with the grpc ServiceError. */
export function classify(client: ClassifierClient, request: ClassifyRequest, timeoutMs = 10_000): Promise<ClassifyResponse__Output> {
  return new Promise((resolve, reject) =>
    client.Classify(request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

/** One ClassifyBatch call as a promise; rejects with the grpc ServiceError. */
export function classifyBatch(client: ClassifierClient, request: ClassifyBatchRequest, timeoutMs = 10_000): Promise<ClassifyBatchResponse__Output> {
  return new Promise((resolve, reject) =>
    client.ClassifyBatch(request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

/** One Encode call as a promise; rejects with the grpc ServiceError. */
export function encode(client: EncoderClient, request: EncodeRequest, timeoutMs = 10_000): Promise<EncodeResponse__Output> {
  return new Promise((resolve, reject) =>
    client.Encode(request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

/** float32 values as the little-endian bytes a Tensor's `raw` field takes. */
export function float32Bytes(values: Float32Array): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeFloatLE(v, i * 4));
  return out;
}

/** Image `index` of the bundle's test slice as a request tensor: [H, W], raw float32 bytes. */
export function sliceTensor(slice: TestSlice, index: number, bundle: Pick<Bundle, 'input'>): { shape: number[]; raw: Buffer } {
  return { shape: [bundle.input.height, bundle.input.width], raw: float32Bytes(pixelsToInput(slicePixels(slice, index), bundle.input)) };
}
