import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifierClient, classify, classifyBatch, sliceTensor } from '../cli/clients.js';
import { loadTestSlice, slicePng, type TestSlice } from '../cli/testSlice.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { modelTensors } from '../matryoshka/modelTensors.js';
import { cascadeConfig } from '../services/cascade/config.js';
import { type RunningCascade, startCascade } from '../services/cascade/server.js';
import type { Env } from '../services/common/config.js';
import type { ClassifierClient } from '../services/common/generated/mrl/v1/Classifier.js';
import { silentLogger } from '../services/common/logger.js';
import { loadInferenceProtos } from '../services/common/protos.js';
import { encoderConfig } from '../services/encoder/config.js';
import { type RunningEncoder, startEncoder } from '../services/encoder/server.js';
import { healthCheck } from '../harness/health.js';
import { outcome, waitFor } from '../harness/load.js';

const LOOPBACK = { MRL_ENCODER_HOST: '127.0.0.1', MRL_CASCADE_HOST: '127.0.0.1', MRL_ENCODER_PORT: '0', MRL_ENCODER_METRICS_PORT: '0', MRL_CASCADE_PORT: '0', MRL_CASCADE_METRICS_PORT: '0' };

const encoderOf = (env: Env = {}) => startEncoder(encoderConfig({ ...LOOPBACK, ...env }), silentLogger);

/** A cascade in this process and a client to it. */
async function cascadeTo(target: string, env: Env = {}): Promise<{ cascade: RunningCascade; client: ClassifierClient; stop(): Promise<void> }> {
  const cascade = await startCascade(cascadeConfig({ ...LOOPBACK, MRL_ENCODER_TARGET: target, ...env }), silentLogger);
  const client = classifierClient(`127.0.0.1:${cascade.port}`);
  return {
    cascade,
    client,
    stop: async () => {
      client.close();
      await cascade.shutdown();
    },
  };
}

const CASES = 40;
let bundle: Bundle;
let slice: TestSlice;
let encoder: RunningEncoder;
let pngs: Buffer[];

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  encoder = await encoderOf();
  pngs = await Promise.all(Array.from({ length: CASES }, (_, i) => slicePng(slice, i)));
});
afterAll(() => encoder.shutdown());

describe('a cascade speaking the Open Inference Protocol to our encoder (MRL_ENCODER_PROTOCOL=kserve-v2)', () => {
  let mrl: Awaited<ReturnType<typeof cascadeTo>>;
  let v2: Awaited<ReturnType<typeof cascadeTo>>;
  beforeAll(async () => {
    mrl = await cascadeTo(`127.0.0.1:${encoder.port}`);
    v2 = await cascadeTo(`127.0.0.1:${encoder.port}`, { MRL_ENCODER_PROTOCOL: 'kserve-v2' });
  });
  afterAll(async () => {
    await mrl.stop();
    await v2.stop();
  });

  it('serves once the server’s ModelMetadata fits the bundle', async () => {
    await waitFor('the V2 cascade to serve', async () => (await healthCheck(v2.cascade.port)) === 'SERVING', 10_000);
  });

  it('answers test images sent as PNG and as tensors exactly as over mrl.v1', async () => {
    for (let i = 0; i < CASES; i++) {
      for (const request of [{ image: pngs[i]! }, { tensor: sliceTensor(slice, i, bundle) }]) {
        const [a, b] = await Promise.all([classify(mrl.client, request), classify(v2.client, request)]);
        expect({ label: b.label, dimension: b.dimension_used }).toEqual({ label: a.label, dimension: a.dimension_used });
        expect(b.confidence).toBeCloseTo(a.confidence, 5);
      }
    }
  });

  it('answers the whole test slice, packed in one ClassifyBatch, as over mrl.v1, in runs through the bulk queue, an image with NaN failing alone', async () => {
    const n = slice.count; // the whole test slice
    const size = bundle.input.height * bundle.input.width;
    const raw = Buffer.alloc(n * size * 4);
    for (let i = 0; i < n; i++) raw.set(sliceTensor(slice, i, bundle).raw, i * size * 4);
    raw.writeFloatLE(NaN, (300 * size + 17) * 4);
    const batch = async (client: ClassifierClient) =>
      (await classifyBatch(client, { images: { shape: [n, bundle.input.height, bundle.input.width], raw } }, 20_000)).results.map((r) => `${r.code} ${r.response?.label ?? r.message}`);
    const [a, b] = await Promise.all([batch(mrl.client), batch(v2.client)]);
    expect(b).toEqual(a);
    expect(b[300]).toBe(`${status.INVALID_ARGUMENT} image 300 value 17 is NaN; values must be finite`);
    expect(new Set(b.filter((_, i) => i !== 300).map((r) => r.split(' ')[0]))).toEqual(new Set(['0']));
  });

  it('refuses a bad image with the encoder’s words, decoded in the cascade, and keeps serving', async () => {
    const o = await outcome((d) => classify(v2.client, { image: Buffer.from('not an image') }, d.getTime() - Date.now()), 5_000);
    expect(o.code).toBe(status.INVALID_ARGUMENT);
    expect(o.details).toBe('image is not a decodable PNG or JPEG');
    expect((await classify(v2.client, { image: pngs[0]! })).label).toBe((await classify(mrl.client, { image: pngs[0]! })).label);
  });
});

describe('a V2 cascade whose server does not fit its heads refuses to serve and says why', () => {
  /** Waits for NOT_SERVING, then checks that Classify says why and that embeddings still classify. */
  const expectRefused = async (target: string, why: RegExp, env: Env = {}) => {
    const c = await cascadeTo(target, { MRL_ENCODER_PROTOCOL: 'kserve-v2', ...env });
    try {
      expect(await healthCheck(c.cascade.port)).toBe('NOT_SERVING');
      const o = await outcome((d) => classify(c.client, { tensor: sliceTensor(slice, 0, bundle) }, d.getTime() - Date.now()), 5_000);
      expect(o.code).toBe(status.UNAVAILABLE);
      expect(o.details).toMatch(why);
      expect((await classify(c.client, { embedding: { values: new Array<number>(bundle.nesting[0]!).fill(0) } })).dimension_used).toBe(bundle.nesting[0]);
    } finally {
      await c.stop();
    }
  };

  it('a server of another model', async () => {
    const other = await encoderOf({ MRL_MODEL_DIR: fileURLToPath(new URL('../models/fashion-mnist-mrl-e', import.meta.url)) });
    try {
      await expectRefused(`127.0.0.1:${other.port}`, /^encoder unavailable: the encoder fashion-mnist-mrl at 127\.0\.0\.1:\d+ did not answer ModelMetadata or ModelReady: unknown model "fashion-mnist-mrl"/);
    } finally {
      await other.shutdown();
    }
  });

  it('a server whose model has another embedding size', async () => {
    // A V2 server we do not own, as Triton serving a model exported at another size would answer.
    const { input, output } = modelTensors(bundle);
    const server = new grpc.Server();
    server.addService(loadInferenceProtos().proto.inference.GRPCInferenceService.service, {
      ModelMetadata: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, {
          name: bundle.name,
          versions: ['1'],
          platform: 'onnxruntime_onnx',
          inputs: [{ name: input.name, datatype: 'FP32', shape: [-1, ...input.dims] }],
          outputs: [{ name: output.name, datatype: 'FP32', shape: [-1, 256] }],
        }),
      ModelReady: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { ready: true }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    try {
      await expectRefused(`127.0.0.1:${port}`, new RegExp(`does not fit this cascade's bundle ${bundle.id.replace('.', '\\.')}: its output "${output.name}" has shape \\[-1, 256\\], and the bundle's is \\[-1, ${bundle.embeddingDim}\\]$`));
    } finally {
      server.forceShutdown();
    }
  });
});
