import type { HeadKind, LinearHead } from './bundle.js';

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
  /** Softmax of the answering stage. */
  probabilities: Float64Array;
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

/** logits += weight[:, from:to] · z[from:to], weight being classes × `cols`, row-major. */
function addColumns(logits: Float64Array, weight: Float32Array, cols: number, z: Float32Array, from: number, to: number): void {
  for (let c = 0; c < logits.length; c++) {
    let acc = 0;
    const row = c * cols;
    for (let j = from; j < to; j++) acc += weight[row + j]! * z[j]!;
    logits[c]! += acc;
  }
}

/**
 * The classification cascade over one bundle's heads. MRL: stage m runs head m on z[:m].
 * MRL-E: one shared head; escalating from m to m' adds only columns m..m' to the logits.
 * Used by the service, by calibration and by evaluation alike.
 */
export class Cascade {
  readonly classes: number;

  constructor(
    readonly kind: HeadKind,
    readonly nesting: readonly number[],
    private readonly heads: readonly LinearHead[],
  ) {
    const expected = kind === 'mrl' ? nesting.length : 1;
    if (heads.length !== expected) throw new Error(`${kind} cascade needs ${expected} heads, got ${heads.length}`);
    this.classes = heads[0]!.bias.length;
  }

  /** The stages (nesting indices) a request may use, or an error message. */
  allowedStages(embeddingLength: number, maxDimension?: number): number | string {
    const cap = maxDimension || embeddingLength;
    if (!this.nesting.includes(embeddingLength))
      return `embedding has ${embeddingLength} values; expected one of the nesting sizes ${this.nesting.join(', ')}`;
    if (!this.nesting.includes(cap)) return `max_dimension ${cap} is not one of the nesting sizes ${this.nesting.join(', ')}`;
    return this.nesting.indexOf(Math.min(cap, embeddingLength));
  }

  /**
   * Computes the raw logits of stages first..last of `z` in order (MRL-E incrementally), handing
   * each to `visit` until it returns true. The buffer passed is reused: copy it to keep it.
   */
  #walk(z: Float32Array, first: number, last: number, visit: (stage: number, logits: Float64Array) => boolean): void {
    let logits = new Float64Array(this.classes);
    let done = 0; // MRL-E: columns already in `logits`
    if (this.kind === 'mrl-e') {
      logits.set(this.heads[0]!.bias);
      done = first === 0 ? 0 : this.nesting[first - 1]!;
      addColumns(logits, this.heads[0]!.weight, this.nesting[this.nesting.length - 1]!, z, 0, done);
    }
    for (let i = first; i <= last; i++) {
      const m = this.nesting[i]!;
      if (this.kind === 'mrl-e') {
        addColumns(logits, this.heads[0]!.weight, this.nesting[this.nesting.length - 1]!, z, done, m);
        done = m;
      } else {
        logits = Float64Array.from(this.heads[i]!.bias);
        addColumns(logits, this.heads[i]!.weight, m, z, 0, m);
      }
      if (visit(i, logits)) return;
    }
  }

  /**
   * Runs the cascade on `z` (length: a nesting size). Throws a RangeError on a length or cap
   * outside the nesting: the service refuses those first, with INVALID_ARGUMENT.
   */
  classify(z: Float32Array, options: CascadeOptions): CascadeResult {
    const last = this.allowedStages(z.length, options.maxDimension);
    if (typeof last === 'string') throw new RangeError(last);
    const trace: StageTrace[] = [];
    let result: CascadeResult | undefined;
    this.#walk(z, options.policy === 'full' ? last : 0, last, (i, logits) => {
      const probabilities = softmax(logits, options.temperatures?.[i] ?? 1);
      const classIndex = argmax(probabilities);
      const top = probabilities[classIndex]!;
      const exit = exitsAt(i, last, top, options.thresholds);
      const m = this.nesting[i]!;
      trace.push({ dimension: m, classIndex, topProbability: top, threshold: i === last ? 0 : options.thresholds[i]!, escalated: !exit });
      if (exit) result = { classIndex, confidence: top, dimensionUsed: m, probabilities, trace };
      return exit;
    });
    if (!result) throw new Error('unreachable: the last stage always answers');
    return result;
  }

  /** Every stage's raw logits for one full-length embedding (what temperature fitting works from). */
  logits(z: Float32Array): Float64Array[] {
    const out: Float64Array[] = [];
    this.#walk(z, 0, this.nesting.length - 1, (_, logits) => {
      out.push(Float64Array.from(logits));
      return false;
    });
    return out;
  }

  /**
   * Every stage's top probability and class for one full-length embedding: the table that
   * calibration searches and evaluation replays through `exitsAt`.
   */
  allStages(z: Float32Array, temperatures?: readonly number[]): StageTrace[] {
    // Thresholds above 1 are never reached: the cascade runs, and traces, every stage.
    return this.classify(z, { thresholds: new Array(this.nesting.length - 1).fill(2), temperatures }).trace;
  }
}
