import { type ServiceError, status } from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cascadeConfig } from '../services/cascade/config.js';
import { startCascade } from '../services/cascade/server.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, sliceTensor } from '../cli/clients.js';
import { silentLogger } from '../services/common/logger.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { encoderConfig } from '../services/encoder/config.js';
import { startEncoder } from '../services/encoder/server.js';
import { outcome, tally, waitFor } from '../harness/load.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { delta, scrape } from '../harness/prom.js';

let tensor: { shape: number[]; raw: Buffer };
let mesh: TestMesh | undefined;
beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
});
afterEach(async () => {
  await mesh?.stop();
  mesh = undefined;
});

const breakerState = async (m: TestMesh) => (await scrape(m.cascade.metricsPort)).get('mrl_cascade_breaker_state');

/** A mesh whose breaker one 400 ms timeout opened (a 1000 ms encoder), now half-open: the next call to end decides. */
async function halfOpenMesh(): Promise<TestMesh> {
  mesh = await startMesh({ MRL_BREAKER_VOLUME: '1', MRL_BREAKER_RESET_MS: '300' }, { slowBatchMs: 1000 });
  const m = mesh;
  expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 400)).code).toBe(status.DEADLINE_EXCEEDED);
  await waitFor('the breaker to open', async () => (await breakerState(m)) === 2, 5_000);
  await waitFor('the breaker to go half-open', async () => (await breakerState(m)) === 1, 5_000);
  return m;
}

/** The half-open probe settled by opening the breaker again. */
async function expectReopened(m: TestMesh): Promise<void> {
  await waitFor('the probe to settle', async () => (await breakerState(m)) !== 1, 5_000);
  expect(await breakerState(m)).toBe(2);
}
const events = (before: Map<string, number>, after: Map<string, number>) => ({
  failure: delta(before, after, 'mrl_cascade_breaker_events_total{event="failure"}'),
  success: delta(before, after, 'mrl_cascade_breaker_events_total{event="success"}'),
});

describe('the encoder breaker counts encoder calls, only for what is the encoder\'s doing', () => {
  it('requests with deadlines too short for the pace the encoder answers at, beside many in time, are refused at once and leave it closed', async () => {
    // Default breaker: opens past 50% failures once 5 calls are in the window.
    mesh = await startMesh({}, { slowBatchMs: 300 });
    await classify(mesh.classifier, { tensor }); // sets the pace: about 300 ms a call
    const before = await scrape(mesh.cascade.metricsPort);
    const calls = [...new Array<number>(12).fill(5_000), ...new Array<number>(4).fill(100)].map((ms) =>
      outcome((d) => classify(mesh!.classifier, { tensor }, d.getTime() - Date.now()), ms),
    );
    expect(tally(await Promise.all(calls))).toEqual({ OK: 12, RESOURCE_EXHAUSTED: 4 });
    const after = await scrape(mesh.cascade.metricsPort);
    expect(events(before, after).failure).toBe(0);
    expect(delta(before, after, 'mrl_cascade_encoder_refusals_total{queue="interactive",reason="expected_wait"}')).toBe(4);
    expect(await breakerState(mesh)).toBe(0);
  });

  it('requests that time out still queued in the cascade, never sent, count neither way', async () => {
    mesh = await startMesh({ MRL_ENCODER_CALLS_IN_FLIGHT: '1' }, { slowBatchMs: 400 });
    // Connect with a request that needs no encoder: no pace yet, so admission lets the next ones queue.
    await classify(mesh.classifier, { embedding: { values: new Array<number>(8).fill(0) } });
    const before = await scrape(mesh.cascade.metricsPort);
    const first = outcome((d) => classify(mesh!.classifier, { tensor }, d.getTime() - Date.now()), 5_000);
    await new Promise((r) => setTimeout(r, 50)); // its call is on its way; the next ones queue behind it
    const queued = await Promise.all(Array.from({ length: 8 }, () => outcome((d) => classify(mesh!.classifier, { tensor }, d.getTime() - Date.now()), 150)));
    expect(tally(queued)).toEqual({ DEADLINE_EXCEEDED: 8 });
    expect((await first).code).toBe(status.OK);
    expect(events(before, await scrape(mesh.cascade.metricsPort))).toEqual({ failure: 0, success: 1 });
    expect(await breakerState(mesh)).toBe(0);
  });

  for (const [first, second] of [
    ['times out', 'cancels'],
    ['cancels', 'times out'],
  ] as const) {
    it(`a shared call abandoned by two callers, the first of which ${first} and the second ${second}: one failure, for the call`, async () => {
      mesh = await startMesh({ MRL_BREAKER_MIN_TIMEOUT_MS: '100' }, { slowBatchMs: 1500 });
      const m = mesh;
      await classify(m.classifier, { embedding: { values: new Array<number>(8).fill(0) } });
      const before = await scrape(m.cascade.metricsPort);
      // Sent in one turn, the two share one encoder call; each leaves at its own moment, and the
      // call, which the encoder has had past the floor by then, ends with the second.
      const leave = (how: 'times out' | 'cancels', atMs: number) =>
        new Promise<status>((resolve) => {
          const deadline = Date.now() + (how === 'times out' ? atMs : 10_000);
          const call = m.classifier.Classify({ tensor }, { deadline }, (err) => resolve(err?.code ?? status.OK));
          if (how === 'cancels') setTimeout(() => call.cancel(), atMs);
        });
      const codes = await Promise.all([leave(first, 300), leave(second, 700)]);
      expect(codes.sort()).toEqual([status.CANCELLED, status.DEADLINE_EXCEEDED].sort());
      const counted = async () => events(before, await scrape(m.cascade.metricsPort));
      await waitFor('the abandoned call to settle', async () => (await counted()).failure > 0, 5_000);
      const after = await scrape(m.cascade.metricsPort);
      expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(1);
      expect(await counted()).toEqual({ failure: 1, success: 0 });
    });
  }

  it('half-open, a probe its caller cancelled before the floor still gets the floor, and opens it again', async () => {
    const m = await halfOpenMesh();
    const cancelled = new Promise<ServiceError>((resolve) => {
      const call = m.classifier.Classify({ tensor }, { deadline: Date.now() + 10_000 }, (err) => resolve(err!));
      setTimeout(() => call.cancel(), 100);
    });
    expect((await cancelled).code).toBe(status.CANCELLED);
    // Cancelled at once, the probe would have said nothing of the encoder; run to the floor, it timed out.
    await expectReopened(m);
  });
});

describe('callers whose deadlines are shorter than MRL_BREAKER_MIN_TIMEOUT_MS', () => {
  /** Ten unary calls one after another and a packed ClassifyBatch of 256 images, each given 100 ms; the codes they got. */
  const impatient = async (m: TestMesh) => {
    const codes: status[] = [];
    for (let i = 0; i < 10; i++) codes.push((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 100)).code);
    const images = { shape: [256, 28, 28], raw: Buffer.concat(new Array<Buffer>(256).fill(tensor.raw)) };
    codes.push(
      ...(await new Promise<status[]>((resolve) =>
        m.classifier.ClassifyBatch({ images }, { deadline: Date.now() + 100 }, (err, res) => resolve(err ? [err.code] : res!.results.map((r) => r.code))),
      )),
    );
    return new Set(codes);
  };

  it('are refused at once, before any encoder call, by an encoder known to be slower than their deadlines', async () => {
    mesh = await startMesh({}, { slowBatchMs: 300 });
    const m = mesh;
    await classify(m.classifier, { tensor });
    const before = await scrape(m.cascade.metricsPort);
    expect(await impatient(m)).toEqual(new Set([status.RESOURCE_EXHAUSTED]));
    const after = await scrape(m.cascade.metricsPort);
    expect(delta(before, after, 'mrl_cascade_encoder_batch_size_count')).toBe(0);
    expect(events(before, after)).toEqual({ failure: 0, success: 0 });
    expect(await breakerState(m)).toBe(0);
    expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 5_000)).code).toBe(status.OK);
  });

  it('do not hide a hung encoder from the breaker: every call gets the floor, times out and counts', async () => {
    mesh = await startMesh({}, { slowBatchMs: 60_000 });
    const m = mesh;
    await classify(m.classifier, { embedding: { values: new Array<number>(8).fill(0) } }); // connect; needs no encoder
    const before = await scrape(m.cascade.metricsPort);
    // For 2 s, a 100 ms caller every 40 ms.
    const calls: Promise<unknown>[] = [];
    for (let t = 0; t < 2_000; t += 40) {
      calls.push(outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 100));
      await new Promise((r) => setTimeout(r, 40));
    }
    await Promise.all(calls);
    await waitFor('the breaker to open', async () => (await breakerState(m)) === 2, 5_000);
    expect(events(before, await scrape(m.cascade.metricsPort)).success).toBe(0);
  });

  it('half-open, a probe that timed out within its short budget still gets the floor, and opens it again', async () => {
    const m = await halfOpenMesh();
    expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 100)).code).toBe(status.DEADLINE_EXCEEDED);
    await expectReopened(m);
  });
});

describe('an encoder serving another model', () => {
  it("is unavailable to the cascade, which says which models disagree and keeps serving what needs no encoder", async () => {
    const loopback = { MRL_ENCODER_HOST: '127.0.0.1', MRL_CASCADE_HOST: '127.0.0.1', MRL_ENCODER_PORT: '0', MRL_ENCODER_METRICS_PORT: '0', MRL_CASCADE_PORT: '0', MRL_CASCADE_METRICS_PORT: '0' };
    const otherModel = fileURLToPath(new URL('../models/fashion-mnist-mrl-e', import.meta.url));
    const encoder = await startEncoder(encoderConfig({ ...loopback, MRL_MODEL_DIR: otherModel }), silentLogger);
    const cascade = await startCascade(cascadeConfig({ ...loopback, MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}` }), silentLogger);
    const client = classifierClient(`127.0.0.1:${cascade.port}`);
    try {
      const bundle = await loadBundle();
      const o = await outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), 5_000);
      expect(o.code).toBe(status.UNAVAILABLE);
      expect(o.details).toBe(`encoder unavailable: it serves fashion-mnist-mrl-e@${bundle.version}, and this cascade's heads are for ${bundle.id}`);
      const fromEmbedding = await classify(client, { embedding: { values: new Array(bundle.nesting[0]).fill(0) } });
      expect(fromEmbedding.dimension_used).toBe(bundle.nesting[0]);
    } finally {
      client.close();
      await cascade.shutdown();
      await encoder.shutdown();
    }
  });
});
