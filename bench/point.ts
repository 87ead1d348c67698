/**
 * `npm run bench:point -- --call classify --concurrency 64`: one load point against a fresh mesh,
 * taken apart, for the questions the benchmark's table raises. Per process, CPU ms per answer of
 * its main thread and of its other threads (the encoder's inference worker, GC helpers); the share
 * of the machine's cores left idle; and, from the services' own metrics, where the time went:
 * how many calls each stage had in flight on average (Little's law: time spent in the stage ÷
 * the time the load ran), and the encoder's batches. Prints JSON.
 * `--rate N` runs an open loop instead; `--batch N` sets the images per ClassifyBatch call;
 * `--set MRL_X=v` tunes the mesh.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { delta, histogramMean, scrape } from '../test/helpers/prom.js';
import type { LoadResult, LoadSpec } from './loadClient.js';
import { parseSettings, startMesh } from './mesh.js';
import { runInChild } from './processes.js';

const CLIENT = fileURLToPath(new URL('./loadClient.ts', import.meta.url));
const CALLS = ['classify', 'classify-full', 'classify-batch', 'classify-packed', 'encode'] as const;

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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      call: { type: 'string', default: 'classify' },
      concurrency: { type: 'string', default: '64' },
      rate: { type: 'string' },
      batch: { type: 'string', default: '64' },
      'duration-ms': { type: 'string', default: '5000' },
      'warmup-ms': { type: 'string', default: '1000' },
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  const call = values.call as LoadSpec['call'];
  if (!(CALLS as readonly string[]).includes(call)) throw new Error(`--call takes one of ${CALLS.join(', ')}, got ${values.call}`);
  const count = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number of at least 1, got ${v}`);
    return n;
  };
  const open = values.rate !== undefined;
  const mesh = await startMesh(parseSettings(values.set));
  try {
    const batchCall = call === 'classify-batch' || call === 'classify-packed';
    const spec: LoadSpec = {
      target: `127.0.0.1:${call === 'encode' ? mesh.encoder.port : mesh.cascade.port}`,
      call,
      ...(batchCall ? { batch: count('batch', values.batch) } : {}),
      mode: open ? 'open' : 'closed',
      concurrency: open ? 0 : count('concurrency', values.concurrency),
      rate: open ? count('rate', values.rate) : 0,
      warmupMs: count('warmup-ms', values['warmup-ms']),
      durationMs: count('duration-ms', values['duration-ms']),
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
    const report: PointReport = {
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
    console.log(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(3)) : v), 2));
  } finally {
    await mesh.stop();
  }
}

await main();
