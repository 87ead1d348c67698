/** One load point against a fresh mesh, taken apart: what `npm run bench:point` and `npm run bench:shadow` run. */
import { fileURLToPath } from 'node:url';
import { delta, histogramMean, scrape } from '../test/helpers/prom.js';
import type { LoadResult, LoadSpec } from './loadClient.js';
import { startMesh } from './mesh.js';
import { runInChild } from './processes.js';

const CLIENT = fileURLToPath(new URL('./loadClient.ts', import.meta.url));

export interface PointReport {
  spec: LoadSpec;
  answers_per_second: number;
  p50_ms: number;
  p99_ms: number;
  errors: Record<string, number>;
  cores_busy: number;
  machine_idle_share: number;
  /** CPU ms per answer: the client process, and each service's main thread and other threads. */
  cpu_ms_per_answer: { client: number; encoder: { main: number; other: number }; cascade: { main: number; other: number } };
  /**
   * From the services' metrics over the whole client run, its warm-up included; the time the load
   * ran is the answers the services counted over it ÷ the client's measured answers per second.
   */
  stages: {
    /** Classify (or ClassifyBatch) calls in the cascade's handlers, on average; absent for Encode, which skips the cascade. */
    cascade_calls_in_flight?: number;
    /** Calls in the encoder's handlers, on average. */
    encoder_calls_in_flight: number;
    /** Share of the time the encoder's inference worker was running a batch. */
    inference_busy_share: number;
    encoder_avg_batch: number | null;
    /** Mean time an image waited in the encoder's queue for its batch, ms. */
    encoder_queue_wait_ms: number;
  };
}

/** What one load point runs: the call and its load, with the mesh's settings. */
export interface PointSpec {
  call: LoadSpec['call'];
  /** Closed loop with this many calls in flight, or (with `rate`) an open loop. */
  concurrency: number;
  rate?: number;
  batch: number;
  warmupMs: number;
  durationMs: number;
  settings: Record<string, string>;
}

/** Runs one load point against a fresh mesh and takes it apart. */
export async function measurePoint(p: PointSpec): Promise<PointReport> {
  const { call } = p;
  const open = p.rate !== undefined;
  const mesh = await startMesh(p.settings);
  try {
    const batchCall = call === 'classify-batch' || call === 'classify-packed';
    const spec: LoadSpec = {
      target: `127.0.0.1:${call === 'encode' ? mesh.encoder.port : mesh.cascade.port}`,
      call,
      ...(batchCall ? { batch: p.batch } : {}),
      mode: open ? 'open' : 'closed',
      concurrency: open ? 0 : p.concurrency,
      rate: open ? p.rate! : 0,
      warmupMs: p.warmupMs,
      durationMs: p.durationMs,
      deadlineMs: 10_000,
      servers: mesh.servers,
    };
    await runInChild<LoadResult>(CLIENT, { ...spec, servers: undefined }); // warm-up: JIT, connections, batch sizes
    const scrapeBoth = async () => ({ encoder: await scrape(mesh.encoder.metricsPort), cascade: await scrape(mesh.cascade.metricsPort) });
    const m0 = await scrapeBoth();
    const r = await runInChild<LoadResult>(CLIENT, spec);
    const m1 = await scrapeBoth();
    const d = (service: 'encoder' | 'cascade', series: string) => delta(m0[service], m1[service], series);
    const front = call === 'encode' ? 'encoder' : 'cascade';
    const loaded = d(front, `mrl_${front}_requests_total{code="OK"}`) / r.items_per_second;
    const answers = r.items_per_second * (spec.durationMs / 1000);
    const perAnswer = (seconds: number) => (1000 * seconds) / answers;
    const split = (name: 'encoder' | 'cascade') => ({
      main: perAnswer(r.server_main_thread_cpu_seconds[name]!),
      other: perAnswer(r.server_cpu_seconds[name]! - r.server_main_thread_cpu_seconds[name]!),
    });
    const cascadeSeconds = batchCall ? 'mrl_cascade_batch_request_duration_seconds_sum' : 'mrl_cascade_request_duration_seconds_sum';
    return {
      spec,
      answers_per_second: r.items_per_second,
      p50_ms: r.p50_ms,
      p99_ms: r.p99_ms,
      errors: r.errors,
      cores_busy: r.cores_busy,
      machine_idle_share: r.machine_idle_share,
      cpu_ms_per_answer: { client: perAnswer(r.client_cpu_seconds), encoder: split('encoder'), cascade: split('cascade') },
      stages: {
        ...(call === 'encode' ? {} : { cascade_calls_in_flight: d('cascade', cascadeSeconds) / loaded }),
        encoder_calls_in_flight: d('encoder', 'mrl_encoder_request_duration_seconds_sum') / loaded,
        inference_busy_share: d('encoder', 'mrl_encoder_inference_seconds_sum') / loaded,
        encoder_avg_batch: histogramMean(m0.encoder, m1.encoder, 'mrl_encoder_batch_size'),
        encoder_queue_wait_ms: 1000 * (histogramMean(m0.encoder, m1.encoder, 'mrl_encoder_queue_wait_seconds') ?? NaN),
      },
    };
  } finally {
    await mesh.stop();
  }
}

