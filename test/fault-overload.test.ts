import { writeFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, encode, encoderClient, sliceTensor } from '../cli/clients.js';
import type { EncoderClient } from '../services/common/generated/mrl/v1/Encoder.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { peakRssBytes, rssBytes } from '../bench/procStats.js';
import { closedLoop, late, type Outcome, outcome, percentile, tally } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';

/** A small queue and a slow model (slowBatchMs) make saturation reachable from one test client. */
const MAX_BATCH = 8;
const MAX_QUEUE = 32;
const DELAY_MS = 250;
const OVERLOAD_FACTOR = 10;
const OVERLOAD_SECONDS = 3;
const MARGIN_MS = 500;

let encoder: ServiceProcess;
let client: EncoderClient;
let tensor: { shape: number[]; raw: Buffer };

beforeAll(async () => {
  const bundle = await loadBundle();
  tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
  encoder = await spawnService('encoder', { MRL_MAX_BATCH: String(MAX_BATCH), MRL_MAX_QUEUE: String(MAX_QUEUE) }, { slowBatchMs: DELAY_MS });
  client = encoderClient(`127.0.0.1:${encoder.port}`);
  await encode(client, { tensor });
});
afterAll(async () => {
  client.close();
  await killAll();
});

const ms = (o: Outcome) => o.endedAt - o.startedAt;
const summary = (os: Outcome[]) => ({ n: os.length, p50_ms: percentile(os.map(ms), 50), p99_ms: percentile(os.map(ms), 99) });

/** Resets the process's peak-RSS counter (Linux clear_refs 5), so VmHWM then measures this phase alone. */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

describe('encoder overload', () => {
  it(`at ${OVERLOAD_FACTOR}x the saturated rate the queue bound answers RESOURCE_EXHAUSTED, admitted calls keep their latency, memory stays bounded`, async () => {
    // Saturation: enough concurrent callers to keep the queue fed, never more than it holds.
    const call = (deadline: Date) => encode(client, { tensor }, deadline.getTime() - Date.now());
    const saturating = closedLoop({ call, concurrency: 2 * MAX_BATCH, deadlineMs: 10_000, pauseMs: 0, maxCalls: 100_000 });
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    const saturated = await saturating.stop();
    const rate = saturated.length / ((Date.now() - t0) / 1000);
    expect(saturated.every((o) => o.code === status.OK)).toBe(true);
    const batchMs = (1000 * MAX_BATCH) / rate;

    // A call admitted into a full queue waits for the batches ahead of it and its own; give it
    // twice that as its deadline. Without the bound the wait would grow with the backlog.
    const deadlineMs = Math.ceil(2 * (MAX_QUEUE / MAX_BATCH + 1) * batchMs) + MARGIN_MS;
    const rssBefore = rssBytes(encoder.pid);
    const peakIsPhaseOnly = resetPeakRss(encoder.pid);
    const before = await scrape(encoder.metricsPort);
    const overload: Promise<Outcome>[] = [];
    // Open loop: every 10 ms, as many calls as are due at the offered rate (a late tick catches up).
    const total = Math.round(OVERLOAD_FACTOR * rate * OVERLOAD_SECONDS);
    const start = Date.now();
    while (overload.length < total) {
      const due = Math.min(total, Math.ceil(((Date.now() - start) / 1000) * OVERLOAD_FACTOR * rate));
      while (overload.length < due) overload.push(outcome(call, deadlineMs));
      await new Promise((r) => setTimeout(r, 10));
    }
    const offeredSeconds = (Date.now() - start) / 1000;
    const outcomes = await Promise.all(overload);
    const peak = peakRssBytes(encoder.pid);
    const after = await scrape(encoder.metricsPort);
    const counts = tally(outcomes);
    const admitted = outcomes.filter((o) => o.code === status.OK);
    const refused = outcomes.filter((o) => o.code === status.RESOURCE_EXHAUSTED);
    const MiB = (b: number) => Math.round(b / 2 ** 20);
    console.log(
      'overload:',
      JSON.stringify({
        saturated_rate_per_s: Math.round(rate),
        offered_rate_per_s: Math.round(overload.length / offeredSeconds),
        sent: overload.length,
        ...counts,
        deadline_ms: deadlineMs,
        saturated_latency: summary(saturated),
        admitted_latency: summary(admitted),
        refused_latency: summary(refused),
        rss_before_mib: MiB(rssBefore),
        [peakIsPhaseOnly ? 'peak_rss_during_overload_mib' : 'peak_rss_since_start_mib']: MiB(peak),
      }),
    );

    // Every call was either served or refused by the queue bound, each by its deadline.
    expect(outcomes.filter((o) => o.code !== status.OK && o.code !== status.RESOURCE_EXHAUSTED)).toEqual([]);
    expect(late(outcomes, MARGIN_MS)).toEqual([]);
    expect(refused.length).toBeGreaterThan(overload.length / 2);
    expect(admitted.length).toBeGreaterThan(0);
    expect(refused.every((o) => o.details === `encoder queue is full (${MAX_QUEUE} waiting); retry later`)).toBe(true);
    // The encoder counted the same.
    expect(delta(before, after, 'mrl_encoder_requests_total{code="OK"}')).toBe(admitted.length);
    expect(delta(before, after, 'mrl_encoder_requests_total{code="RESOURCE_EXHAUSTED"}')).toBe(refused.length);
    // Memory: the queue bound keeps the peak near where it started.
    expect(peak - rssBefore).toBeLessThan(128 * 2 ** 20);
    expect(encoder.exited()).toBe(false);
  }, 60_000);

  it('through the cascade, RESOURCE_EXHAUSTED reaches the caller and does not open the breaker', async () => {
    // Small encoder calls, many in flight: more inputs reach the encoder than its queue holds,
    // so the encoder refuses some inputs of a call while it serves the others.
    const cascade = await spawnService('cascade', {
      MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`,
      MRL_ENCODER_BATCH: String(MAX_BATCH),
      MRL_ENCODER_CALLS_IN_FLIGHT: String((4 * MAX_QUEUE) / MAX_BATCH),
      // Every call of the burst in the cascade at once (not waiting in the client for a stream).
      MRL_MAX_CONCURRENT_STREAMS: '1000',
    });
    const classifier = classifierClient(`127.0.0.1:${cascade.port}`);
    try {
      const before = await scrape(cascade.metricsPort);
      const n = 4 * (MAX_QUEUE + MAX_BATCH);
      const outcomes = await Promise.all(
        Array.from({ length: n }, () => outcome((d) => classify(classifier, { tensor }, d.getTime() - Date.now()), 10_000)),
      );
      const after = await scrape(cascade.metricsPort);
      const counts = tally(outcomes);
      console.log('burst through the cascade:', JSON.stringify({ sent: n, ...counts }));
      expect((counts.OK ?? 0) + (counts.RESOURCE_EXHAUSTED ?? 0)).toBe(n);
      expect(counts.RESOURCE_EXHAUSTED).toBeGreaterThan(0);
      expect(outcomes.filter((o) => o.code === status.RESOURCE_EXHAUSTED).every((o) => /encoder queue is full/.test(o.details))).toBe(true);
      expect(delta(before, after, 'mrl_cascade_requests_total{code="RESOURCE_EXHAUSTED"}')).toBe(counts.RESOURCE_EXHAUSTED);
      expect(delta(before, after, 'mrl_cascade_breaker_events_total{event="open"}')).toBe(0);
      expect(after.get('mrl_cascade_breaker_state')).toBe(0);
    } finally {
      classifier.close();
      await cascade.stop();
    }
  });
});
