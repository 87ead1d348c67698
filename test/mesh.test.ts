import { status, type ServiceError } from '@grpc/grpc-js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { classify, classifyBatch as classifyBatchCall, encode, sliceTensor } from '../cli/clients.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import type { ClassifyBatchRequest } from '../services/common/generated/mrl/v1/ClassifyBatchRequest.js';
import type { ClassifyBatchResponse__Output } from '../services/common/generated/mrl/v1/ClassifyBatchResponse.js';
import type { EncodeBatchResponse__Output } from '../services/common/generated/mrl/v1/EncodeBatchResponse.js';
import { loadTestSlice, slicePixels, type TestSlice } from '../cli/testSlice.js';
import { healthCheck } from '../harness/health.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { delta, scrape } from '../harness/prom.js';
import { listedServices, reflect } from './helpers/reflection.js';

let mesh: TestMesh;
let bundle: Bundle;
let slice: TestSlice;
/** A slice image that every stage of the model labels correctly: the answer cannot depend on where the cascade exits. */
let easy: number;

const png = (pixels: Uint8Array) => sharp(Buffer.from(pixels), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
const tensorOf = (i: number) => sliceTensor(slice, i, bundle);
const grpcError = (p: Promise<unknown>) => p.then(() => expect.fail('expected an error'), (e: ServiceError) => e);

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  mesh = await startMesh();
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  for (easy = 0; easy < slice.count; easy++) {
    const { embedding } = await encode(mesh.encoderClient, { tensor: tensorOf(easy) });
    if (cascade.allStages(Float32Array.from(embedding)).every((s) => s.classIndex === slice.labels[easy])) break;
  }
});
afterAll(() => mesh.stop());

describe('server reflection', () => {
  it('lists on each port only the service it serves, and describes it', async () => {
    expect(await listedServices(mesh.cascade.port)).toEqual(['mrl.v1.Classifier']);
    expect(await listedServices(mesh.encoder.port)).toEqual(['inference.GRPCInferenceService', 'mrl.v1.Encoder']);
    const file = await reflect(mesh.encoder.port, { file_containing_symbol: 'mrl.v1.Encoder' });
    expect(file.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
  });
});

describe('Classify end to end (real encoder and cascade on loopback)', () => {
  it('labels a PNG test image correctly, with dimension_used a nesting size that matches the trace', async () => {
    const res = await classify(mesh.classifier, { image: await png(slicePixels(slice, easy)), top_k: 3 });
    expect(res.label).toBe(bundle.labels[slice.labels[easy]!]);
    expect(res.class_index).toBe(slice.labels[easy]);
    expect(bundle.nesting).toContain(res.dimension_used);
    const answered = res.trace[res.trace.length - 1]!;
    expect(answered.dimension).toBe(res.dimension_used);
    expect(answered.escalated).toBe(false);
    expect(res.trace.slice(0, -1).every((s) => s.escalated && s.top_probability < s.threshold)).toBe(true);
    expect(res.confidence).toBeCloseTo(answered.top_probability, 6);
    expect(res.top).toHaveLength(3);
    expect(res.top[0]!.label).toBe(res.label);
    expect(res.model).toBe(bundle.id);
  });

  it('the full policy answers at the full size and labels most of the slice right', async () => {
    let right = 0;
    const n = 50;
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => classify(mesh.classifier, { tensor: tensorOf(i), policy: 'POLICY_FULL' })));
    answers.forEach((a, i) => (right += a.class_index === slice.labels[i] ? 1 : 0));
    expect(answers.every((a) => a.dimension_used === bundle.embeddingDim)).toBe(true);
    expect(right / n).toBeGreaterThan(0.8);
  });

  it('the metrics move by exactly the calls made', async () => {
    const before = await scrape(mesh.cascade.metricsPort);
    const encBefore = await scrape(mesh.encoder.metricsPort);
    const answers = await Promise.all([0, 1, 2, 3].map((i) => classify(mesh.classifier, { tensor: tensorOf(i) })));
    const bad = await grpcError(classify(mesh.classifier, { tensor: { shape: [3, 28, 28], values: [1] } }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    const after = await scrape(mesh.cascade.metricsPort);
    const encAfter = await scrape(mesh.encoder.metricsPort);
    expect(delta(before, after, 'mrl_cascade_requests_total{code="OK"}')).toBe(4);
    expect(delta(before, after, 'mrl_cascade_requests_total{code="INVALID_ARGUMENT"}')).toBe(1);
    expect(delta(before, after, 'mrl_cascade_dimension_used_count')).toBe(4);
    expect(delta(before, after, 'mrl_cascade_dimension_used_sum')).toBe(answers.reduce((s, a) => s + a.dimension_used, 0));
    for (const m of bundle.nesting)
      expect(delta(before, after, `mrl_cascade_exits_total{dimension="${m}"}`)).toBe(answers.filter((a) => a.dimension_used === m).length);
    expect(delta(encBefore, encAfter, 'mrl_encoder_requests_total{code="OK"}')).toBe(4);
    expect(delta(encBefore, encAfter, 'mrl_encoder_requests_total{code="INVALID_ARGUMENT"}')).toBe(1);
  });

  it('concurrent Classify calls share EncodeBatch calls, and each gets its own answer', async () => {
    const n = 32;
    const alone: number[] = [];
    for (let i = 0; i < n; i++) alone.push((await classify(mesh.classifier, { tensor: tensorOf(i) })).class_index);
    const before = await scrape(mesh.cascade.metricsPort);
    const together = await Promise.all(Array.from({ length: n }, (_, i) => classify(mesh.classifier, { tensor: tensorOf(i) })));
    const after = await scrape(mesh.cascade.metricsPort);
    expect(together.map((a) => a.class_index)).toEqual(alone);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_sum')).toBe(n);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBeLessThan(n);
  });

  it('a precomputed embedding skips the encoder and gets the same answer', async () => {
    const full = await encode(mesh.encoderClient, { tensor: tensorOf(5) });
    expect(full.embedding).toHaveLength(bundle.embeddingDim);
    const viaImage = await classify(mesh.classifier, { tensor: tensorOf(5) });
    const before = await scrape(mesh.encoder.metricsPort);
    const viaEmbedding = await classify(mesh.classifier, { embedding: { values: full.embedding } });
    const after = await scrape(mesh.encoder.metricsPort);
    expect(delta(before, after, 'mrl_encoder_requests_total{code="OK"}')).toBe(0);
    expect(viaEmbedding.class_index).toBe(viaImage.class_index);
    expect(viaEmbedding.dimension_used).toBe(viaImage.dimension_used);
    expect(viaEmbedding.confidence).toBeCloseTo(viaImage.confidence, 5);
  });

  it('caps the dimension and forces the full size on request', async () => {
    const capped = await classify(mesh.classifier, { tensor: tensorOf(6), max_dimension: 16, policy: 'POLICY_FULL' });
    expect(capped.dimension_used).toBe(16);
    expect(capped.trace).toHaveLength(1);
  });

  it('Encode returns a prefix, L2-normalised on request', async () => {
    const res = await encode(mesh.encoderClient, { tensor: tensorOf(7), dimension: 64, normalize: true });
    expect(res.embedding).toHaveLength(64);
    expect(Math.hypot(...res.embedding)).toBeCloseTo(1, 5);
    expect(res.full_dimension).toBe(bundle.embeddingDim);
  });

  it('answers bad input with INVALID_ARGUMENT and a message that names the problem, and keeps serving', async () => {
    const cases: [Parameters<typeof classify>[1], RegExp][] = [
      [{ tensor: { shape: [3, 28, 28], values: new Array(3 * 784).fill(0) } }, /tensor shape \[3, 28, 28\] is not one of/],
      [{ tensor: { shape: [28, 28], values: [1, 2, 3] } }, /tensor has 3 values; shape \[28, 28\] needs 784/],
      [{ image: Buffer.from('definitely not an image') }, /image is not a decodable PNG or JPEG/],
      [{ image: Buffer.alloc(0) }, /request has no input|image is empty/],
      [{}, /request has no input/],
      [{ embedding: { values: [1, 2, 3] } }, /embedding has 3 values; expected one of the nesting sizes/],
      [{ embedding: { values: new Array(8).fill(Number.NaN) } }, /embedding value 0 is NaN/],
      [{ tensor: tensorOf(0), max_dimension: 100 }, /max_dimension 100 is not 0 or one of the nesting sizes/],
      [{ tensor: tensorOf(0), top_k: 11 }, /top_k 11 is more than the 10 classes/],
    ];
    for (const [request, message] of cases) {
      const err = await grpcError(classify(mesh.classifier, request));
      expect(err.code, String(message)).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(message);
    }
    expect(await healthCheck(mesh.cascade.port, 'mrl.v1.Classifier')).toBe('SERVING');
    expect(await healthCheck(mesh.encoder.port, 'mrl.v1.Encoder')).toBe('SERVING');
    const ok = await classify(mesh.classifier, { image: await png(slicePixels(slice, easy)) });
    expect(ok.class_index).toBe(slice.labels[easy]);
  });
});

describe('the bulk path (ClassifyBatch and EncodeBatch)', () => {
  const classifyBatch = (requests: Parameters<typeof classify>[1][], extra: Omit<ClassifyBatchRequest, 'requests'> = {}) =>
    classifyBatchCall(mesh.classifier, { requests, ...extra }, 20_000);
  /** Slice images i…i+n-1 packed in one [n, 28, 28] tensor of raw float32 bytes. */
  const packed = (first: number, n: number) => ({
    shape: [n, 28, 28],
    raw: Buffer.concat(Array.from({ length: n }, (_, k) => tensorOf(first + k).raw)),
  });

  it('answers each request as Classify alone would, in order, with one encoder call for all', async () => {
    const full = await encode(mesh.encoderClient, { tensor: tensorOf(9) });
    const requests: Parameters<typeof classify>[1][] = [
      ...Array.from({ length: 12 }, (_, i) => ({ tensor: tensorOf(i) })),
      { tensor: { shape: [28, 28], values: [1, 2] } },
      { embedding: { values: full.embedding } },
      { tensor: tensorOf(3), max_dimension: 32, policy: 'POLICY_FULL' as const, top_k: 2 },
      { image: await png(slicePixels(slice, easy)) },
      { tensor: tensorOf(4), top_k: 99 },
    ];
    const alone = await Promise.all(requests.map((r) => classify(mesh.classifier, r).catch((e: ServiceError) => e)));
    const before = await scrape(mesh.cascade.metricsPort);
    const encBefore = await scrape(mesh.encoder.metricsPort);
    const batch = await classifyBatch(requests);
    const after = await scrape(mesh.cascade.metricsPort);
    const encAfter = await scrape(mesh.encoder.metricsPort);
    expect(batch.results).toHaveLength(requests.length);
    batch.results.forEach((r, i) => {
      const a = alone[i]!;
      if ('code' in a && !('label' in a)) {
        expect(r.code, `request ${i}`).toBe(a.code);
        expect(r.message).toBe(a.details);
      } else {
        const res = a as ClassifyBatchResponse__Output['results'][number]['response'] & object;
        expect(r.code, `request ${i}`).toBe(status.OK);
        expect(r.response!.class_index).toBe(res.class_index);
        expect(r.response!.dimension_used).toBe(res.dimension_used);
        expect(r.response!.confidence).toBeCloseTo(res.confidence, 5);
        expect(r.response!.top.map((p) => p.label)).toEqual(res.top.map((p) => p.label));
      }
    });
    const ok = batch.results.filter((r) => r.code === status.OK).length;
    expect(ok).toBe(requests.length - 2);
    expect(delta(before, after, 'mrl_cascade_requests_total{code="OK"}')).toBe(ok);
    expect(delta(before, after, 'mrl_cascade_requests_total{code="INVALID_ARGUMENT"}')).toBe(2);
    expect(delta(before, after, 'mrl_cascade_dimension_used_count')).toBe(ok);
    expect(delta(before, after, 'mrl_cascade_batch_requests_total{code="OK"}')).toBe(1);
    expect(delta(encBefore, encAfter, 'mrl_encoder_batch_requests_total{code="OK"}')).toBe(1);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(1);
    // The encoder counts each input it encoded; the embedding request never reached it.
    const encoded = batch.results.filter((r, i) => r.code === status.OK && !('embedding' in requests[i]!)).length;
    expect(delta(encBefore, encAfter, 'mrl_encoder_requests_total{code="OK"}')).toBe(encoded);
  });

  it('EncodeBatch returns packed float32 rows equal to Encode, and per-input errors', async () => {
    const inputs = [{ tensor: tensorOf(1) }, { image: Buffer.from('nope') }, { tensor: tensorOf(2) }];
    const res = await new Promise<EncodeBatchResponse__Output>((resolve, reject) =>
      mesh.encoderClient.EncodeBatch({ inputs, dimension: 64 }, { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    expect(res.dimension).toBe(64);
    expect(res.embeddings.length).toBe(3 * 64 * 4);
    expect(res.errors).toEqual([{ index: 1, code: status.INVALID_ARGUMENT, message: 'image is not a decodable PNG or JPEG' }]);
    for (const k of [0, 2]) {
      const one = await encode(mesh.encoderClient, { ...inputs[k]!, dimension: 64 });
      const row = Array.from({ length: 64 }, (_, j) => res.embeddings.readFloatLE((k * 64 + j) * 4));
      row.forEach((v, j) => expect(v).toBeCloseTo(one.embedding[j]!, 5));
    }
  });

  it('packed images: each answered as Classify alone would, in one encoder call, an image with NaN failing alone', async () => {
    const n = 12;
    const images = packed(20, n);
    new Float32Array(images.raw.buffer, images.raw.byteOffset, n * 784)[3 * 784 + 100] = NaN;
    const alone = await Promise.all(Array.from({ length: n }, (_, k) => classify(mesh.classifier, { tensor: tensorOf(20 + k), top_k: 2 })));
    const before = await scrape(mesh.cascade.metricsPort);
    // The call's inputs all wait on its one signal: that is by design, not a listener leak.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const batch = await classifyBatch([], { images, top_k: 2 });
    process.off('warning', onWarning);
    expect(warnings).toEqual([]);
    const after = await scrape(mesh.cascade.metricsPort);
    expect(batch.results).toHaveLength(n);
    expect(batch.results[3]).toMatchObject({ code: status.INVALID_ARGUMENT, message: 'image 3 value 100 is NaN; values must be finite' });
    batch.results.forEach((r, k) => {
      if (k === 3) return;
      expect(r.code, `image ${k}`).toBe(status.OK);
      expect(r.response!.class_index).toBe(alone[k]!.class_index);
      expect(r.response!.dimension_used).toBe(alone[k]!.dimension_used);
      expect(r.response!.confidence).toBeCloseTo(alone[k]!.confidence, 5);
      expect(r.response!.top.map((p) => p.label)).toEqual(alone[k]!.top.map((p) => p.label));
    });
    expect(delta(before, after, 'mrl_cascade_requests_total{code="OK"}')).toBe(n - 1);
    expect(delta(before, after, 'mrl_cascade_requests_total{code="INVALID_ARGUMENT"}')).toBe(1);
    // One call of its own (12 is under MRL_ENCODER_BATCH), carrying the 12 images.
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(1);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_sum')).toBe(n);
    expect(delta(before, after, 'mrl_cascade_dimension_used_count')).toBe(n - 1);
  });

  it('packed images: refuses a wrong shape, a wrong byte count, and requests beside images, precisely', async () => {
    const cases: [Omit<ClassifyBatchRequest, 'requests'>, Parameters<typeof classify>[1][], string][] = [
      [{ images: { shape: [2, 28, 27], raw: Buffer.alloc(2 * 28 * 27 * 4) } }, [], 'images shape [2, 28, 27] is not [N, 28, 28] or [N, 1, 28, 28]'],
      [{ images: { shape: [0, 28, 28], raw: Buffer.alloc(4) } }, [], 'images holds 0 images; send 1 to 1024'],
      [{ images: { shape: [2, 28, 28], raw: Buffer.alloc(784 * 4) } }, [], 'images raw has 3136 bytes; shape [2, 28, 28] needs 6272 (float32)'],
      [{ images: packed(0, 1), max_dimension: 7 }, [], `max_dimension 7 is not 0 or one of the nesting sizes ${bundle.nesting.join(', ')}`],
      [{ images: packed(0, 1) }, [{ tensor: tensorOf(0) }], 'set requests or images, not both'],
    ];
    for (const [extra, requests, message] of cases) {
      const err = await grpcError(classifyBatch(requests, extra));
      expect(err.code, message).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toBe(message);
    }
    // [N, 1, 28, 28] is accepted too.
    const ok = await classifyBatch([], { images: { ...packed(5, 2), shape: [2, 1, 28, 28] } });
    const alone = await Promise.all([5, 6].map((i) => classify(mesh.classifier, { tensor: tensorOf(i) })));
    expect(ok.results.map((r) => r.response!.class_index)).toEqual(alone.map((a) => a.class_index));
  });

  it('EncodeBatch takes packed images: rows equal to Encode', async () => {
    const res = await new Promise<EncodeBatchResponse__Output>((resolve, reject) =>
      mesh.encoderClient.EncodeBatch({ images: packed(30, 3), dimension: 32 }, { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    expect(res.errors).toEqual([]);
    expect(res.embeddings.length).toBe(3 * 32 * 4);
    for (const k of [0, 1, 2]) {
      const one = await encode(mesh.encoderClient, { tensor: tensorOf(30 + k), dimension: 32 });
      const row = Array.from({ length: 32 }, (_, j) => res.embeddings.readFloatLE((k * 32 + j) * 4));
      row.forEach((v, j) => expect(v).toBeCloseTo(one.embedding[j]!, 5));
    }
  });

  it('refuses an empty batch', async () => {
    const err = await grpcError(classifyBatch([]));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe('requests is empty');
  });
});
