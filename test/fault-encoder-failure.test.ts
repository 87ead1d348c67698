import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { closedLoop, late, tally, waitFor } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';

/** The breaker as configured for this test: it may open once 5 calls in a 2 s window are at least half failures. */
const BREAKER = { MRL_BREAKER_VOLUME: '5', MRL_BREAKER_ERROR_PERCENT: '50', MRL_BREAKER_RESET_MS: '1000', MRL_BREAKER_WINDOW_MS: '2000' };
const DEADLINE_MS = 2000;
/** Scheduling slack on a loaded 2-core machine: a call must end by its deadline plus this. */
const MARGIN_MS = 500;

let encoder: ServiceProcess;
let cascade: ServiceProcess;
let tensor: { shape: number[]; raw: Buffer };

beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
  encoder = await spawnService('encoder');
  cascade = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, ...BREAKER });
});
afterAll(killAll);

describe('encoder process killed under load', () => {
  it('every call ends OK, UNAVAILABLE or DEADLINE_EXCEEDED in time; the breaker opens, fails fast, and closes on a new encoder', async () => {
    const client = classifierClient(`127.0.0.1:${cascade.port}`);
    const before = await scrape(cascade.metricsPort);
    const load = closedLoop({
      call: (deadline) => classify(client, { tensor }, deadline.getTime() - Date.now()),
      concurrency: 4,
      deadlineMs: DEADLINE_MS,
      pauseMs: 10,
      maxCalls: 20_000,
    });
    const ok = () => load.outcomes.filter((o) => o.code === status.OK).length;
    await waitFor('40 answers from the healthy mesh', () => ok() >= 40);

    encoder.child.kill('SIGKILL');
    const killed = await encoder.exit;
    const deadAt = Date.now();
    expect(killed.signal).toBe('SIGKILL');

    // With no encoder, calls fail until the breaker opens and answers without calling it.
    const breakerOpen = (o: { details: string }) => /circuit breaker is open/.test(o.details);
    await waitFor('the breaker to open', () => load.outcomes.some(breakerOpen), 20_000);
    expect((await scrape(cascade.metricsPort)).get('mrl_cascade_breaker_state')).toBe(2);

    // A new encoder on the same port; half-open probes find it and close the breaker.
    const replacement = await spawnService('encoder', { MRL_ENCODER_PORT: String(encoder.port) });
    const upAt = Date.now();
    await waitFor(
      'traffic to recover through the new encoder',
      () => load.outcomes.filter((o) => o.code === status.OK && o.startedAt > upAt).length >= 40,
      30_000,
    );
    const outcomes = await load.stop();
    client.close();
    const after = await scrape(cascade.metricsPort);
    const counts = tally(outcomes);
    const firstRejection = outcomes.findIndex(breakerOpen);
    const firstOkAfter = outcomes.find((o) => o.code === status.OK && o.startedAt > deadAt)!;
    console.log(
      'encoder failure under load:',
      JSON.stringify({
        sent: load.sent(),
        ...counts,
        encoder_failures_before_open: outcomes.slice(0, firstRejection).filter((o) => /^encoder unavailable: /.test(o.details)).length,
        rejected_by_open_breaker: outcomes.filter(breakerOpen).length,
        half_open_probes: delta(before, after, 'mrl_cascade_breaker_events_total{event="halfOpen"}'),
        first_ok_after_replacement_ms: firstOkAfter.endedAt - upAt,
      }),
    );

    // Every call ended, with an allowed code and within its deadline.
    expect(outcomes).toHaveLength(load.sent());
    expect(Object.keys(counts).sort()).toEqual(expect.arrayContaining(['OK', 'UNAVAILABLE']));
    expect(outcomes.filter((o) => ![status.OK, status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(o.code))).toEqual([]);
    expect(late(outcomes, MARGIN_MS)).toEqual([]);
    // Each failure says what happened.
    const unexplained = outcomes.filter(
      (o) =>
        (o.code === status.UNAVAILABLE && !/^encoder unavailable: |circuit breaker is open/.test(o.details)) ||
        (o.code === status.DEADLINE_EXCEEDED && !/deadline exceeded/i.test(o.details)),
    );
    expect(unexplained).toEqual([]);

    // The client's count and the cascade's metrics agree, code by code.
    for (const code of ['OK', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INTERNAL', 'CANCELLED'])
      expect(delta(before, after, `mrl_cascade_requests_total{code="${code}"}`), code).toBe(counts[code] ?? 0);

    // Open: rejected without an encoder call. Each breaker `reject` refused one EncodeBatch call,
    // which carried one or more of the rejections the client saw (concurrent calls share one);
    // the new encoder served exactly the calls answered OK after the old one died.
    const rejects = delta(before, after, 'mrl_cascade_breaker_events_total{event="reject"}');
    expect(rejects).toBeGreaterThanOrEqual(1);
    expect(rejects).toBeLessThanOrEqual(outcomes.filter(breakerOpen).length);
    const encoderAfter = await scrape(replacement.metricsPort);
    const servedByReplacement = [...encoderAfter].filter(([k]) => k.startsWith('mrl_encoder_requests_total{')).reduce((s, [, v]) => s + v, 0);
    expect(servedByReplacement).toBe(outcomes.filter((o) => o.code === status.OK && o.startedAt > deadAt).length);
    // It opened only after failures, probed half-open, and closed again.
    expect(outcomes.slice(0, firstRejection).filter((o) => /^encoder unavailable: /.test(o.details)).length).toBeGreaterThanOrEqual(5);
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="open"}')).toBeGreaterThanOrEqual(1);
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="halfOpen"}')).toBeGreaterThanOrEqual(1);
    expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="close"}')).toBeGreaterThanOrEqual(1);
    expect(after.get('mrl_cascade_breaker_state')).toBe(0);
    expect(outcomes.slice(-20).every((o) => o.code === status.OK)).toBe(true);

    // No crash: the cascade ran throughout and both survivors stop cleanly.
    expect(cascade.exited()).toBe(false);
    expect(await cascade.stop()).toEqual({ code: 0, signal: null });
    expect(await replacement.stop()).toEqual({ code: 0, signal: null });
  }, 120_000);
});
