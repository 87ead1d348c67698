import { sliceTensor } from '../cli/clients.js';
import { loadTestSlice, slicePng } from '../cli/testSlice.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { loadMrlProtos } from '../services/common/protos.js';
import { ECHO_SERVICE } from './echoServer.js';

/** The calls the benchmarks make. */
export const CALLS = ['echo', 'classify', 'classify-full', 'classify-embedding', 'classify-png', 'classify-batch', 'classify-packed', 'encode'] as const;
export type Call = (typeof CALLS)[number];

/** An 8-float embedding, a nesting size, as in the README's grpcurl example. */
const EMBEDDING = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];

export interface UnaryRequest {
  /** `/package.Service/Method`. */
  path: string;
  /** The serialized request message. */
  message: Buffer;
}

type Serialize = (request: object) => Buffer;

/**
 * The one request a load generator repeats for `call`: image 0 of the bundle's test slice, as a
 * float32 tensor (echo, Classify, Encode) or as a PNG; for ClassifyBatch, images 0 to `batch` − 1,
 * listed as requests or packed in one tensor. The echo's request is tensor Classify's.
 */
export async function unaryRequest(call: Call, batch = 64): Promise<UnaryRequest> {
  const bundle = await loadBundle();
  const slice = await loadTestSlice(bundle);
  const { Classifier, Encoder } = loadMrlProtos().proto.mrl.v1;
  const method = (service: { service: Record<string, { path: string; requestSerialize: unknown }> }, name: string, request: object): UnaryRequest => {
    const m = service.service[name]!;
    return { path: m.path, message: (m.requestSerialize as Serialize)(request) };
  };
  const tensor = (i: number) => sliceTensor(slice, i, bundle);
  const images = Array.from({ length: batch }, (_, i) => i);
  switch (call) {
    case 'echo':
      return { path: ECHO_SERVICE.Echo!.path, message: method(Classifier, 'Classify', { tensor: tensor(0) }).message };
    case 'classify':
      return method(Classifier, 'Classify', { tensor: tensor(0) });
    case 'classify-full':
      return method(Classifier, 'Classify', { tensor: tensor(0), policy: 'POLICY_FULL' });
    case 'classify-embedding':
      return method(Classifier, 'Classify', { embedding: { values: EMBEDDING } });
    case 'classify-png': {
      return method(Classifier, 'Classify', { image: await slicePng(slice, 0) });
    }
    case 'classify-batch':
      return method(Classifier, 'ClassifyBatch', { requests: images.map((i) => ({ tensor: tensor(i) })) });
    case 'classify-packed':
      return method(Classifier, 'ClassifyBatch', {
        images: { shape: [batch, slice.height, slice.width], raw: Buffer.concat(images.map((i) => tensor(i).raw)) },
      });
    case 'encode':
      return method(Encoder, 'Encode', { tensor: tensor(0) });
  }
}
