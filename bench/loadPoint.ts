import { percentile } from '../harness/load.js';
import { codeDeltas, histogramMean, scrape } from '../harness/prom.js';
import { h2load } from './h2load.js';
import { cpuSeconds, machineTicks, mainThreadCpuSeconds } from './procStats.js';
import { type Call, unaryRequest } from './requests.js';

/**
 * A server process a load point reads, by role: `echo`, `encoder` or `cascade` (whichever cascade
 * is called). `metricsPort`: where its counters are (the echo has none).
 */
export interface Server {
  pid: number;
  metricsPort?: number;
}

/** One load point: h2load calling `target` with one repeated request. */
export interface LoadSpec {
  /** `host:port` of the server called. */
  target: string;
  call: Call;
  /** classify-batch, classify-packed: images per call (default 64). */
  batch?: number;
  /** Calls in flight (a closed loop); with `rate`, the most in flight. */
  concurrency: number;
  /** An open loop: calls per second, sent whatever the answers (default none). */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  deadlineMs: number;
}

export interface LoadResult {
  spec: LoadSpec;
  /** The serialized request h2load repeats, bytes. */
  request_bytes: number;
  /** h2load's connections, and streams on each. */
  connections: number;
  streams: number;
  /** The measured window, s. */
  seconds: number;
  /** Calls answered in it, whatever their gRPC status. */
  calls: number;
  rps: number;
  /** Images answered per second (rps × batch for ClassifyBatch). */
  items_per_second: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  /** Answers by gRPC code other than OK (and CANCELLED: h2load stopping), from the called service's counter over the window. */
  errors: Record<string, number>;
  /** The cascade's mean dimension used over the window (null: no cascade). */
  avg_dimension: number | null;
  /** The encoder's mean batch over the window (null: no encoder, or no batch). */
  encoder_avg_batch: number | null;
  /** h2load's CPU seconds over the window. */
  client_cpu_seconds: number;
  /** Each server's CPU seconds over the window, all threads. */
  server_cpu_seconds: Record<string, number>;
  /** The same, of each server's main thread alone: the rest is its other threads (the inference worker, GC helpers). */
  server_main_thread_cpu_seconds: Record<string, number>;
  /** Share of the machine's cores idle over the window (whatever else runs on it counts as busy). */
  machine_idle_share: number;
  /** Cores busy over the window, client and servers together: near the machine's count, the point is CPU-bound. */
  cores_busy: number;
  /** CPU ms per image answered, client and servers together. */
  cpu_ms_per_answer: number;
  /** The same per process: `h2load` and each server. */
  process_cpu_ms_per_answer: Record<string, number>;
}

/** Each server's Prometheus exposition as the window began and ended. */
export type WindowMetrics = Record<string, { start: Map<string, number>; end: Map<string, number> }>;

/** h2load's connections × streams for `concurrency` calls: 16 streams a connection at most, well under the cascade's 32. */
function shape(spec: LoadSpec): { connections: number; streams: number } {
  const connections = Math.max(1, Math.ceil(spec.concurrency / 16));
  return { connections, streams: Math.max(1, Math.round(spec.concurrency / connections)) };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const each = <T>(servers: Record<string, Server>, read: (s: Server) => T) =>
  Object.fromEntries(Object.entries(servers).map(([name, s]) => [name, read(s)]));

/**
 * Runs one load point and reads, over h2load's measured window, every server's CPU (/proc) and
 * metrics: how calls ended, the dimension used and the encoder's batches.
 */
export async function measureLoad(spec: LoadSpec, servers: Record<string, Server>): Promise<{ result: LoadResult; metrics: WindowMetrics }> {
  const request = await unaryRequest(spec.call, spec.batch);
  const { connections, streams } = shape(spec);
  const withMetrics = Object.entries(servers).filter(([, s]) => s.metricsPort !== undefined);
  const probe = () => ({
    cpu: each(servers, (s) => cpuSeconds(s.pid)),
    main: each(servers, (s) => mainThreadCpuSeconds(s.pid)),
    machine: machineTicks(),
    metrics: Promise.all(withMetrics.map(([, s]) => scrape(s.metricsPort!))),
  });
  const run = await h2load(
    {
      origin: `http://${spec.target}`,
      path: request.path,
      message: request.message,
      connections,
      streams,
      seconds: spec.durationMs / 1000,
      warmupSeconds: spec.warmupMs / 1000,
      deadlineMs: spec.deadlineMs,
      rpsPerConnection: spec.rate === undefined ? undefined : spec.rate / connections,
    },
    probe,
  );
  const { start, end } = run.window;
  const [before, after] = [await start.metrics, await end.metrics];
  const metrics: WindowMetrics = Object.fromEntries(withMetrics.map(([name], i) => [name, { start: before[i]!, end: after[i]! }]));
  const called = spec.call === 'encode' ? 'encoder' : spec.call === 'echo' ? undefined : 'cascade';
  // h2load cancels nothing but the calls still in flight as it stops, which the last scrape may catch.
  const errors: Record<string, number> = Object.fromEntries(
    Object.entries(called && metrics[called] ? codeDeltas(metrics[called].start, metrics[called].end, called) : {}).filter(([code]) => code !== 'OK' && code !== 'CANCELLED'),
  );
  const mean = (server: string, histogram: string) => (metrics[server] ? histogramMean(metrics[server].start, metrics[server].end, histogram) : null);
  const since = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.keys(servers).map((n) => [n, b[n]! - a[n]!]));
  const serverCpu = since(start.cpu, end.cpu);
  const items = run.calls * (spec.call === 'classify-batch' || spec.call === 'classify-packed' ? (spec.batch ?? 64) : 1);
  const totalCpu = run.clientCpuSeconds + sum(Object.values(serverCpu));
  const perAnswer = (seconds: number) => (1000 * seconds) / items;
  return {
    result: {
      spec,
      request_bytes: request.message.length,
      connections,
      streams,
      seconds: run.seconds,
      calls: run.calls,
      rps: run.calls / run.seconds,
      items_per_second: items / run.seconds,
      p50_ms: percentile(run.latenciesMs, 50),
      p95_ms: percentile(run.latenciesMs, 95),
      p99_ms: percentile(run.latenciesMs, 99),
      errors,
      avg_dimension: mean('cascade', 'mrl_cascade_dimension_used'),
      encoder_avg_batch: mean('encoder', 'mrl_encoder_batch_size'),
      client_cpu_seconds: run.clientCpuSeconds,
      server_cpu_seconds: serverCpu,
      server_main_thread_cpu_seconds: since(start.main, end.main),
      machine_idle_share: (end.machine.idle - start.machine.idle) / (end.machine.total - start.machine.total),
      cores_busy: totalCpu / run.seconds,
      cpu_ms_per_answer: perAnswer(totalCpu),
      process_cpu_ms_per_answer: { h2load: perAnswer(run.clientCpuSeconds), ...Object.fromEntries(Object.entries(serverCpu).map(([n, s]) => [n, perAnswer(s)])) },
    },
    metrics,
  };
}
