import type { HeadKind, LinearHead } from './bundle.js';
import { type Normalization, normalizesWhole, prefixNormalizer } from './normalize.js';

/** `cascade`: the first confident stage answers. `full`: only the largest allowed stage runs. */
export type Policy = 'cascade' | 'full';

export interface CascadeOptions {
  /** One per stage but the last, in [0, 1]. */
  thresholds: readonly number[];
  /** One per stage, > 0: each stage's logits are divided by its temperature before the softmax. Default 1 each. */
  temperatures?: readonly number[];
  /** Largest prefix to use (a nesting size); default: the embedding's length. */
  maxDimension?: number;
  /** Default `cascade`. */
  policy?: Policy;
}

export interface StageTrace {
  dimension: number;
  /** The class this stage ranks first. */
  classIndex: number;
  topProbability: number;
  /** 0 for the stage that must answer (the last one allowed). */
  threshold: number;
  escalated: boolean;
}

export interface CascadeResult {
  classIndex: number;
  confidence: number;
  dimensionUsed: number;
  /** The answering stage's raw logits, and its temperature: the probabilities of any class (see `topClasses`). */
  logits: ArrayLike<number>;
  temperature: number;
  trace: StageTrace[];
}

/**
 * The exit rule, the one place it is written: stage `i` of `last + 1` answers when it is the
 * last one allowed or its top probability reaches its threshold.
 */
export function exitsAt(i: number, last: number, topProbability: number, thresholds: readonly number[]): boolean {
  return i === last || topProbability >= thresholds[i]!;
}

/** Softmax of logits / temperature in float64, with the max subtracted for stability. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp((logits[i]! - max) / temperature);
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * The `k` most probable classes of an answer, best first (ties: the lower index), with their
 * probabilities: p(j) = p(top) · exp((logit j − logit top) / T), one pass over the classes.
 */
export function topClasses(result: CascadeResult, k: number): { classIndex: number; probability: number }[] {
  const { logits, temperature, classIndex, confidence } = result;
  const best: number[] = [];
  const better = (a: number, b: number) => logits[a]! > logits[b]! || (logits[a] === logits[b] && a < b);
  for (let j = 0; j < logits.length; j++) {
    if (best.length === k && !better(j, best[k - 1]!)) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && better(j, best[at - 1]!)) at--;
    best.splice(at, 0, j);
    if (best.length > k) best.pop();
  }
  const top = logits[classIndex]!;
  return best.map((j) => ({ classIndex: j, probability: j === classIndex ? confidence : confidence * Math.exp((logits[j]! - top) / temperature) }));
}

/**
 * One stage's matrix product over a batch: `rows` inputs x (rows × (to − from)) through columns
 * from..to of head `head`, added to `prev` (rows × classes, logits carried from the stage before)
 * or to the head's bias.
 */
export interface StageWork {
  head: number;
  from: number;
  to: number;
  rows: number;
  x: Float32Array;
  prev?: Float32Array | Float64Array;
  /** Per row, the stage's temperature. */
  temperatures: Float64Array;
}

/** A stage's logits (rows × classes), and per row its top class and that class's probability at its temperature. */
export interface StageOutput {
  logits: Float32Array | Float64Array;
  top: Int32Array;
  topProbability: Float64Array;
}

/** Runs stages: in JavaScript, or as matrix products on onnxruntime (ortHeads.ts). */
export type HeadKernel = (work: StageWork) => StageOutput | Promise<StageOutput>;

/** logits += weight[:, from:to] · x, weight being classes × `cols`, row-major. */
function addColumns(logits: Float64Array, weight: Float32Array, cols: number, x: Float32Array, from: number, to: number): void {
  for (let c = 0; c < logits.length; c++) {
    let acc = 0;
    const row = c * cols;
    for (let j = from; j < to; j++) acc += weight[row + j]! * x[j - from]!;
    logits[c]! += acc;
  }
}

/** A request's progress through the stages. */
interface Row {
  prefix: (m: number) => Float32Array;
  first: number;
  last: number;
  options: CascadeOptions;
  /** MRL-E: the logits so far, which the next stage adds its columns to. */
  carried?: Float32Array | Float64Array;
  trace: StageTrace[];
  result?: CascadeResult;
}

/**
 * The classification cascade over one bundle's heads. MRL: stage m runs head m on z[:m].
 * MRL-E: one shared head; escalating from m to m' adds only columns m..m' to the logits. With a
 * normalisation other than `none`, each stage's prefix is normalised before its head (MRL-E then
 * recomputes all m columns per stage). Requests go through the stages as a batch, each stage
 * computing only the requests still unresolved; `classify` is a batch of one in JavaScript.
 * Used by the service, by calibration and by evaluation alike.
 */
export class Cascade {
  readonly classes: number;
  /** The embedding lengths a caller may give: the nesting sizes, or only the whole embedding when normalising reads all of it. */
  readonly embeddingLengths: readonly number[];
  /** The JavaScript kernel, in float64. */
  readonly js: HeadKernel;

  constructor(
    readonly kind: HeadKind,
    readonly nesting: readonly number[],
    readonly heads: readonly LinearHead[],
    /** model.json `normalization`; default `none`. */
    readonly normalization: Normalization = 'none',
  ) {
    const expected = kind === 'mrl' ? nesting.length : 1;
    if (heads.length !== expected) throw new Error(`${kind} cascade needs ${expected} heads, got ${heads.length}`);
    this.classes = heads[0]!.bias.length;
    this.embeddingLengths = normalizesWhole(normalization) ? [nesting[nesting.length - 1]!] : nesting;
    this.js = (work) => this.#jsStage(work);
  }

  /** Why an embedding of `length` values cannot be classified, or undefined when it can. */
  embeddingError(length: number): string | undefined {
    if (this.embeddingLengths.includes(length)) return undefined;
    if (this.embeddingLengths.length === 1)
      return `embedding has ${length} values; expected all ${this.embeddingLengths[0]} (normalization ${this.normalization} normalises the whole embedding before truncating it)`;
    return `embedding has ${length} values; expected one of the nesting sizes ${this.nesting.join(', ')}`;
  }

  /** How many values of the embedding stages up to `cap` need: `cap`, or all when normalising reads the whole embedding. */
  neededLength(cap: number): number {
    return normalizesWhole(this.normalization) ? this.nesting[this.nesting.length - 1]! : cap;
  }

  /** The stages (nesting indices) a request may use, or an error message. */
  allowedStages(embeddingLength: number, maxDimension?: number): number | string {
    const cap = maxDimension || embeddingLength;
    const bad = this.embeddingError(embeddingLength);
    if (bad) return bad;
    if (!this.nesting.includes(cap)) return `max_dimension ${cap} is not one of the nesting sizes ${this.nesting.join(', ')}`;
    return this.nesting.indexOf(Math.min(cap, embeddingLength));
  }

  #jsStage({ head, from, to, rows, x, prev, temperatures }: StageWork): StageOutput {
    const { weight, bias, size } = this.heads[head]!;
    const L = this.classes;
    const width = to - from;
    const logits = new Float64Array(rows * L);
    const top = new Int32Array(rows);
    const topProbability = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const row = logits.subarray(r * L, (r + 1) * L);
      if (prev) for (let c = 0; c < L; c++) row[c] = prev[r * L + c]!;
      else row.set(bias);
      addColumns(row, weight, size, x.subarray(r * width, (r + 1) * width), from, to);
      const probabilities = softmax(row, temperatures[r]);
      top[r] = argmax(probabilities);
      topProbability[r] = probabilities[top[r]!]!;
    }
    return { logits, top, topProbability };
  }

  /**
   * The stage-by-stage batch: yields each stage's work (one per group of rows that share their
   * columns) and takes its output, until every row has answered. Throws a RangeError on a length
   * or cap outside the nesting: the service refuses those first, with INVALID_ARGUMENT.
   */
  *#stages(zs: readonly Float32Array[], options: readonly CascadeOptions[]): Generator<StageWork, CascadeResult[], StageOutput> {
    const rows: Row[] = zs.map((z, r) => {
      const o = options[r]!;
      const last = this.allowedStages(z.length, o.maxDimension);
      if (typeof last === 'string') throw new RangeError(last);
      return { prefix: prefixNormalizer(z, this.normalization), first: o.policy === 'full' ? last : 0, last, options: o, trace: [] };
    });
    const incremental = this.kind === 'mrl-e' && this.normalization === 'none';
    for (let i = 0; i < this.nesting.length; i++) {
      const m = this.nesting[i]!;
      const active = rows.filter((row) => !row.result && row.first <= i && i <= row.last);
      // MRL-E rows that carry logits add columns from the stage before; the others start from 0.
      const from = (row: Row) => (incremental && row.first < i ? this.nesting[i - 1]! : 0);
      for (const start of new Set(active.map(from))) {
        const group = active.filter((row) => from(row) === start);
        const width = m - start;
        const x = new Float32Array(group.length * width);
        group.forEach((row, g) => x.set(row.prefix(m).subarray(start, m), g * width));
        // Carried logits keep the kernel's precision: float64 from JavaScript, float32 from onnxruntime.
        const kept = start > 0 ? group[0]!.carried! : undefined;
        const prev = kept && (kept instanceof Float32Array ? new Float32Array(group.length * this.classes) : new Float64Array(group.length * this.classes));
        if (prev) group.forEach((row, g) => prev.set(row.carried!, g * this.classes));
        const temperatures = Float64Array.from(group, (row) => row.options.temperatures?.[i] ?? 1);
        const out = yield { head: this.kind === 'mrl' ? i : 0, from: start, to: m, rows: group.length, x, prev, temperatures };
        group.forEach((row, g) => {
          const logits = out.logits.subarray(g * this.classes, (g + 1) * this.classes);
          const classIndex = out.top[g]!;
          const top = out.topProbability[g]!;
          const exit = exitsAt(i, row.last, top, row.options.thresholds);
          row.trace.push({ dimension: m, classIndex, topProbability: top, threshold: i === row.last ? 0 : row.options.thresholds[i]!, escalated: !exit });
          if (exit) row.result = { classIndex, confidence: top, dimensionUsed: m, logits, temperature: temperatures[g]!, trace: row.trace };
          else if (incremental) row.carried = logits;
        });
      }
    }
    return rows.map((row) => row.result!);
  }

  /** Classifies a batch, running its stages on `kernel` (default: JavaScript). */
  async classifyBatch(zs: readonly Float32Array[], options: readonly CascadeOptions[], kernel: HeadKernel = this.js): Promise<CascadeResult[]> {
    const run = this.#stages(zs, options);
    let step = run.next();
    while (!step.done) step = run.next(await kernel(step.value));
    return step.value;
  }

  /** Runs the cascade on one embedding (length: a nesting size), in JavaScript. */
  classify(z: Float32Array, options: CascadeOptions): CascadeResult {
    return this.#sync(z, options).result;
  }

  /** One embedding through the stages in JavaScript, and every stage's raw logits. */
  #sync(z: Float32Array, options: CascadeOptions): { result: CascadeResult; logits: Float64Array[] } {
    const run = this.#stages([z], [options]);
    const logits: Float64Array[] = [];
    let step = run.next();
    while (!step.done) {
      const out = this.#jsStage(step.value);
      logits.push(out.logits as Float64Array);
      step = run.next(out);
    }
    return { result: step.value[0]!, logits };
  }

  /** Every stage's raw logits for one full-length embedding (what temperature fitting works from). */
  logits(z: Float32Array): Float64Array[] {
    return this.#sync(z, this.everyStage()).logits;
  }

  /** Options under which a request runs, and traces, every stage: thresholds above 1 are never reached. */
  everyStage(temperatures?: readonly number[]): CascadeOptions {
    return { thresholds: new Array<number>(this.nesting.length - 1).fill(2), temperatures };
  }

  /** Every stage's top probability and class for one full-length embedding, in JavaScript. */
  allStages(z: Float32Array, temperatures?: readonly number[]): StageTrace[] {
    return this.classify(z, this.everyStage(temperatures)).trace;
  }
}
