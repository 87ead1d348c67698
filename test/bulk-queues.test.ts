import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classify, classifyBatch, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { delta, scrape } from '../harness/prom.js';

/** A small cascade queue drained slowly: one input per encoder call, each encoder batch 20 ms. */
const QUEUE = 16;
let mesh: TestMesh;
let tensor: { shape: number[]; raw: Buffer };

beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
  mesh = await startMesh({
    MRL_ENCODER_QUEUE: String(QUEUE),
    MRL_ENCODER_BATCH: '1',
    MRL_ENCODER_CALLS_IN_FLIGHT: '1',
  }, { slowBatchMs: 20 });
});
afterAll(() => mesh.stop());

describe('bulk and interactive traffic queue apart in the cascade', () => {
  it('a ClassifyBatch that overflows its queue leaves room for unary Classify calls', async () => {
    const batch = classifyBatch(mesh.classifier, { requests: Array.from({ length: 100 }, () => ({ tensor })) }, 20_000);
    // The batch's queue is full for about QUEUE x 20 ms from now.
    await new Promise((r) => setTimeout(r, 40));
    const unary = await Promise.all(Array.from({ length: 8 }, () => classify(mesh.classifier, { tensor }, 20_000).then(() => 'OK', (e: { details: string }) => e.details)));
    const { results } = await batch;
    expect(unary).toEqual(new Array(8).fill('OK'));
    const refused = results.filter((r) => r.code === status.RESOURCE_EXHAUSTED);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.message === `cascade bulk encoder queue is full (${QUEUE} waiting); retry later`)).toBe(true);
    expect(results.filter((r) => r.code === status.OK).length + refused.length).toBe(100);
  });
});

describe('packed images go to the encoder in runs, through the bulk queue', () => {
  it('a packed ClassifyBatch far larger than the encoder queue is answered whole, and unary Classify calls beside it still are', async () => {
    // The encoder queues at most 48 images (and takes at most 48 in one call); the cascade sends
    // runs of 16, two at a time.
    const small = await startMesh({ MRL_MAX_QUEUE: '48', MRL_ENCODER_BATCH: '16', MRL_ENCODER_CALLS_IN_FLIGHT: '2' }, { slowBatchMs: 20 });
    try {
      const n = 200;
      const images = { shape: [n, 28, 28], raw: Buffer.concat(new Array<Buffer>(n).fill(tensor.raw)) };
      // Image 20 is the fifth of the second run: its error still names it by its place in the tensor.
      images.raw.writeFloatLE(NaN, (20 * 784 + 5) * 4);
      const before = await scrape(small.cascade.metricsPort);
      const batch = classifyBatch(small.classifier, { images }, 20_000);
      await new Promise((r) => setTimeout(r, 40));
      const unary = await Promise.all(Array.from({ length: 8 }, () => classify(small.classifier, { tensor }, 20_000).then(() => 'OK', (e: { details: string }) => e.details)));
      const { results } = await batch;
      const after = await scrape(small.cascade.metricsPort);
      expect(unary).toEqual(new Array(8).fill('OK'));
      expect(results[20]).toMatchObject({ code: status.INVALID_ARGUMENT, message: 'image 20 value 5 is NaN; values must be finite' });
      expect(results.filter((r, i) => i !== 20).map((r) => r.code)).toEqual(new Array(n - 1).fill(status.OK));
      // Every image went in a call of at most 16: the 200 in 13 runs, the 8 unary calls beside them.
      expect(delta(before, after, 'mrl_cascade_encoder_batch_size_sum')).toBe(n + 8);
      expect(delta(before, after, 'mrl_cascade_encoder_batch_size_bucket{le="16"}')).toBe(delta(before, after, 'mrl_cascade_encoder_batch_size_count'));
      expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBeGreaterThanOrEqual(13 + 1);
    } finally {
      await small.stop();
    }
  });
});
