import type { HeadKind, LinearHead } from './bundle.js';
import { type Normalization, normalizesWhole, prefixNormalizer } from './normalize.js';

/** float32's largest finite value: the onnxruntime heads' logits must stay below it. */
const FLOAT32_MAX = 3.4028234663852886e38;

interface LogitBound {
  /** The largest |bias|. */
  bias: number;
  /** The largest L1 norm of a weight row. */
  row: number;
}

/** Over every head: |logit| ≤ bias + row × the largest |embedding value|. */
function logitBound(heads: readonly LinearHead[], classes: number): LogitBound {
  const bound = { bias: 0, row: 0 };
  for (const { weight, bias, size } of heads) {
    for (const b of bias) bound.bias = Math.max(bound.bias, Math.abs(b));
    for (let c = 0; c < classes; c++) {
      let l1 = 0;
      for (let j = c * size; j < (c + 1) * size; j++) l1 += Math.abs(weight[j]!);
      bound.row = Math.max(bound.row, l1);
    }
  }
  return bound;
}

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
  /** How many of the answering stage's most probable classes the result lists; default 1. */
  topK?: number;
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

/** A class of an answer's list, with its probability at the answering stage. */
export interface TopClass {
  classIndex: number;
  probability: number;
}

export interface CascadeResult {
  classIndex: number;
  confidence: number;
  dimensionUsed: number;
  /** The answering stage's `topK` most probable classes, best first (ties: the lower index). */
  top: TopClass[];
  trace: StageTrace[];
}

/**
 * The exit rule, the one place it is written: stage `i` of `last + 1` answers when it is the
 * last one allowed or its top probability reaches its threshold.
 */
export function exitsAt(i: number, last: number, topProbability: number, thresholds: readonly number[]): boolean {
  return i === last || topProbability >= thresholds[i]!;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * The `k` largest logits' classes, best first (ties: the lower index), in one pass over the
 * classes keeping the best k in a heap whose root is the worst of them: O(L log k).
 */
export function topIndices(logits: ArrayLike<number>, k: number): number[] {
  // a is worse than b: a smaller logit, or an equal one at a higher index.
  const worse = (a: number, b: number) => logits[a]! < logits[b]! || (logits[a] === logits[b] && a > b);
  const heap: number[] = [];
  const siftDown = (at: number) => {
    for (;;) {
      const l = 2 * at + 1;
      const r = l + 1;
      let w = at;
      if (l < heap.length && worse(heap[l]!, heap[w]!)) w = l;
      if (r < heap.length && worse(heap[r]!, heap[w]!)) w = r;
      if (w === at) return;
      [heap[at], heap[w]] = [heap[w]!, heap[at]!];
      at = w;
    }
  };
  for (let j = 0; j < logits.length; j++) {
    if (heap.length < k) {
      heap.push(j);
      for (let at = heap.length - 1; at > 0 && worse(heap[at]!, heap[(at - 1) >> 1]!); at = (at - 1) >> 1)
        [heap[at], heap[(at - 1) >> 1]] = [heap[(at - 1) >> 1]!, heap[at]!];
    } else if (worse(heap[0]!, j)) {
      heap[0] = j;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (worse(a, b) ? 1 : -1));
}

/**
 * An answer's `k` most probable classes, its top class first: p(j) = p(top) · exp((logit j −
 * logit top) / T), from the stage's logits (needed only when k > 1).
 */
function topList(k: number, classIndex: number, confidence: number, logits: ArrayLike<number> | undefined, temperature: number): TopClass[] {
  if (k === 1) return [{ classIndex, probability: confidence }];
  const top = logits![classIndex]!;
  return topIndices(logits!, k).map((j) => ({ classIndex: j, probability: j === classIndex ? confidence : confidence * Math.exp((logits![j]! - top) / temperature) }));
}

/**
 * A stage's top class (ties: the lower index) and the probability softmax(logits / T) gives it,
 * 1 / Σ exp((logit j − logit top) / T), the max subtracted for stability: what the exit rule reads, the
 * same in the service, calibration and temperature fitting.
 */
export function topOf(logits: ArrayLike<number>, temperature = 1): TopClass {
  const classIndex = argmax(logits);
  const max = logits[classIndex]!;
  let sum = 0;
  for (let j = 0; j < logits.length; j++) sum += Math.exp((logits[j]! - max) / temperature);
  return { classIndex, probability: 1 / sum };
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
  /**
   * Whether the logits must come back: MRL-E carries them to the next stage, and a row answering
   * here with more than its top class lists from them. Otherwise only each row's top class.
   */
  keepLogits: boolean;
}

/**
 * Per row, a stage's top class (ties: the lower index) and its probability at the row's
 * temperature; the logits (rows × classes) when asked. Kernels must not write to `work.prev`: it
 * may be the previous stage's output itself.
 */
export interface StageOutput {
  logits?: Float32Array | Float64Array;
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

/**
 * The group's carried logits as one rows × classes array: a view of the previous stage's output
 * when they are consecutive rows of it (as when none of its rows answered), else a copy. They keep
 * the kernel's precision: float64 from JavaScript, float32 from onnxruntime.
 */
function carriedTogether(group: readonly Row[], classes: number): Float32Array | Float64Array {
  const first = group[0]!.carried!;
  const n = group.length * classes;
  const consecutive = group.every((row, g) => row.carried!.buffer === first.buffer && row.carried!.byteOffset === first.byteOffset + g * classes * first.BYTES_PER_ELEMENT);
  if (consecutive)
    return first instanceof Float32Array ? new Float32Array(first.buffer, first.byteOffset, n) : new Float64Array(first.buffer, first.byteOffset, n);
  const joined = first instanceof Float32Array ? new Float32Array(n) : new Float64Array(n);
  group.forEach((row, g) => joined.set(row.carried!, g * classes));
  return joined;
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
  /** What bounds the logits an embedding gives (see logitBound); only unnormalised prefixes need it. */
  readonly #logitBound: LogitBound | undefined;

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
    this.#logitBound = normalization === 'none' ? logitBound(heads, this.classes) : undefined;
  }

  /**
   * The largest embedding value, in magnitude, for which every stage's logits divided by the
   * smallest of `temperatures` stay finite in float32 (as onnxruntime computes them), with room
   * for the softmax's subtraction of the top logit, which can double them. A larger one could
   * make the two kernels disagree, so both refuse it. Normalised prefixes have unit norm: only
   * `none` is bounded.
   */
  largestValue(temperatures: readonly number[] = []): number {
    if (!this.#logitBound || this.#logitBound.row === 0) return Infinity;
    const limit = (FLOAT32_MAX * Math.min(1, ...temperatures)) / 4 - this.#logitBound.bias;
    return Math.max(0, limit / this.#logitBound.row);
  }

  /** Why `z`'s values cannot be classified at `temperatures` (see largestValue), or undefined when they can. */
  valuesError(z: Float32Array, temperatures?: readonly number[]): string | undefined {
    const largest = this.largestValue(temperatures);
    if (largest === Infinity) return undefined;
    for (let i = 0; i < z.length; i++)
      if (Math.abs(z[i]!) > largest)
        return `embedding value ${i} is ${z[i]}; this model's heads take values of at most ${largest.toPrecision(3)} in magnitude (larger ones overflow their float32 logits)`;
    return undefined;
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

  /** The last stage (a nesting index) a request may use, or why it cannot run: its embedding's length or values, its cap or its topK. */
  lastStage(z: Float32Array, { maxDimension, topK = 1, temperatures }: Omit<CascadeOptions, 'thresholds' | 'policy'> = {}): number | string {
    const embeddingLength = z.length;
    const cap = maxDimension || embeddingLength;
    const bad = this.embeddingError(embeddingLength) ?? this.valuesError(z, temperatures);
    if (bad) return bad;
    if (!this.nesting.includes(cap)) return `max_dimension ${cap} is not one of the nesting sizes ${this.nesting.join(', ')}`;
    if (!Number.isInteger(topK) || topK < 1 || topK > this.classes) return `topK ${topK} is not a whole number from 1 to the ${this.classes} classes`;
    return this.nesting.indexOf(Math.min(cap, embeddingLength));
  }

  /** Always returns the logits: classify and `logits` read every stage's. */
  #jsStage({ head, from, to, rows, x, prev, temperatures }: StageWork): StageOutput & { logits: Float64Array } {
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
      ({ classIndex: top[r], probability: topProbability[r] } = topOf(row, temperatures[r]));
    }
    return { logits, top, topProbability };
  }

  /**
   * The stage-by-stage batch: yields each stage's work (one per group of rows that share their
   * columns) and takes its output, until every row has answered. Throws a RangeError on a length
   * or cap outside the nesting, values too large for the heads, or a topK outside the classes
   * (the service refuses all but the values first, and words that refusal itself).
   */
  *#stages(zs: readonly Float32Array[], options: readonly CascadeOptions[]): Generator<StageWork, CascadeResult[], StageOutput> {
    const rows: Row[] = zs.map((z, r) => {
      const o = options[r]!;
      const last = this.lastStage(z, o);
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
        const prev = start > 0 ? carriedTogether(group, this.classes) : undefined;
        const temperatures = Float64Array.from(group, (row) => row.options.temperatures?.[i] ?? 1);
        const keepLogits = group.some((row) => (incremental && i < row.last) || (row.options.topK ?? 1) > 1);
        const out = yield { head: this.kind === 'mrl' ? i : 0, from: start, to: m, rows: group.length, x, prev, temperatures, keepLogits };
        group.forEach((row, g) => {
          const classIndex = out.top[g]!;
          const p = out.topProbability[g]!;
          const exit = exitsAt(i, row.last, p, row.options.thresholds);
          row.trace.push({ dimension: m, classIndex, topProbability: p, threshold: i === row.last ? 0 : row.options.thresholds[i]!, escalated: !exit });
          const logits = out.logits?.subarray(g * this.classes, (g + 1) * this.classes);
          if (exit) row.result = { classIndex, confidence: p, dimensionUsed: m, top: topList(row.options.topK ?? 1, classIndex, p, logits, temperatures[g]!), trace: row.trace };
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
      logits.push(out.logits);
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
