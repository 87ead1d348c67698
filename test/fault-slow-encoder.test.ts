import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, sliceTensor } from '../cli/clients.js';
import { StatusError } from '../services/common/statusError.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { Batcher } from '../services/common/batcher.js';
import type { ClassifierClient } from '../services/common/generated/mrl/v1/Classifier.js';
import { late, outcome, tally, waitFor } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';

/** Every encoder batch takes this long (slowBatchMs), one image per batch. */
const DELAY_MS = 1500;
/** The cascade's encoder deadline for callers that set none (MRL_ENCODER_TIMEOUT_MS). */
const DEFAULT_TIMEOUT_MS = 600;
const MARGIN_MS = 500;

let encoder: ServiceProcess;
let cascade: ServiceProcess;
let client: ClassifierClient;
let tensor: { shape: number[]; raw: Buffer };

beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
  encoder = await spawnService('encoder', { MRL_MAX_BATCH: '1' }, { slowBatchMs: DELAY_MS });
  cascade = await spawnService('cascade', {
    MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`,
    MRL_ENCODER_TIMEOUT_MS: String(DEFAULT_TIMEOUT_MS),
    // This test is about deadlines; the breaker has its own.
    MRL_BREAKER_VOLUME: '1000',
    // The breaker tests' 300 ms callers give the encoder about 270 ms: well over this floor.
    MRL_BREAKER_MIN_TIMEOUT_MS: '100',
  });
  client = classifierClient(`127.0.0.1:${cascade.port}`);
  // Connect and warm the client (an embedding needs no encoder), so timings start warm.
  await classify(client, { embedding: { values: new Array(bundle.nesting[0]).fill(0) } });
});
afterAll(async () => {
  client.close();
  await killAll();
});

/** Waits until the slow encoder has nothing queued, so a test starts on an idle encoder. */
const encoderDrained = () =>
  waitFor('the encoder queue to drain', async () => (await scrape(encoder.metricsPort)).get('mrl_encoder_queue_depth') === 0, 10_000);

/** Encoder calls answered, by code, between two scrapes. */
const encoderCodes = (before: Map<string, number>, after: Map<string, number>) =>
  Object.fromEntries(
    ['OK', 'DEADLINE_EXCEEDED', 'CANCELLED'].map((c) => [c, delta(before, after, `mrl_encoder_requests_total{code="${c}"}`)]),
  );

describe('slow encoder (injected delay)', () => {
  it("the caller's deadline reaches the encoder: calls end on time with DEADLINE_EXCEEDED, and expired queued work is dropped", async () => {
    const deadlineMs = 400;
    const n = 6;
    const encBefore = await scrape(encoder.metricsPort);
    const before = await scrape(cascade.metricsPort);
    const outcomes = await Promise.all(
      Array.from({ length: n }, () => outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), deadlineMs)),
    );
    console.log('slow encoder, 400 ms deadline:', JSON.stringify(tally(outcomes)), 'ended after (ms):', outcomes.map((o) => o.endedAt - o.startedAt).join(', '));
    expect(outcomes.map((o) => o.code)).toEqual(new Array(n).fill(status.DEADLINE_EXCEEDED));
    expect(outcomes.every((o) => /deadline exceeded/i.test(o.details))).toBe(true);
    expect(late(outcomes, MARGIN_MS)).toEqual([]);
    expect(delta(before, await scrape(cascade.metricsPort), 'mrl_cascade_requests_total{code="DEADLINE_EXCEEDED"}')).toBe(n);

    // The encoder had the same deadline: none of its calls ran to OK (with the cascade's 600 ms
    // default or no deadline, the first would have, after 1.5 s). Only the first image ran; the
    // others expired in the queue and were dropped instead of run.
    await waitFor('the encoder to answer all its calls', async () => {
      const codes = encoderCodes(encBefore, await scrape(encoder.metricsPort));
      return codes.DEADLINE_EXCEEDED! + codes.CANCELLED! + codes.OK! === n;
    }, 10_000);
    const encAfter = await scrape(encoder.metricsPort);
    expect(encoderCodes(encBefore, encAfter).OK).toBe(0);
    expect(delta(encBefore, encAfter, 'mrl_encoder_batch_size_count')).toBe(1);
  });

  it('a caller without a deadline gets the cascade default (MRL_ENCODER_TIMEOUT_MS)', async () => {
    const started = Date.now();
    const err = await new Promise<{ code: number; details: string }>((resolve) =>
      client.Classify({ tensor }, (e) => resolve(e ?? { code: status.OK, details: '' })),
    );
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(err.details).toBe('deadline exceeded waiting for the encoder');
    expect(Date.now() - started).toBeLessThanOrEqual(DEFAULT_TIMEOUT_MS + MARGIN_MS);
  });

  it('a deadline longer than the delay is served: slow is not broken', async () => {
    await encoderDrained();
    const o = await outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), DELAY_MS * 3);
    expect(o.code).toBe(status.OK);
    expect(cascade.exited() || encoder.exited()).toBe(false);
  });
});

describe('with the pace of answered calls known', () => {
  it('with the pace of answered calls known, a caller whose deadline comes sooner is refused at once, never sent', async () => {
    await encoderDrained();
    // The earlier tests' answered call took the encoder's 1.5 s, or more.
    const before = await scrape(cascade.metricsPort);
    const o = await outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), 300);
    expect(o.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(o.details).toMatch(/^cascade encoder queue: requests wait about (1[5-9]|[2-9])\d\d\d ms for the encoder, more than the 2\d\d ms before this one's deadline; retry later$/);
    expect(o.endedAt - o.startedAt).toBeLessThan(250);
    const after = await scrape(cascade.metricsPort);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(0);
    expect(delta(before, after, 'mrl_cascade_encoder_refusals_total{queue="interactive",reason="expected_wait"}')).toBe(1);
  });
});

describe('a cascade that has had no answer yet (admission expects no wait) behind a hung encoder', () => {
  let guarded: ServiceProcess;
  let c: ClassifierClient;
  beforeAll(async () => {
    // Default breaker volume: 5 calls in the window.
    guarded = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, MRL_BREAKER_MIN_TIMEOUT_MS: '100' });
    c = classifierClient(`127.0.0.1:${guarded.port}`);
  });
  afterAll(async () => {
    c.close();
    await guarded.stop();
  });
  const events = (before: Map<string, number>, after: Map<string, number>) => ({
    failure: delta(before, after, 'mrl_cascade_breaker_events_total{event="failure"}'),
    success: delta(before, after, 'mrl_cascade_breaker_events_total{event="success"}'),
  });

  it('cancel the encoder call they shared once the last of them is gone and the encoder has had it the floor (no pace known yet)', async () => {
    await encoderDrained();
    const encBefore = await scrape(encoder.metricsPort);
    const before = await scrape(guarded.metricsPort);
    // A deadline well past the encoder's delay: left alone, the shared call would end OK.
    const deadline = new Date(Date.now() + 10 * DELAY_MS);
    const ended = [0, 1].map(() => {
      let call!: { cancel(): void };
      const done = new Promise<number>((resolve) => {
        call = c.Classify({ tensor }, { deadline }, (err) => resolve(err?.code ?? status.OK));
      });
      setTimeout(() => call.cancel(), 200);
      return done;
    });
    expect(await Promise.all(ended)).toEqual([status.CANCELLED, status.CANCELLED]);
    await waitFor('the encoder to answer its call', async () => {
      const codes = encoderCodes(encBefore, await scrape(encoder.metricsPort));
      return codes.DEADLINE_EXCEEDED! + codes.CANCELLED! + codes.OK! === 2;
    }, 10_000);
    expect(encoderCodes(encBefore, await scrape(encoder.metricsPort))).toEqual({ OK: 0, DEADLINE_EXCEEDED: 0, CANCELLED: 2 });
    const after = await scrape(guarded.metricsPort);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_sum')).toBe(2);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(1);
    // One call, one outcome: unanswered after 200 ms, past the 100 ms floor, it counts against the encoder.
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="failure"}')).toBe(1);
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="success"}')).toBe(0);
  });

  it('a shared call abandoned through timeouts counts against the breaker as a failure, never as a success', async () => {
    await encoderDrained();
    const before = await scrape(guarded.metricsPort);
    const o = await outcome((d) => classify(c, { tensor }, d.getTime() - Date.now()), 300);
    expect(o.code).toBe(status.DEADLINE_EXCEEDED);
    await waitFor('the call to settle', async () => events(before, await scrape(guarded.metricsPort)).failure === 1, 5_000);
    expect(events(before, await scrape(guarded.metricsPort))).toEqual({ failure: 1, success: 0 });
  });

  it('calls that time out open the breaker, which then fails fast', async () => {
    // Calls one after another, each of three requests that share it, until the breaker opens: by
    // the fifth call in its window (the previous test's counts), the earlier ones all timed out.
    const waves: number[][] = [];
    while (waves.length < 6 && !waves.at(-1)?.includes(status.UNAVAILABLE))
      waves.push((await Promise.all(Array.from({ length: 3 }, () => outcome((d) => classify(c, { tensor }, d.getTime() - Date.now()), 300)))).map((o) => o.code));
    expect(waves.length).toBeLessThanOrEqual(5);
    expect(waves.slice(0, -1).flat()).toEqual(new Array(3 * (waves.length - 1)).fill(status.DEADLINE_EXCEEDED));
    await waitFor('the breaker to open', async () => (await scrape(guarded.metricsPort)).get('mrl_cascade_breaker_state') === 2, 5_000);
    const next = await outcome((d) => classify(c, { tensor }, d.getTime() - Date.now()), 300);
    expect(next.code).toBe(status.UNAVAILABLE);
    expect(next.details).toMatch(/circuit breaker is open/);
    expect(next.endedAt - next.startedAt).toBeLessThan(250);
  });
});

describe('Batcher under expiring deadlines', () => {
  it('drops queued items whose signal aborted, with its reason, and runs only the live ones', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runs: number[][] = [];
    const b = new Batcher<number, number>({ maxBatch: 4, maxDelayMs: 0, maxQueue: 10 }, async (xs) => {
      runs.push(xs);
      await gate;
      return xs;
    });
    const first = b.submit(0);
    await new Promise((r) => setTimeout(r, 5));
    const expiring = [1, 2].map(() => new AbortController());
    const queued = [b.submit(1, expiring[0]!.signal), b.submit(2), b.submit(3, expiring[1]!.signal)];
    const reason = new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded before the call was served');
    expiring.forEach((c) => c.abort(reason));
    release();
    const settled = await Promise.allSettled([first, ...queued]);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as StatusError).code))).toEqual([
      0,
      status.DEADLINE_EXCEEDED,
      2,
      status.DEADLINE_EXCEEDED,
    ]);
    expect(runs).toEqual([[0], [2]]);
  });

  it("a running batch's signal aborts once every item in it has been aborted, not before", async () => {
    const signals: AbortSignal[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>({ maxBatch: 4, maxDelayMs: 0, maxQueue: 10 }, async (xs, signal) => {
      signals.push(signal);
      await gate;
      return xs;
    });
    const callers = [0, 1, 2].map(() => new AbortController());
    // Items 2 and 3 share a signal, as the inputs of one EncodeBatch call do.
    const answers = Promise.allSettled([...callers, callers[2]!].map((c, i) => b.submit(i, c.signal)));
    await new Promise((r) => setImmediate(r));
    expect(signals).toHaveLength(1);
    callers[0]!.abort();
    callers[1]!.abort();
    expect(signals[0]!.aborted).toBe(false);
    const last = new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded waiting for the encoder');
    callers[2]!.abort(last);
    expect(signals[0]!.aborted).toBe(true);
    expect(signals[0]!.reason).toBe(last);
    release();
    await answers;
  });
});
