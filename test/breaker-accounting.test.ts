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
import { outcome, tally, waitFor } from './helpers/load.js';
import { startMesh, type TestMesh } from './helpers/mesh.js';
import { delta, scrape } from './helpers/prom.js';

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

describe('the encoder breaker counts inputs, as callers see them', () => {
  it('a few requests with deadlines too short for a healthy encoder, beside many in time, leave it closed', async () => {
    // Default breaker: opens past 50% failures once 5 outcomes are in the window.
    mesh = await startMesh({}, { slowBatchMs: 300 });
    await classify(mesh.classifier, { tensor });
    const before = await scrape(mesh.cascade.metricsPort);
    const calls = [...new Array<number>(12).fill(5_000), ...new Array<number>(4).fill(100)].map((ms) =>
      outcome((d) => classify(mesh!.classifier, { tensor }, d.getTime() - Date.now()), ms),
    );
    expect(tally(await Promise.all(calls))).toEqual({ OK: 12, DEADLINE_EXCEEDED: 4 });
    const counted = events(before, await scrape(mesh.cascade.metricsPort));
    // Counting calls instead, the 4 timeouts outweighed the one or two calls that answered 12; and
    // the 4 gave the encoder under MRL_BREAKER_MIN_TIMEOUT_MS (200), so they count neither way.
    expect(counted.success).toBe(12);
    expect(counted.failure).toBe(0);
    expect(await breakerState(mesh)).toBe(0);
  });

  it('requests that time out still queued in the cascade, never sent, count neither way', async () => {
    mesh = await startMesh({ MRL_ENCODER_CALLS_IN_FLIGHT: '1' }, { slowBatchMs: 400 });
    await classify(mesh.classifier, { tensor });
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
    it(`a shared call abandoned by two callers, the first of which ${first} and the second ${second}: one failure, for the timeout`, async () => {
      // The caller that times out gives the encoder about 270 ms: well over this floor.
      mesh = await startMesh({ MRL_BREAKER_MIN_TIMEOUT_MS: '100' }, { slowBatchMs: 1500 });
      const m = mesh;
      await classify(m.classifier, { tensor });
      const before = await scrape(m.cascade.metricsPort);
      // Sent in one turn, the two share one encoder call; each leaves at its own moment.
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

  it('half-open, a probe its caller cancelled opens it again instead of closing it', async () => {
    const m = await halfOpenMesh();
    const cancelled = new Promise<ServiceError>((resolve) => {
      const call = m.classifier.Classify({ tensor }, { deadline: Date.now() + 10_000 }, (err) => resolve(err!));
      setTimeout(() => call.cancel(), 100);
    });
    expect((await cancelled).code).toBe(status.CANCELLED);
    // A cancel says nothing of the encoder's health: counted as a success it would have closed the breaker.
    await expectReopened(m);
  });
});

describe('callers whose deadlines are shorter than MRL_BREAKER_MIN_TIMEOUT_MS', () => {
  /** Ten unary calls one after another and a packed ClassifyBatch of 256 images, each given 100 ms by a 300 ms encoder. */
  const impatient = async (m: TestMesh) => {
    for (let i = 0; i < 10; i++) expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 100)).code).toBe(status.DEADLINE_EXCEEDED);
    const images = { shape: [256, 28, 28], raw: Buffer.concat(new Array<Buffer>(256).fill(tensor.raw)) };
    const codes = await new Promise<status[]>((resolve) =>
      m.classifier.ClassifyBatch({ images }, { deadline: Date.now() + 100 }, (err, res) => resolve(err ? [err.code] : res!.results.map((r) => r.code))),
    );
    // The cascade answers each image's timeout just inside the call's deadline, or that deadline passes first.
    expect(new Set(codes)).toEqual(new Set([status.DEADLINE_EXCEEDED]));
  };

  it('time out without opening the breaker for everyone, however many there are', async () => {
    mesh = await startMesh({}, { slowBatchMs: 300 });
    const m = mesh;
    await classify(m.classifier, { tensor });
    const before = await scrape(m.cascade.metricsPort);
    await impatient(m);
    // Let every abandoned encoder call end and be counted (each would within the 300 ms delay).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(events(before, await scrape(m.cascade.metricsPort)).failure).toBe(0);
    expect(await breakerState(m)).toBe(0);
    expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 5_000)).code).toBe(status.OK);
  });

  it('do not hide a hung encoder from the breaker: the few patient callers among them open it', async () => {
    mesh = await startMesh({}, { slowBatchMs: 60_000 });
    const m = mesh;
    await classify(m.classifier, { embedding: { values: new Array<number>(8).fill(0) } }); // connect; needs no encoder
    const before = await scrape(m.cascade.metricsPort);
    // For 3 s: a 100 ms caller every 40 ms, and a 300 ms one (about 270 ms for the encoder) every 600 ms.
    const calls: Promise<unknown>[] = [];
    for (let t = 0; t < 3_000; t += 40) {
      calls.push(outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), t % 600 === 0 ? 300 : 100));
      await new Promise((r) => setTimeout(r, 40));
    }
    await Promise.all(calls);
    await waitFor('the breaker to open', async () => (await breakerState(m)) === 2, 5_000);
    // Only the patient callers counted: the impatient ones' calls passed no success to the breaker.
    expect(events(before, await scrape(m.cascade.metricsPort)).success).toBe(0);
  });

  it('half-open, a probe that timed out within its short budget opens it again instead of closing it', async () => {
    const m = await halfOpenMesh();
    expect((await outcome((d) => classify(m.classifier, { tensor }, d.getTime() - Date.now()), 100)).code).toBe(status.DEADLINE_EXCEEDED);
    await expectReopened(m);
  });

  it('open it when the floor is 0: then every timeout counts against the encoder', async () => {
    mesh = await startMesh({ MRL_BREAKER_MIN_TIMEOUT_MS: '0' }, { slowBatchMs: 300 });
    const m = mesh;
    await classify(m.classifier, { tensor });
    await impatient(m).catch(() => {}); // once it opens, calls fail fast with UNAVAILABLE instead
    await waitFor('the breaker to open', async () => (await breakerState(m)) === 2, 5_000);
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
