import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encoderClient, float32Bytes } from '../cli/clients.js';
import { loadTestSlice, type TestSlice } from '../cli/testSlice.js';
import { type Bundle, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import type { Env } from '../services/common/config.js';
import type { GRPCInferenceServiceClient } from '../services/common/generated/inference/GRPCInferenceService.js';
import type { ModelInferRequest } from '../services/common/generated/inference/ModelInferRequest.js';
import type { ModelInferResponse__Output } from '../services/common/generated/inference/ModelInferResponse.js';
import type { ModelMetadataResponse__Output } from '../services/common/generated/inference/ModelMetadataResponse.js';
import type { EncodeBatchResponse__Output } from '../services/common/generated/mrl/v1/EncodeBatchResponse.js';
import { loadInferenceProtos } from '../services/common/protos.js';
import { silentLogger } from '../services/common/logger.js';
import { encoderConfig } from '../services/encoder/config.js';
import { type RunningEncoder, startEncoder } from '../services/encoder/server.js';
import { ROOT } from './helpers/deploy.js';
import { healthCheck } from '../harness/health.js';
import { slowBatches } from '../harness/slowEncoder.js';
import { listedServices, reflect } from './helpers/reflection.js';

/** The real encoder on loopback, and a V2 client and an mrl.v1 client to it. */
async function start(env: Env = {}, slowBatchMs = 0) {
  const config = encoderConfig({ MRL_ENCODER_HOST: '127.0.0.1', MRL_ENCODER_PORT: '0', MRL_ENCODER_METRICS_PORT: '0', ...env });
  const encoder = await startEncoder(config, silentLogger, slowBatches(slowBatchMs));
  const target = `127.0.0.1:${encoder.port}`;
  const v2 = new (loadInferenceProtos().proto.inference.GRPCInferenceService)(target, grpc.credentials.createInsecure());
  return { encoder, v2, mrl: encoderClient(target) };
}

const promised = <Res>(start: (callback: grpc.requestCallback<Res>) => void): Promise<Res> =>
  new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res!))));
const deadline = () => ({ deadline: Date.now() + 20_000 });

let bundle: Bundle;
let slice: TestSlice;
let encoder: RunningEncoder;
let v2: GRPCInferenceServiceClient;
let mrl: ReturnType<typeof encoderClient>;

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  ({ encoder, v2, mrl } = await start());
});
afterAll(async () => {
  v2.close();
  mrl.close();
  await encoder.shutdown();
});

const infer = (req: ModelInferRequest, client = v2) => promised<ModelInferResponse__Output>((cb) => client.ModelInfer(req, deadline(), cb));
const size = () => bundle.input.height * bundle.input.width;
/** Test-slice images `from` to `from + n`, preprocessed as the bundle says. */
const images = (n: number, from = 0) => pixelsToInput(slice.images.subarray(from * size(), (from + n) * size()), bundle.input);
const shapeOf = (n: number) => [n, 1, bundle.input.height, bundle.input.width];
/** A well-formed request for `n` test images, raw or typed. */
const request = (n: number, data: 'raw' | 'typed' = 'raw', from = 0): ModelInferRequest => {
  const values = images(n, from);
  const input = { name: 'input', datatype: 'FP32', shape: shapeOf(n) };
  return data === 'raw'
    ? { model_name: bundle.name, inputs: [input], raw_input_contents: [float32Bytes(values)] }
    : { model_name: bundle.name, inputs: [{ ...input, contents: { fp32_contents: Array.from(values) } }] };
};
/** Little-endian float32 bytes as values (copied: a Buffer may start at any offset). */
const floats = (bytes: Buffer) => new Float32Array(new Uint8Array(bytes).buffer);
/** What mrl.v1 EncodeBatch answers for the same images, packed. */
const encodeBatch = (n: number, from = 0) =>
  promised<EncodeBatchResponse__Output>((cb) => mrl.EncodeBatch({ images: { shape: shapeOf(n), raw: float32Bytes(images(n, from)) } }, deadline(), cb));
const expectClose = (actual: Float32Array, expected: Float32Array) => {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst).toBeLessThanOrEqual(1e-5);
};
const refused = (code: status, details: string) => expect.objectContaining({ code, details });

describe('beside mrl.v1.Encoder on the same port', () => {
  it('reflection and health list inference.GRPCInferenceService', async () => {
    expect(await listedServices(encoder.port)).toEqual(['inference.GRPCInferenceService', 'mrl.v1.Encoder']);
    // What grpcurl asks for before it calls.
    const file = await reflect(encoder.port, { file_containing_symbol: 'inference.GRPCInferenceService' });
    expect(file.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
    expect(await healthCheck(encoder.port, 'inference.GRPCInferenceService')).toBe('SERVING');
  });

  it('ServerLive, ServerReady and ModelReady (any version, or the bundle\'s) say so', async () => {
    expect(await promised((cb) => v2.ServerLive({}, deadline(), cb))).toEqual({ live: true });
    expect(await promised((cb) => v2.ServerReady({}, deadline(), cb))).toEqual({ ready: true });
    for (const version of ['', bundle.version])
      expect(await promised((cb) => v2.ModelReady({ name: bundle.name, version }, deadline(), cb))).toEqual({ ready: true });
  });

  it('ServerMetadata names the server, with no extensions', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await promised((cb) => v2.ServerMetadata({}, deadline(), cb))).toEqual({ name: 'mrl-encoder', version, extensions: [] });
  });
});

describe('ModelMetadata', () => {
  it("is the bundle's model exactly: its name and version, the ONNX model's input and output, FP32, batch dimension -1", async () => {
    const session = await ort.InferenceSession.create(bundle.encoderPath);
    try {
      /** The ONNX model's own shape for a tensor, its symbolic (batch) dimension as -1. */
      const onnxShape = (meta: readonly ort.InferenceSession.ValueMetadata[], name: string) => {
        const m = meta.find((v) => v.name === name);
        if (!m?.isTensor) throw new Error(`the ONNX model has no tensor ${name}`);
        return m.shape.map((d) => (typeof d === 'number' ? String(d) : '-1'));
      };
      const [inputName] = session.inputNames;
      const [outputName] = session.outputNames;
      expect([session.inputNames, session.outputNames]).toEqual([[bundle.input.name], [bundle.outputName]]);
      const metadata = await promised<ModelMetadataResponse__Output>((cb) => v2.ModelMetadata({ name: bundle.name }, deadline(), cb));
      expect(metadata).toEqual({
        name: 'fashion-mnist-mrl',
        versions: [bundle.version],
        platform: 'onnxruntime_onnx',
        inputs: [{ name: inputName, datatype: 'FP32', shape: onnxShape(session.inputMetadata, inputName!) }],
        outputs: [{ name: outputName, datatype: 'FP32', shape: onnxShape(session.outputMetadata, outputName!) }],
      });
      expect(metadata.inputs[0]!.shape).toEqual(['-1', '1', '28', '28']);
      expect(metadata.outputs[0]!.shape).toEqual(['-1', String(bundle.embeddingDim)]);
      expect(await promised((cb) => v2.ModelMetadata({ name: bundle.name, version: bundle.version }, deadline(), cb))).toEqual(metadata);
    } finally {
      await session.release();
    }
  });
});

describe('ModelInfer', () => {
  it.each([1, 3, 64])('N = %i, raw and typed contents: [N, d] in raw_output_contents, equal to what EncodeBatch gives', async (n) => {
    const expected = floats((await encodeBatch(n, 5)).embeddings);
    for (const data of ['raw', 'typed'] as const) {
      const res = await infer({ ...request(n, data, 5), id: `req-${n}-${data}` });
      expect(res).toMatchObject({
        model_name: bundle.name,
        model_version: bundle.version,
        id: `req-${n}-${data}`,
        outputs: [{ name: 'embedding', datatype: 'FP32', shape: [String(n), String(bundle.embeddingDim)], contents: null }],
      });
      expect(res.raw_output_contents).toHaveLength(1);
      expect(res.raw_output_contents[0]!.length).toBe(n * bundle.embeddingDim * 4);
      expectClose(floats(res.raw_output_contents[0]!), expected);
    }
  });

  it('honours requested outputs: the model\'s one output by name, and the model version if given', async () => {
    const res = await infer({ ...request(2), model_version: bundle.version, outputs: [{ name: 'embedding' }] });
    expectClose(floats(res.raw_output_contents[0]!), floats((await encodeBatch(2)).embeddings));
  });

  it('refuses what the model does not take, with a status that says what, and keeps serving', async () => {
    const raw = request(3);
    const [input] = raw.inputs!;
    const cases: [string, ModelInferRequest, status, string][] = [
      ['unknown model', { ...raw, model_name: 'resnet50' }, status.NOT_FOUND, 'unknown model "resnet50"; this server serves "fashion-mnist-mrl"'],
      ['unknown version', { ...raw, model_version: '1' }, status.NOT_FOUND, `model "fashion-mnist-mrl" has no version "1"; it serves version "${bundle.version}"`],
      ['wrong datatype', { ...raw, inputs: [{ ...input, datatype: 'FP16' }] }, status.INVALID_ARGUMENT, 'input "input" has datatype "FP16"; the model takes FP32'],
      ['wrong shape', { ...raw, inputs: [{ ...input, shape: [3, 28, 28] }] }, status.INVALID_ARGUMENT, 'input "input" has shape [3, 28, 28]; the model takes [N, 1, 28, 28]'],
      ['wrong image size', { ...raw, inputs: [{ ...input, shape: [3, 1, 32, 32] }] }, status.INVALID_ARGUMENT, 'input "input" has shape [3, 1, 32, 32]; the model takes [N, 1, 28, 28]'],
      ['no images', { ...raw, inputs: [{ ...input, shape: [0, 1, 28, 28] }] }, status.INVALID_ARGUMENT, 'input "input" holds 0 images; send 1 to 1024'],
      ['more images than the encoder takes', { ...raw, inputs: [{ ...input, shape: [1025, 1, 28, 28] }] }, status.INVALID_ARGUMENT, 'input "input" holds 1025 images; send 1 to 1024'],
      ['unknown input', { ...raw, inputs: [{ ...input, name: 'pixels' }] }, status.INVALID_ARGUMENT, 'unknown input "pixels"; the model\'s one input is "input"'],
      ['two inputs', { ...raw, inputs: [input!, input!] }, status.INVALID_ARGUMENT, 'ModelInfer takes exactly one input, "input"; the request has 2'],
      ['wrong byte count', { ...raw, raw_input_contents: [Buffer.alloc(100)] }, status.INVALID_ARGUMENT, 'raw_input_contents[0] has 100 bytes; input "input" of shape [3, 1, 28, 28] needs 9408 (FP32, little-endian)'],
      ['two raw entries', { ...raw, raw_input_contents: [float32Bytes(images(3)), Buffer.alloc(4)] }, status.INVALID_ARGUMENT, 'raw_input_contents has 2 entries; the request has one input'],
      ['raw and typed', { ...raw, inputs: [{ ...input, contents: { fp32_contents: [0] } }] }, status.INVALID_ARGUMENT, 'set raw_input_contents or input "input"\'s contents.fp32_contents, not both'],
      ['typed in the wrong field', { model_name: bundle.name, inputs: [{ ...input, contents: { int_contents: [1, 2, 3] } }] }, status.INVALID_ARGUMENT, 'input "input" is FP32: its values go in contents.fp32_contents, not contents.int_contents'],
      ['too few typed values', { model_name: bundle.name, inputs: [{ ...input, contents: { fp32_contents: [1, 2, 3] } }] }, status.INVALID_ARGUMENT, 'input "input" has 3 values in contents.fp32_contents; shape [3, 1, 28, 28] needs 2352'],
      ['no values', { model_name: bundle.name, inputs: [input!] }, status.INVALID_ARGUMENT, 'input "input" has no values: set raw_input_contents or its contents.fp32_contents'],
      ['unknown output', { ...raw, outputs: [{ name: 'logits' }] }, status.INVALID_ARGUMENT, 'unknown output "logits"; the model\'s one output is "embedding"'],
    ];
    const nan = images(3);
    nan[800] = Number.NaN;
    cases.push(['NaN', { ...raw, raw_input_contents: [float32Bytes(nan)] }, status.INVALID_ARGUMENT, 'input "input" value 800 is NaN; values must be finite']);
    const huge = images(3).fill(1e38);
    cases.push([
      'values the model overflows on',
      { ...raw, raw_input_contents: [float32Bytes(huge)] },
      status.INVALID_ARGUMENT,
      'input gave a non-finite embedding: its values are far outside the 0 to 1 the model takes (pixel byte × scale + offset)',
    ]);
    for (const [what, req, code, details] of cases) await expect(infer(req), what).rejects.toEqual(refused(code, details));
    for (const call of [
      promised((cb) => v2.ModelMetadata({ name: 'resnet50' }, deadline(), cb)),
      promised((cb) => v2.ModelReady({ name: bundle.name, version: '9' }, deadline(), cb)),
    ])
      await expect(call).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(await healthCheck(encoder.port, 'inference.GRPCInferenceService')).toBe('SERVING');
    expectClose(floats((await infer(raw)).raw_output_contents[0]!), floats((await encodeBatch(3)).embeddings));
  });
});

describe("ModelInfer goes through the encoder's queue", () => {
  const MAX_QUEUE = 4;
  let small: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    // One image per 300 ms model run: a queue of four fills from two calls.
    small = await start({ MRL_MAX_BATCH: '1', MRL_MAX_QUEUE: String(MAX_QUEUE) }, 300);
  });
  afterAll(async () => {
    small.v2.close();
    small.mrl.close();
    await small.encoder.shutdown();
  });

  it('a call the queue cannot hold gets RESOURCE_EXHAUSTED and leaves it; admitted calls run in its batches, counted in its metrics', async () => {
    const { metrics } = small.encoder;
    const count = async (code: string) => (await metrics.requests.get()).values.find((v) => v.labels.code === code)?.value ?? 0;
    const batchesBefore = (await metrics.batchSize.get()).values.find((v) => v.metricName === 'mrl_encoder_batch_size_count')?.value ?? 0;
    // The first image runs at once; three wait, and the next call finds room for one of its four.
    const admitted = infer(request(4), small.v2);
    await expect(infer(request(4, 'raw', 4), small.v2)).rejects.toEqual(refused(status.RESOURCE_EXHAUSTED, `encoder queue is full (${MAX_QUEUE} waiting); retry later`));
    // The refused call's one queued image left with it: only the admitted call's three wait.
    expect((await metrics.queueDepth.get()).values[0]!.value).toBe(3);
    expectClose(floats((await admitted).raw_output_contents[0]!), floats((await encodeBatch(4)).embeddings));
    expect(await count('RESOURCE_EXHAUSTED')).toBe(4);
    expect(await count('OK')).toBe(4);
    const batchesAfter = (await metrics.batchSize.get()).values.find((v) => v.metricName === 'mrl_encoder_batch_size_count')!.value;
    expect(batchesAfter - batchesBefore).toBe(4);
  }, 30_000);
});
