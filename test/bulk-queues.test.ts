import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../services/common/bundle.js';
import { classify, sliceTensor } from '../services/common/clients.js';
import type { ClassifyBatchResponse__Output } from '../services/common/generated/mrl/v1/ClassifyBatchResponse.js';
import { loadTestSlice } from '../services/common/testSlice.js';
import { startMesh, type TestMesh } from './helpers/mesh.js';

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
    MRL_FAULT_DELAY_MS: '20',
  });
});
afterAll(() => mesh.stop());

describe('bulk and interactive traffic queue apart in the cascade', () => {
  it('a ClassifyBatch that overflows its queue leaves room for unary Classify calls', async () => {
    const batch = new Promise<ClassifyBatchResponse__Output>((resolve, reject) =>
      mesh.classifier.ClassifyBatch({ requests: Array.from({ length: 100 }, () => ({ tensor })) }, { deadline: Date.now() + 20_000 }, (err, res) =>
        err ? reject(err) : resolve(res!),
      ),
    );
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
