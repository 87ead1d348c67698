import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { StatusError } from '../services/common/statusError.js';
import { Batcher } from '../services/encoder/batcher.js';

describe('Batcher', () => {
  it('coalesces concurrent submits into batches of at most maxBatch, in order', async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>({ maxBatch: 4, maxDelayMs: 5, maxQueue: 100 }, async (xs) => {
      sizes.push(xs.length);
      return xs.map((x) => x * 10);
    });
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i)));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => i * 10));
    expect(sizes.reduce((a, c) => a + c, 0)).toBe(10);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
    expect(sizes[0]).toBe(4);
  });

  it('answers RESOURCE_EXHAUSTED at once when the queue is full, and serves the admitted ones', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>({ maxBatch: 1, maxDelayMs: 0, maxQueue: 2 }, async (xs) => {
      await gate;
      return xs;
    });
    const first = b.submit(1); // running
    await new Promise((r) => setTimeout(r, 5));
    const queued = [b.submit(2), b.submit(3)];
    const err = await b.submit(4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(status.RESOURCE_EXHAUSTED);
    expect((err as StatusError).message).toMatch(/queue is full \(2 waiting\)/);
    release();
    expect(await Promise.all([first, ...queued])).toEqual([1, 2, 3]);
  });

  it('a failing run rejects every item of its batch and the next batch still runs', async () => {
    let calls = 0;
    const b = new Batcher<number, number>({ maxBatch: 2, maxDelayMs: 1, maxQueue: 10 }, async (xs) => {
      if (calls++ === 0) throw new Error('boom');
      return xs;
    });
    const [a, c] = await Promise.allSettled([b.submit(1), b.submit(2)]);
    expect(a.status).toBe('rejected');
    expect(c.status).toBe('rejected');
    expect(await b.submit(3)).toBe(3);
  });
});
