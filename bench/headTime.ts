import * as ort from 'onnxruntime-node';
import { median } from '../harness/load.js';
import { seeded, syntheticHeads } from '../harness/synthetic.js';
import type { HeadKind } from '../matryoshka/bundle.js';
import { Cascade, type HeadKernel } from '../matryoshka/cascade.js';
import { linearModel } from '../matryoshka/linearModel.js';
import { ortHeadKernel } from '../matryoshka/ortHeads.js';

export interface HeadTimeResult {
  kind: HeadKind;
  classes: number;
  dimension: number;
  /** Requests per batch of stages (as the cascade batches a turn's requests). */
  batch: number;
  requests: number;
  avg_dimension: number;
  cascade_us_per_request: number;
  full_us_per_request: number;
  /** A bare onnxruntime MatMul of the full head's shape over the same batch, µs a request. */
  bare_matmul_us_per_request: number;
  /** bare ÷ full head time: how near the full-size heads run to the bare matrix product (1 = as fast). */
  full_vs_bare: number;
  /** cascade ÷ full head time. */
  time_ratio: number;
  /** average ÷ full dimension. */
  dimension_ratio: number;
  /**
   * Columns the cascade multiplied ÷ the full size's: its arithmetic, whatever the kernel.
   * MRL-E adds each stage's new columns, so this is the dimension ratio; separate MRL heads
   * recompute from the first column at each stage, 8 + 16 + … + m ≈ 2m for an answer at m.
   */
  mac_ratio: number;
  /** Stages a request ran, on average. */
  stage_visits: number;
  /**
   * The first stage's kernel time, µs a row: 8 columns, so almost all of it is what every stage
   * does over all `classes` whatever its width (the carried logits in and out, the exit rule's
   * softmax and top class).
   */
  first_stage_us_per_row: number;
  /** A bare onnxruntime MatMul and bias Add of the first stage's shape over the same batches, its logits fetched, µs a row. */
  bare_first_stage_us_per_row: number;
  /**
   * The time ratio of a cascade whose every stage cost that much plus its share of the full size's
   * product at the full size's speed: (visits × first stage + mac_ratio × (full − first stage)) ÷
   * full. What this kernel's design could reach at best on these exits.
   */
  bound_ratio: number;
}


/** Mean µs a request of `run` over `batches`. */
async function time(batches: Float32Array[][], run: (zs: Float32Array[]) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (const zs of batches) await run(zs);
  return ((performance.now() - t0) * 1000) / batches.reduce((n, b) => n + b.length, 0);
}

/**
 * A synthetic large-label bundle (L classes, d dims, nesting 8…d): class prototypes whose first
 * coordinates carry most of the signal, as an MRL model's do, so that easy inputs exit early.
 * Heads are the prototypes (MRL: one truncated copy per size; MRL-E: the shared matrix). The
 * cascade and the full size run as the service runs them, batches of stages on onnxruntime;
 * beside them, bare MatMuls of the full head's shape and of the first stage's over the same batches.
 */
export async function headTimeBenchmark(kind: HeadKind, classes = 1000, d = 2048, requests = 512, batch = 64, rounds = 5, threshold = 0.9, signal = 1): Promise<HeadTimeResult> {
  const u = seeded(42);
  const r = () => u() - 0.5;
  const { nesting, proto, heads } = syntheticHeads(kind, classes, d, r, () => 0);
  const cascade = new Cascade(kind, nesting, heads);
  const kernel = ortHeadKernel(cascade);
  // Inputs: a class prototype scaled by a per-input strength, plus noise: strong ones are
  // confident at 8 dimensions, weak ones need many more.
  const inputs = Array.from({ length: requests }, (_, i) => {
    const c = i % classes;
    const strength = signal * 2 ** (-6 * Math.abs(r()) * 2);
    return Float32Array.from({ length: d }, (_, j) => proto[c * d + j]! * strength + r() * 0.5);
  });
  const batches = Array.from({ length: Math.ceil(requests / batch) }, (_, b) => inputs.slice(b * batch, (b + 1) * batch));
  const thresholds = new Array<number>(nesting.length - 1).fill(threshold);
  // The inputs decide where each answers: the same every time, so counted once.
  let dims = 0;
  let columns = 0;
  let visits = 0;
  for (const zs of batches)
    for (const res of await cascade.classifyBatch(zs, zs.map(() => ({ thresholds })), kernel)) {
      dims += res.dimensionUsed;
      visits += res.trace.length;
      columns += kind === 'mrl' ? res.trace.reduce((c, s) => c + s.dimension, 0) : res.dimensionUsed;
    }
  const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' } as const;
  const bareOf = (inputs: number, weight: Float32Array) =>
    ort.InferenceSession.create(linearModel({ classes, inputs, weight, bias: new Float32Array(classes), exitStats: false }), sessionOptions);
  const m0 = nesting[0]!;
  const [bare, bareFirst] = [await bareOf(d, proto), await bareOf(m0, Float32Array.from({ length: classes * m0 }, (_, i) => proto[Math.floor(i / m0) * d + (i % m0)]!))];
  /** The batch's first `m` columns, rows × m. */
  const columnsOf = (zs: Float32Array[], m: number) => {
    const x = new Float32Array(zs.length * m);
    zs.forEach((z, i) => x.set(z.subarray(0, m), i * m));
    return new ort.Tensor('float32', x, [zs.length, m]);
  };
  // The cascade's first stage, timed as it runs: µs and rows this round.
  let first = { us: 0, rows: 0 };
  const timed: HeadKernel = async (work) => {
    if (work.to !== m0) return kernel(work);
    const t0 = performance.now();
    const out = await kernel(work);
    first.us += (performance.now() - t0) * 1000;
    first.rows += work.rows;
    return out;
  };
  const runs: Record<'cascade' | 'full' | 'bare' | 'bareFirst', (zs: Float32Array[]) => Promise<unknown>> = {
    cascade: (zs) => cascade.classifyBatch(zs, zs.map(() => ({ thresholds })), timed),
    full: (zs) => cascade.classifyBatch(zs, zs.map(() => ({ thresholds, policy: 'full' as const })), kernel),
    bare: (zs) => bare.run({ x: columnsOf(zs, d) }),
    bareFirst: (zs) => bareFirst.run({ x: columnsOf(zs, m0) }),
  };
  // Warmed (every session made), then the four in turn, round after round: one slow moment of a
  // shared machine moves one round, not one of them.
  for (const run of Object.values(runs)) await run(batches[0]!);
  const times = { cascade: [] as number[], full: [] as number[], bare: [] as number[], bareFirst: [] as number[] };
  const firstStage: number[] = [];
  for (let round = 0; round < rounds; round++) {
    first = { us: 0, rows: 0 };
    for (const [name, run] of Object.entries(runs)) times[name as keyof typeof runs].push(await time(batches, run));
    firstStage.push(first.us / first.rows);
  }
  const [cas, full, bareUs, bareFirstUs, floor] = [median(times.cascade), median(times.full), median(times.bare), median(times.bareFirst), median(firstStage)];
  await kernel.release();
  await bare.release();
  await bareFirst.release();
  const avgDimension = dims / requests;
  const macRatio = columns / requests / d;
  const stageVisits = visits / requests;
  return {
    kind,
    classes,
    dimension: d,
    batch,
    requests,
    avg_dimension: avgDimension,
    cascade_us_per_request: cas,
    full_us_per_request: full,
    bare_matmul_us_per_request: bareUs,
    full_vs_bare: bareUs / full,
    time_ratio: cas / full,
    dimension_ratio: avgDimension / d,
    mac_ratio: macRatio,
    stage_visits: stageVisits,
    first_stage_us_per_row: floor,
    bare_first_stage_us_per_row: bareFirstUs,
    bound_ratio: (stageVisits * floor + macRatio * (full - floor)) / full,
  };
}
