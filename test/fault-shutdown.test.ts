import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, encode, encoderClient, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { healthCheck } from '../harness/health.js';
import { type Outcome, outcome, tally, waitFor } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';
import { watchHealth } from './helpers/healthWatch.js';

/** A slow model (300 ms a batch of 4) so that SIGTERM finds calls running and queued. */
const SLOW = { env: { MRL_MAX_BATCH: '4' }, slowBatchMs: 300 };
const IN_FLIGHT = 12;
const GRACE = { MRL_SHUTDOWN_GRACE_MS: '20000' };

let tensor: { shape: number[]; raw: Buffer };

beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
});
afterAll(killAll);

interface Drain {
  inFlight: Outcome[];
  refused: Outcome[];
  /** When the health port first answered NOT_SERVING. */
  notServingAt: number;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  exitedAt: number;
}

/**
 * Sends `IN_FLIGHT` calls, waits until the service has them all (`received`), sends SIGTERM, and
 * watches what follows: health on the plaintext health port, new calls from a fresh client and
 * from the one with calls in flight, the in-flight calls' outcomes and the exit.
 */
async function drainUnderLoad(
  service: ServiceProcess,
  healthName: string,
  call: (deadline: Date, fresh: boolean) => Promise<unknown>,
  received: () => Promise<number>,
): Promise<Drain & { watch: ReturnType<typeof watchHealth> }> {
  const watch = watchHealth(service.port, healthName);
  await waitFor('the health watch to report SERVING', () => watch.statuses.some((s) => s.status === 'SERVING'), 5000);
  const base = await received();
  const inFlight = Array.from({ length: IN_FLIGHT }, () => outcome((d) => call(d, false), 15_000));
  await waitFor('the service to have every call', async () => (await received()) - base === IN_FLIGHT, 5000, 10);

  service.child.kill('SIGTERM');
  await waitFor('NOT_SERVING on the health port', async () => (await healthCheck(service.healthPort!, healthName)) === 'NOT_SERVING', 5000, 10);
  const notServingAt = Date.now();
  // New calls, while the in-flight ones drain: refused, from a new client or the draining one.
  const refused = [
    await outcome((d) => call(d, true), 5000),
    await outcome((d) => call(d, false), 5000),
    await outcome((d) => call(d, true), 5000),
  ];
  const done = await Promise.all(inFlight);
  const exit = await service.exit;
  return { inFlight: done, refused, notServingAt, exit, exitedAt: Date.now(), watch };
}

function expectCleanDrain(d: Drain & { watch: ReturnType<typeof watchHealth> }, service: ServiceProcess) {
  console.log(
    `${service.name} SIGTERM under load:`,
    JSON.stringify({
      in_flight: tally(d.inFlight),
      new_calls: tally(d.refused),
      last_in_flight_ended_ms_after_not_serving: Math.max(...d.inFlight.map((o) => o.endedAt)) - d.notServingAt,
      exit: d.exit,
    }),
  );
  // Zero in-flight failures.
  expect(d.inFlight.map((o) => status[o.code])).toEqual(new Array(IN_FLIGHT).fill('OK'));
  // NOT_SERVING came first: before the calls had drained.
  expect(d.notServingAt).toBeLessThan(Math.max(...d.inFlight.map((o) => o.endedAt)));
  // New calls were refused cleanly, with a status a client retries elsewhere.
  expect(d.refused.map((o) => status[o.code])).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  // Watchers saw SERVING, then NOT_SERVING, then the stream closed with OK, not cut.
  expect(d.watch.statuses.map((s) => s.status)).toEqual(['SERVING', 'NOT_SERVING']);
  return d.watch.ended.then((end) => {
    expect(end.code).toBe(status.OK);
    d.watch.close();
    // Exit 0, without waiting out the grace period.
    expect(d.exit).toEqual({ code: 0, signal: null });
    expect(service.output.some((l) => l.includes('grace period over'))).toBe(false);
    expect(service.output.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
  });
}

describe('graceful shutdown on SIGTERM under load', () => {
  it('the cascade: NOT_SERVING first, every in-flight call finishes, new calls refused, exit 0', async () => {
    const encoder = await spawnService('encoder', SLOW.env, { slowBatchMs: SLOW.slowBatchMs });
    const cascade = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, MRL_CASCADE_HEALTH_PORT: '0', ...GRACE });
    const client = classifierClient(`127.0.0.1:${cascade.port}`);
    const inputs = async () => (await scrape(cascade.metricsPort)).get('mrl_cascade_inputs_total{input="tensor"}') ?? 0;
    const drain = await drainUnderLoad(
      cascade,
      'mrl.v1.Classifier',
      (d, fresh) => {
        const c = fresh ? classifierClient(`127.0.0.1:${cascade.port}`) : client;
        return classify(c, { tensor }, d.getTime() - Date.now()).finally(() => fresh && c.close());
      },
      inputs,
    );
    await expectCleanDrain(drain, cascade);
    client.close();
    expect(await encoder.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  it('the encoder: running and queued batches finish, new calls refused, model released, exit 0', async () => {
    const encoder = await spawnService('encoder', { ...SLOW.env, MRL_ENCODER_HEALTH_PORT: '0', ...GRACE }, { slowBatchMs: SLOW.slowBatchMs });
    const client = encoderClient(`127.0.0.1:${encoder.port}`);
    // Calls the encoder has (all valid): those taken into a batch and those waiting in the queue.
    const received = async () => {
      const m = await scrape(encoder.metricsPort);
      return (m.get('mrl_encoder_batch_size_sum') ?? 0) + (m.get('mrl_encoder_queue_depth') ?? 0);
    };
    const drain = await drainUnderLoad(
      encoder,
      'mrl.v1.Encoder',
      (d, fresh) => {
        const c = fresh ? encoderClient(`127.0.0.1:${encoder.port}`) : client;
        return encode(c, { tensor }, d.getTime() - Date.now()).finally(() => fresh && c.close());
      },
      received,
    );
    await expectCleanDrain(drain, encoder);
    client.close();
  }, 60_000);
});
