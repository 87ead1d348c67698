/** One load point against a fresh mesh, taken apart: what `npm run bench:point` and `npm run bench:shadow` run. */
import { delta, histogramMean } from '../harness/prom.js';
import { spawnMesh } from '../harness/mesh.js';
import { type LoadSpec, measureLoad } from './loadPoint.js';

export interface PointReport {
  spec: LoadSpec;
  answers_per_second: number;
  p50_ms: number;
  p99_ms: number;
  errors: Record<string, number>;
  cores_busy: number;
  machine_idle_share: number;
  /** CPU ms per answer: the client (h2load), and each service's main thread and other threads. */
  cpu_ms_per_answer: { client: number; encoder: { main: number; other: number }; cascade: { main: number; other: number } };
  /** From the services' metrics over the measured window. */
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
  /** Closed loop with this many calls in flight, or (with `rate`) an open loop with at most this many. */
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
  const mesh = await spawnMesh(p.settings);
  try {
    const batchCall = call === 'classify-batch' || call === 'classify-packed';
    const spec: LoadSpec = {
      target: `127.0.0.1:${call === 'encode' ? mesh.encoder.port : mesh.cascade.port}`,
      call,
      ...(batchCall ? { batch: p.batch } : {}),
      concurrency: p.concurrency,
      ...(p.rate === undefined ? {} : { rate: p.rate }),
      warmupMs: p.warmupMs,
      durationMs: p.durationMs,
      deadlineMs: 10_000,
    };
    const servers = Object.fromEntries((['encoder', 'cascade'] as const).map((n) => [n, { pid: mesh[n].pid, metricsPort: mesh[n].metricsPort }]));
    const { result: r, metrics: m } = await measureLoad(spec, servers);
    const d = (service: 'encoder' | 'cascade', series: string) => delta(m[service]!.start, m[service]!.end, series);
    const mean = (histogram: string) => histogramMean(m.encoder!.start, m.encoder!.end, histogram);
    const answers = r.items_per_second * r.seconds;
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
      // Little's law: time spent in a stage over the window ÷ the window.
      stages: {
        ...(call === 'encode' ? {} : { cascade_calls_in_flight: d('cascade', cascadeSeconds) / r.seconds }),
        encoder_calls_in_flight: d('encoder', 'mrl_encoder_request_duration_seconds_sum') / r.seconds,
        inference_busy_share: d('encoder', 'mrl_encoder_inference_seconds_sum') / r.seconds,
        encoder_avg_batch: mean('mrl_encoder_batch_size'),
        encoder_queue_wait_ms: 1000 * (mean('mrl_encoder_queue_wait_seconds') ?? NaN),
      },
    };
  } finally {
    await mesh.stop();
  }
}
