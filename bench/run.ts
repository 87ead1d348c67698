/**
 * `npm run bench`: the mesh against its two limits, side by side, in one run.
 * - compute limit: onnxruntime-node in-process, batch sizes 1…256;
 * - transport limit: a bare single-hop grpc-js unary echo with the same request payload;
 * - the mesh (encoder + cascade processes), closed-loop concurrency sweep and an open loop at half
 *   the saturated rate, with the cascade policy and with the full-size (no-cascade) baseline;
 * - head compute for a synthetic L = 1000, d = 2048 bundle, cascade against full size.
 * Load comes from separate client processes. Results: bench/results/latest.{json,md}.
 * The ratios to the echo at c=64 (Classify's, and the encoder alone's) are medians of `--rounds` (3)
 * rounds, each measuring echo, Classify and Encode back to back.
 * `--quick` runs a short smoke version (`--out DIR` writes elsewhere); `--set MRL_X=v` tunes the mesh.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadBundle } from '../matryoshka/bundle.js';
import { percentile } from '../test/helpers/load.js';
import { histogramMean, scrape } from '../test/helpers/prom.js';
import { type HeadTimeResult, headTimeBenchmark } from './headTime.js';
import type { LoadResult, LoadSpec } from './loadClient.js';
import { MESH_INTRA_OP_THREADS, parseSettings, startMesh } from './mesh.js';
import { runInChild, spawnTs } from './processes.js';
import { peakRssBytes } from './procStats.js';
import { type RawPoint, rawEncoderThroughput } from './rawEncoder.js';
import { servingSessionOptions } from '../services/encoder/sessionOptions.js';
import { markdownReport } from './markdown.js';

const CLIENT = fileURLToPath(new URL('./loadClient.ts', import.meta.url));

export interface MeshPoint extends LoadResult {
  encoder_avg_batch: number | null;
}

export interface BenchResult {
  date: string;
  machine: { cpus: number; cpu_model: string; memory_gib: number; node: string };
  quick: boolean;
  /** `--set` service settings the mesh ran with (beside the benchmark's own). */
  settings: Record<string, string>;
  raw_encoder: RawPoint[];
  /** The same, with the session the mesh's encoder serves with (its intra-op threads, no spinning). */
  raw_encoder_as_served: { intra_op_threads: number; points: RawPoint[] };
  echo: LoadResult[];
  encoder_alone: MeshPoint;
  cascade: MeshPoint[];
  full: MeshPoint[];
  open_loop: MeshPoint;
  /** ClassifyBatch calls, `spec.batch` requests each. */
  bulk: MeshPoint;
  /** ClassifyBatch calls, `spec.batch` images packed in one tensor each. */
  bulk_packed: MeshPoint;
  /**
   * The points of the two targets set against the echo, at the same concurrency: echo, Classify
   * and Encode (the encoder alone), measured back to back in each round after the sweeps. Each
   * target's ratio is the median of the rounds' ratios (nearest rank: the lower middle of an even count).
   */
  rounds: { concurrency: number; echo_rps: number[]; classify_rps: number[]; encode_rps: number[] };
  heads: HeadTimeResult[];
  peak_rss_bytes: { encoder: number; cascade: number };
  ratios: Record<string, number>;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string', default: fileURLToPath(new URL('./results', import.meta.url)) },
      // `--set MRL_X=value` (repeatable): a service setting for both mesh processes, to compare tunings.
      set: { type: 'string', multiple: true, default: [] },
      // Rounds of the points set against the echo (default 3; 2 with --quick).
      rounds: { type: 'string' },
    },
  });
  const quick = values.quick;
  const settings = parseSettings(values.set);
  const timing = quick ? { warmupMs: 200, durationMs: 500 } : { warmupMs: 1000, durationMs: 4000 };
  const sweep = quick ? [1, 8] : [1, 8, 64, 256];
  const rounds = Number(values.rounds ?? (quick ? 2 : 3));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds takes a whole number of at least 1, got ${values.rounds}`);
  const c64 = quick ? 8 : 64;
  const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
  const bundle = await loadBundle();

  log('raw onnxruntime-node throughput (compute limit)');
  const raw = await rawEncoderThroughput(bundle, quick ? [1, 8] : [1, 2, 4, 8, 16, 32, 64, 128, 256], quick ? 0.2 : 1.5);
  const servedThreads = Number(settings.MRL_INTRA_OP_THREADS ?? MESH_INTRA_OP_THREADS);
  log(`raw onnxruntime-node as the encoder serves it (${servedThreads} intra-op threads, no spinning)`);
  const rawServed = await rawEncoderThroughput(bundle, quick ? [8] : [16, 64], quick ? 0.2 : 1.5, servingSessionOptions(servedThreads));

  const spec = (target: string, call: LoadSpec['call'], concurrency: number, mode: LoadSpec['mode'] = 'closed', rate = 0): LoadSpec => ({
    target,
    call,
    mode,
    concurrency,
    rate,
    deadlineMs: 10_000,
    ...timing,
  });

  log('single-hop grpc-js echo (transport limit)');
  const echoServer = spawnTs('bench/echoServer.ts', {}, (l) => typeof l.port === 'number');
  const echoPort = (await echoServer.ready).port as number;
  const echo: LoadResult[] = [];
  const at = <T extends { spec: LoadSpec }>(points: T[], c: number) => points.find((p) => p.spec.concurrency === c) ?? points.at(-1)!;
  const runEcho = (c: number) => runInChild<LoadResult>(CLIENT, { ...spec(`127.0.0.1:${echoPort}`, 'echo', c), servers: { echo: echoServer.child.pid! } });
  for (const c of sweep) echo.push(await runEcho(c));

  log('mesh');
  const mesh = await startMesh(settings);
  const measure = async (s: LoadSpec): Promise<MeshPoint> => {
    const m0 = await scrape(mesh.encoder.metricsPort);
    const r = await runInChild<LoadResult>(CLIENT, { ...s, servers: mesh.servers });
    return { ...r, encoder_avg_batch: histogramMean(m0, await scrape(mesh.encoder.metricsPort), 'mrl_encoder_batch_size') };
  };
  const cascadeTarget = `127.0.0.1:${mesh.cascade.port}`;
  await runInChild<LoadResult>(CLIENT, spec(cascadeTarget, 'classify', 8)); // warm-up
  const encoderAlone = await measure(spec(`127.0.0.1:${mesh.encoder.port}`, 'encode', quick ? 8 : 64));
  const cascade: MeshPoint[] = [];
  for (const c of sweep) cascade.push(await measure(spec(cascadeTarget, 'classify', c)));
  const full: MeshPoint[] = [];
  for (const c of sweep) full.push(await measure(spec(cascadeTarget, 'classify-full', c)));
  // Run-to-run spread on a shared machine is wide: rounds of the ratios to the echo, each back to back.
  const byRound = { concurrency: c64, echo_rps: [] as number[], classify_rps: [] as number[], encode_rps: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    byRound.echo_rps.push((await runEcho(c64)).rps);
    byRound.classify_rps.push((await measure(spec(cascadeTarget, 'classify', c64))).rps);
    byRound.encode_rps.push((await measure(spec(`127.0.0.1:${mesh.encoder.port}`, 'encode', c64))).rps);
  }
  const bulkBatch = quick ? 8 : 64;
  const bulk = await measure({ ...spec(cascadeTarget, 'classify-batch', quick ? 2 : 4), batch: bulkBatch });
  const bulkPacked = await measure({ ...spec(cascadeTarget, 'classify-packed', quick ? 2 : 4), batch: bulkBatch });
  const saturated = Math.max(...cascade.map((p) => p.rps));
  const openLoop = await measure(spec(cascadeTarget, 'classify', 0, 'open', Math.max(1, Math.round(saturated / 2))));
  const peak = { encoder: peakRssBytes(mesh.encoder.pid), cascade: peakRssBytes(mesh.cascade.pid) };
  await mesh.stop();
  await echoServer.stop();

  log('head compute, L = 1000, d = 2048');
  const heads = (['mrl', 'mrl-e'] as const).map((k) => headTimeBenchmark(k, 1000, 2048, quick ? 40 : 400));

  const overEcho = (points: number[]) => percentile(points.map((rps, i) => rps / byRound.echo_rps[i]!), 50);
  const rawAt = (b: number, points = raw) => points.find((p) => p.batch === b)?.images_per_second ?? NaN;
  const result: BenchResult = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? 'unknown', memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version },
    quick,
    settings,
    raw_encoder: raw,
    raw_encoder_as_served: { intra_op_threads: servedThreads, points: rawServed },
    echo,
    encoder_alone: encoderAlone,
    cascade,
    full,
    open_loop: openLoop,
    bulk,
    bulk_packed: bulkPacked,
    rounds: byRound,
    heads,
    peak_rss_bytes: peak,
    ratios: {
      [`unary_classify_c${c64}_over_echo`]: overEcho(byRound.classify_rps),
      [`full_policy_c${c64}_over_echo`]: at(full, c64).rps / at(echo, c64).rps,
      // What the unary ratio can reach where both points keep the cores busy: CPU per answer, echo ÷ mesh.
      [`echo_cpu_per_answer_over_classify_c${c64}`]: at(echo, c64).cpu_ms_per_answer / at(cascade, c64).cpu_ms_per_answer,
      [`encoder_alone_over_echo_c${c64}`]: overEcho(byRound.encode_rps),
      encoder_alone_avg_batch: encoderAlone.encoder_avg_batch ?? NaN,
      [`encoder_alone_over_raw_batch${c64}`]: encoderAlone.rps / rawAt(c64),
      [`bulk_batch${bulkBatch}_over_raw_batch${bulkBatch}`]: bulk.items_per_second / rawAt(bulkBatch),
      [`bulk_packed_batch${bulkBatch}_over_raw_batch${bulkBatch}`]: bulkPacked.items_per_second / rawAt(bulkBatch),
      // Not a target: how near the bulk path comes to the session it runs on; the rest of the gap
      // to the compute limit is the cores that session leaves to gRPC, the cascade and the client.
      [`bulk_packed_batch${bulkBatch}_over_raw_as_served_batch${bulkBatch}`]:
        bulkPacked.items_per_second / rawAt(bulkBatch, rawServed),
      open_loop_half_rate_p99_over_c1_p50: openLoop.p99_ms / at(cascade, 1).p50_ms,
      ...Object.fromEntries(heads.map((h) => [`head_time_ratio_over_dimension_ratio_${h.kind}`, h.time_ratio / h.dimension_ratio])),
    },
  };
  await mkdir(values.out, { recursive: true });
  await writeFile(join(values.out, 'latest.json'), JSON.stringify(result, null, 2) + '\n');
  const md = markdownReport(result);
  await writeFile(join(values.out, 'latest.md'), md);
  console.log(md);
}

await main();
