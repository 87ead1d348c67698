import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifyBatch, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { delta, scrape } from '../harness/prom.js';

let mesh: TestMesh;
let tensors: { shape: number[]; raw: Buffer }[];

beforeAll(async () => {
  const bundle = await loadBundle();
  const slice = await loadTestSlice(bundle);
  tensors = [0, 1, 2].map((i) => sliceTensor(slice, i, bundle));
  mesh = await startMesh();
  await mesh.encoder.shutdown(); // the cascade stays up with nothing behind it
});
afterAll(async () => {
  mesh.classifier.close();
  mesh.encoderClient.close();
  await mesh.cascade.shutdown();
});

describe('ClassifyBatch with the encoder down', () => {
  it('both forms answer the call and fail each item with UNAVAILABLE, counted per item', async () => {
    const before = await scrape(mesh.cascade.metricsPort);
    const listed = await classifyBatch(mesh.classifier, { requests: tensors.map((tensor) => ({ tensor })) });
    const packed = await classifyBatch(mesh.classifier, { images: { shape: [3, 28, 28], raw: Buffer.concat(tensors.map((t) => t.raw)) } });
    const after = await scrape(mesh.cascade.metricsPort);
    for (const res of [listed, packed]) {
      expect(res.results).toHaveLength(3);
      for (const r of res.results) {
        expect(r.code).toBe(status.UNAVAILABLE);
        expect(r.message).toMatch(/^encoder unavailable: /);
      }
    }
    expect(delta(before, after, 'mrl_cascade_requests_total{code="UNAVAILABLE"}')).toBe(6);
    expect(delta(before, after, 'mrl_cascade_inputs_total{input="tensor"}')).toBe(6);
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="failure"}')).toBeGreaterThanOrEqual(2);
  });
});
