import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { StatusError } from '../services/common/statusError.js';
import { Batcher } from '../services/common/batcher.js';

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

  it('with maxDelayMs 0, gathers what is submitted in the same turn into one batch', async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>({ maxBatch: 64, maxDelayMs: 0, maxQueue: 100 }, async (xs) => {
      sizes.push(xs.length);
      return xs;
    });
    await Promise.all(Array.from({ length: 5 }, (_, i) => b.submit(i)));
    expect(sizes).toEqual([5]);
  });

  it('runs up to maxInFlight batches at once and fills the next while they run', async () => {
    const gates: (() => void)[] = [];
    const runs: number[][] = [];
    let running = 0;
    let most = 0;
    const b = new Batcher<number, number>({ maxBatch: 8, maxDelayMs: 0, maxQueue: 100, maxInFlight: 2 }, async (xs) => {
      runs.push(xs);
      most = Math.max(most, ++running);
      await new Promise<void>((r) => gates.push(r));
      running--;
      return xs;
    });
    const first = [b.submit(0), b.submit(1)];
    await new Promise((r) => setImmediate(r));
    const second = b.submit(2);
    await new Promise((r) => setImmediate(r));
    const waiting = [3, 4, 5].map((i) => b.submit(i));
    await new Promise((r) => setTimeout(r, 5));
    expect(runs).toEqual([[0, 1], [2]]); // two in flight; 3, 4, 5 wait together
    gates.shift()!();
    await Promise.all(first);
    await new Promise((r) => setTimeout(r, 5));
    expect(runs.at(-1)).toEqual([3, 4, 5]);
    while (gates.length) gates.shift()!();
    expect(await Promise.all([second, ...waiting])).toEqual([2, 3, 4, 5]);
    expect(most).toBe(2);
  });

  it('stops a batch before its weight passes maxWeight, but always takes one item', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>({ maxBatch: 10, maxDelayMs: 0, maxQueue: 100, maxWeight: 10, weigh: (x) => x }, async (xs) => {
      runs.push(xs);
      return xs;
    });
    await Promise.all([4, 5, 2, 30, 1].map((x) => b.submit(x)));
    expect(runs).toEqual([[4, 5], [2], [30], [1]]);
  });

  it('an aborted item leaves the queue at once, failing with its reason, and frees its place', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runs: number[][] = [];
    const depths: number[] = [];
    const b = new Batcher<number, number>(
      { maxBatch: 8, maxDelayMs: 0, maxQueue: 2 },
      async (xs) => {
        runs.push(xs);
        await gate;
        return xs;
      },
      { batch: () => {}, depth: (n) => depths.push(n) },
    );
    const running = b.submit(0);
    await new Promise((r) => setImmediate(r)); // item 0 runs; the queue is empty again
    const caller = new AbortController();
    const gone = b.submit(1, caller.signal);
    const kept = b.submit(2);
    const reason = new StatusError(status.CANCELLED, 'call cancelled by the client');
    caller.abort(reason);
    await expect(gone).rejects.toBe(reason);
    expect(depths.at(-1)).toBe(1);
    const third = b.submit(3); // the queue holds 2: it fits only because item 1 left
    release();
    expect(await Promise.all([running, kept, third])).toEqual([0, 2, 3]);
    expect(runs).toEqual([[0], [2, 3]]);
  });
});
