import * as grpc from '@grpc/grpc-js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, encoderClient, sliceTensor } from '../cli/clients.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import { loadMrlProtos } from '../services/common/protos.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { percentile } from '../test/helpers/load.js';
import { ECHO_SERVICE } from './echoServer.js';
import { cpuSeconds, machineTicks, mainThreadCpuSeconds } from './procStats.js';

/** One load point, run in its own process so the client's CPU is separate and measurable. */
export interface LoadSpec {
  target: string;
  call: 'classify' | 'classify-full' | 'classify-batch' | 'classify-packed' | 'encode' | 'echo';
  /** classify-batch, classify-packed: images per ClassifyBatch call. */
  batch?: number;
  mode: 'closed' | 'open';
  /** closed: requests in flight. */
  concurrency: number;
  /** open: requests per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  deadlineMs: number;
  /** Server processes (name → pid) whose CPU time is read over the same measured window as the client's. */
  servers?: Record<string, number>;
}

export interface LoadResult {
  spec: LoadSpec;
  requests: number;
  /** Calls per second. */
  rps: number;
  /** Answers per second (= rps but for batch calls). */
  items_per_second: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  errors: Record<string, number>;
  avg_dimension: number | null;
  client_cpu_seconds: number;
  /** Each of `spec.servers`' CPU seconds over the measured window. */
  server_cpu_seconds: Record<string, number>;
  /** The same, of each server's main thread alone: the rest is its other threads (an inference worker, GC helpers). */
  server_main_thread_cpu_seconds: Record<string, number>;
  /** Share of all the machine's cores idle over the measured window (whatever else runs on it counts as busy). */
  machine_idle_share: number;
  /** Cores busy over the measured window, client and servers together: near the machine's count, the point is CPU-bound. */
  cores_busy: number;
  /** CPU ms of client and servers together per answer measured. */
  cpu_ms_per_answer: number;
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** One call; resolves to the dimensions used, summed, and how many answers that covers. */
type Send = (i: number) => Promise<{ items: number; dims: number } | undefined>;

/** What the load client reads of a ClassifyBatch response. */
type BatchResponse = { results: { code: number; response?: { dimension_used: number } | null }[] };

/** A ClassifyBatch response as answers and dimensions; a failed item fails the call (with its code). */
function batchAnswers(res: BatchResponse, size: number) {
  const failed = res.results.find((r) => r.code !== 0);
  if (failed) throw Object.assign(new Error('item failed'), { code: failed.code });
  return { items: size, dims: res.results.reduce((s, r) => s + r.response!.dimension_used, 0) };
}

function callFactory(spec: LoadSpec, bundle: Bundle, images: Buffer[]): Send {
  const deadline = () => Date.now() + spec.deadlineMs;
  const tensor = (i: number) => ({ shape: [bundle.input.height, bundle.input.width], raw: images[i % images.length]! });
  const unary = <T>(fn: (cb: (err: grpc.ServiceError | null, res?: T) => void) => void) =>
    new Promise<T>((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res!))));
  switch (spec.call) {
    case 'echo': {
      const Echo = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
      const client = new Echo(spec.target, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
        Echo(req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void;
      };
      const serialize = loadMrlProtos().proto.mrl.v1.Classifier.service.Classify.requestSerialize as (r: ClassifyRequest) => Buffer;
      const payloads = images.map((_, i) => serialize({ tensor: tensor(i) }));
      return async (i) => {
        await unary<Buffer>((cb) => client.Echo(payloads[i % payloads.length]!, { deadline: deadline() }, cb));
        return undefined;
      };
    }
    case 'encode': {
      const client = encoderClient(spec.target);
      return async (i) => {
        await unary((cb) => client.Encode({ tensor: tensor(i) }, { deadline: deadline() }, cb));
        return undefined;
      };
    }
    case 'classify-batch': {
      const client = classifierClient(spec.target);
      const size = spec.batch ?? 64;
      return async (i) => {
        const requests = Array.from({ length: size }, (_, k) => ({ tensor: tensor(i * size + k) }));
        const res = await unary<BatchResponse>((cb) =>
          client.ClassifyBatch({ requests }, { deadline: deadline() }, cb),
        );
        return batchAnswers(res, size);
      };
    }
    case 'classify-packed': {
      const client = classifierClient(spec.target);
      const size = spec.batch ?? 64;
      // A few packed tensors built up front, as an offline job would hold its images.
      const tensors = Array.from({ length: 4 }, (_, t) => ({
        shape: [size, bundle.input.height, bundle.input.width],
        raw: Buffer.concat(Array.from({ length: size }, (_, k) => images[(t * size + k) % images.length]!)),
      }));
      return async (i) => {
        const res = await unary<BatchResponse>((cb) =>
          client.ClassifyBatch({ images: tensors[i % tensors.length] }, { deadline: deadline() }, cb),
        );
        return batchAnswers(res, size);
      };
    }
    default: {
      const client = classifierClient(spec.target);
      const policy = spec.call === 'classify-full' ? 'POLICY_FULL' : 'POLICY_CASCADE';
      return async (i) => ({
        items: 1,
        dims: (await unary<{ dimension_used: number }>((cb) => client.Classify({ tensor: tensor(i), policy }, { deadline: deadline() }, cb))).dimension_used,
      });
    }
  }
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const bundle = await loadBundle();
  const slice = await loadTestSlice(bundle);
  const images = Array.from({ length: 256 }, (_, i) => sliceTensor(slice, i, bundle).raw);
  const send = callFactory(spec, bundle, images);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let dims = 0;
  let dimCount = 0;
  let items = 0;
  const start = performance.now();
  const measureFrom = start + spec.warmupMs;
  const end = measureFrom + spec.durationMs;
  let cpuAt: NodeJS.CpuUsage | undefined;
  const perServer = (read: (pid: number) => number) => Object.fromEntries(Object.entries(spec.servers ?? {}).map(([name, pid]) => [name, read(pid)]));
  const serverCpu = () => ({ all: perServer(cpuSeconds), main: perServer(mainThreadCpuSeconds), machine: machineTicks() });
  // Read again when the warm-up ends; from the start if its timer never fires (a loop that never yields).
  let serverCpuAt = serverCpu();
  let cpuFrom = measureFrom; // when the CPU readings start: the timer may fire late on a busy loop
  let n = 0;
  const one = async () => {
    const t0 = performance.now();
    try {
      const answered = await send(n++);
      if (t0 >= measureFrom) {
        latencies.push(performance.now() - t0);
        items += answered?.items ?? 1;
        if (answered) {
          dims += answered.dims;
          dimCount += answered.items;
        }
      }
    } catch (err) {
      if (t0 >= measureFrom) {
        const code = grpc.status[(err as grpc.ServiceError).code] ?? 'UNKNOWN';
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  };
  setTimeout(() => {
    cpuFrom = performance.now();
    cpuAt = process.cpuUsage();
    serverCpuAt = serverCpu();
  }, spec.warmupMs).unref();
  if (spec.mode === 'closed') {
    await Promise.all(
      Array.from({ length: spec.concurrency }, async () => {
        while (performance.now() < end) await one();
      }),
    );
  } else {
    const inflight = new Set<Promise<void>>();
    let sent = 0;
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - start) / 1000) * spec.rate);
      for (; sent < due && inflight.size < 20_000; sent++) {
        const p = one().finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(inflight);
  }
  const cpu = process.cpuUsage(cpuAt);
  const serverCpuEnd = serverCpu();
  const since = (end: Record<string, number>, start: Record<string, number>) => Object.fromEntries(Object.entries(end).map(([name, s]) => [name, s - start[name]!]));
  const servers = since(serverCpuEnd.all, serverCpuAt.all);
  const cpuWindow = (performance.now() - cpuFrom) / 1000;
  const elapsed = (Math.min(performance.now(), end) - measureFrom) / 1000;
  const clientCpu = (cpu.user + cpu.system) / 1e6;
  const totalCpu = clientCpu + sum(Object.values(servers));
  const errorCount = sum(Object.values(errors));
  return {
    spec,
    requests: latencies.length + errorCount,
    rps: latencies.length / elapsed,
    items_per_second: items / elapsed,
    p50_ms: percentile(latencies, 50),
    p95_ms: percentile(latencies, 95),
    p99_ms: percentile(latencies, 99),
    errors,
    avg_dimension: dimCount ? dims / dimCount : null,
    client_cpu_seconds: clientCpu,
    server_cpu_seconds: servers,
    server_main_thread_cpu_seconds: since(serverCpuEnd.main, serverCpuAt.main),
    machine_idle_share: (serverCpuEnd.machine.idle - serverCpuAt.machine.idle) / (serverCpuEnd.machine.total - serverCpuAt.machine.total),
    cores_busy: totalCpu / cpuWindow,
    cpu_ms_per_answer: (1000 * totalCpu) / items,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runLoad(JSON.parse(process.argv[2]!) as LoadSpec).then(
    (r) => {
      console.log(JSON.stringify(r));
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
