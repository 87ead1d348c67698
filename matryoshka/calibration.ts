import { exitsAt, type Policy, topOf } from './cascade.js';

/**
 * Every stage's raw logits for a set of inputs, row-major n × stages × classes: what temperatures
 * are fitted on and every stage table is made from. `labels` is absent for unlabelled inputs.
 */
export interface LogitTable {
  n: number;
  /** Prefix size of each stage. */
  dims: readonly number[];
  classes: number;
  logits: Float64Array;
  labels?: ArrayLike<number>;
}

/**
 * Every stage's outcome for every sample of a split: what calibration searches and evaluation
 * replays. Row-major n × stages. `labels` is what an answer is scored against: the true classes,
 * or the full size's (for the disagreement risk, which needs no labels).
 */
export interface StageTable {
  n: number;
  /** Prefix size of each stage. */
  dims: readonly number[];
  top: Float64Array;
  classIndex: Int32Array;
  labels: ArrayLike<number>;
}

/** What answers are scored against in a stage table: the true labels, or the full size's class. */
export type Reference = 'labels' | 'full-size';

/** Rows `indices` of a row-major array whose rows are `width` long, gathered in order. */
export function gatherRows<T extends Float32Array | Float64Array | Int32Array>(rows: T, width: number, indices: ArrayLike<number>, out: T): T {
  for (let r = 0; r < indices.length; r++) out.set(rows.subarray(indices[r]! * width, (indices[r]! + 1) * width), r * width);
  return out;
}

/** Entries `indices` of `values`, in order. */
export const pick = (values: ArrayLike<number>, indices: ArrayLike<number>) => Array.from(indices, (i) => values[i]!);

/** The rows `indices` of a logit table (a split of it). */
export function selectRows(table: LogitTable, indices: ArrayLike<number>): LogitTable {
  const per = table.dims.length * table.classes;
  const logits = gatherRows(table.logits, per, indices, new Float64Array(indices.length * per));
  return { ...table, n: indices.length, logits, labels: table.labels && pick(table.labels, indices) };
}

/** The rows `indices` of a stage table. */
export function selectStageRows(table: StageTable, indices: ArrayLike<number>): StageTable {
  const K = table.dims.length;
  return {
    n: indices.length,
    dims: table.dims,
    top: gatherRows(table.top, K, indices, new Float64Array(indices.length * K)),
    classIndex: gatherRows(table.classIndex, K, indices, new Int32Array(indices.length * K)),
    labels: pick(table.labels, indices),
  };
}

/** The stage table of `table` under per-stage temperatures, with the cascade's own top class and probability (topOf). */
export function stageTable(table: LogitTable, temperatures: readonly number[], reference: Reference = 'labels'): StageTable {
  const K = table.dims.length;
  const C = table.classes;
  const top = new Float64Array(table.n * K);
  const classIndex = new Int32Array(table.n * K);
  for (let i = 0; i < table.n; i++)
    for (let k = 0; k < K; k++) {
      ({ classIndex: classIndex[i * K + k], probability: top[i * K + k] } = topOf(table.logits.subarray((i * K + k) * C, (i * K + k + 1) * C), temperatures[k]));
    }
  let labels: ArrayLike<number>;
  if (reference === 'full-size') labels = Int32Array.from({ length: table.n }, (_, i) => classIndex[i * K + K - 1]!);
  else if (table.labels) labels = table.labels;
  else throw new Error('these inputs have no labels: only the disagreement risk can be measured on them');
  return { n: table.n, dims: table.dims, top, classIndex, labels };
}

export interface Replay {
  correct: number;
  /** Sum of the dimension used over all samples. */
  dimensionSum: number;
  /** Samples answered by each stage. */
  exits: number[];
  /** Right answers among the samples each stage answered. */
  exitCorrect: number[];
  /** Answers whose class differs from the full size's (the table's last stage). */
  disagreements: number;
  /** Answers that are wrong where the full size is right. */
  harms: number;
  /** With `perSample`: the stage that answered each sample. */
  stageOf?: Int32Array;
}

export interface ReplayOptions {
  /** Index of the largest stage allowed (the dimension cap); default the last. */
  lastStage?: number;
  /** `full` answers at `lastStage` alone, as the service's full policy does. Default `cascade`. */
  policy?: Policy;
  /** Also record which stage answered each sample. */
  perSample?: boolean;
}

/** Runs the cascade's exit rule (`exitsAt`, as the service does) over the table. */
export function replay(table: StageTable, thresholds: readonly number[], options: ReplayOptions = {}): Replay {
  const K = table.dims.length;
  const lastStage = options.lastStage ?? K - 1;
  const out: Replay = {
    correct: 0,
    dimensionSum: 0,
    exits: new Array<number>(K).fill(0),
    exitCorrect: new Array<number>(K).fill(0),
    disagreements: 0,
    harms: 0,
    stageOf: options.perSample ? new Int32Array(table.n) : undefined,
  };
  for (let i = 0; i < table.n; i++) {
    for (let k = options.policy === 'full' ? lastStage : 0; k <= lastStage; k++) {
      if (!exitsAt(k, lastStage, table.top[i * K + k]!, thresholds)) continue;
      const answer = table.classIndex[i * K + k];
      const full = table.classIndex[i * K + K - 1];
      out.exits[k]!++;
      out.dimensionSum += table.dims[k]!;
      if (answer === table.labels[i]) {
        out.correct++;
        out.exitCorrect[k]!++;
      } else if (full === table.labels[i]) out.harms++;
      if (answer !== full) out.disagreements++;
      if (out.stageOf) out.stageOf[i] = k;
      break;
    }
  }
  return out;
}

/** Accuracy of each fixed stage on its own. */
export function stageAccuracies(table: StageTable): number[] {
  const K = table.dims.length;
  return table.dims.map((_, k) => {
    let right = 0;
    for (let i = 0; i < table.n; i++) if (table.classIndex[i * K + k] === table.labels[i]) right++;
    return right / table.n;
  });
}

/** Minimise the dimension used subject to at least `minCorrect` right answers, or the dual. */
export type Objective = { kind: 'min-dimension'; minCorrect: number } | { kind: 'max-accuracy'; maxDimensionSum: number };

interface Point {
  correct: number;
  cost: number;
}

/** Is `a` strictly better than `b` for the objective (feasibility first)? */
function better(objective: Objective | { kind: 'lagrangian'; lambda: number }, a: Point, b: Point): boolean {
  switch (objective.kind) {
    case 'lagrangian':
      return objective.lambda * a.correct - a.cost > objective.lambda * b.correct - b.cost + 1e-9;
    case 'min-dimension': {
      const fa = a.correct >= objective.minCorrect;
      const fb = b.correct >= objective.minCorrect;
      if (fa !== fb) return fa;
      if (!fa) return a.correct > b.correct || (a.correct === b.correct && a.cost < b.cost);
      return a.cost < b.cost || (a.cost === b.cost && a.correct > b.correct);
    }
    case 'max-accuracy': {
      const fa = a.cost <= objective.maxDimensionSum;
      const fb = b.cost <= objective.maxDimensionSum;
      if (fa !== fb) return fa;
      if (!fa) return a.cost < b.cost || (a.cost === b.cost && a.correct > b.correct);
      return a.correct > b.correct || (a.correct === b.correct && a.cost < b.cost);
    }
  }
}

/**
 * The exact best threshold for stage k with the others fixed: samples reaching k are sorted by
 * their top probability, so every candidate threshold (each distinct top value, and 1) is one
 * prefix of that order, and prefix sums give its accuracy and cost. O(n log n).
 */
function bestForStage(table: StageTable, t: number[], k: number, objective: Parameters<typeof better>[0]): number {
  const K = table.dims.length;
  const last = K - 1;
  let fixed: Point = { correct: 0, cost: 0 }; // samples that exit before k
  const reach: { top: number; exitRight: number; contRight: number; contCost: number }[] = [];
  for (let i = 0; i < table.n; i++) {
    let s = 0;
    while (s < k && !exitsAt(s, last, table.top[i * K + s]!, t)) s++;
    const right = (st: number) => (table.classIndex[i * K + st] === table.labels[i] ? 1 : 0);
    if (s < k) {
      fixed = { correct: fixed.correct + right(s), cost: fixed.cost + table.dims[s]! };
      continue;
    }
    let c = k + 1;
    while (c < last && !exitsAt(c, last, table.top[i * K + c]!, t)) c++;
    reach.push({ top: table.top[i * K + k]!, exitRight: right(k), contRight: right(c), contCost: table.dims[c]! });
  }
  reach.sort((a, b) => b.top - a.top);
  // Threshold 1: only tops of exactly 1 exit. Start there with nobody else exiting.
  let correct = fixed.correct;
  let cost = fixed.cost;
  for (const r of reach) {
    correct += r.contRight;
    cost += r.contCost;
  }
  const dimK = table.dims[k]!;
  let bestT = t[k]!;
  let best: Point | undefined;
  let j = 0;
  const consider = (threshold: number) => {
    const p = { correct, cost };
    if (best === undefined || better(objective, p, best) || (!better(objective, best, p) && threshold === t[k])) {
      best = p;
      bestT = threshold;
    }
  };
  // Walk thresholds from 1 downwards; at each distinct top value everyone at or above it exits.
  const step = (upTo: number) => {
    while (j < reach.length && reach[j]!.top >= upTo) {
      const r = reach[j++]!;
      correct += r.exitRight - r.contRight;
      cost += dimK - r.contCost;
    }
  };
  step(1);
  consider(1);
  while (j < reach.length) {
    const v = reach[j]!.top;
    step(v);
    consider(v);
  }
  return bestT;
}

/** Coordinate descent: each stage's threshold set to its exact best in turn, until none moves. */
function coordinateDescent(table: StageTable, start: number[], objective: Parameters<typeof better>[0], frozen = -1): number[] {
  const t = [...start];
  for (let sweep = 0; sweep < 100; sweep++) {
    let moved = false;
    for (let k = 0; k < t.length; k++) {
      if (k === frozen) continue;
      const v = bestForStage(table, t, k, objective);
      if (v !== t[k]) {
        t[k] = v;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return t;
}

/**
 * For j = 0, 1, 2, …: the cheapest thresholds found with at most j fewer right answers than the
 * full size, lazily: a sequence of cascades, each allowed one more mistake than the last. Each
 * is coordinate descent from the one before, or from the cheapest point of a Lagrangian path
 * (dimension − λ · right answers minimised for a falling price λ) that is feasible for j, where
 * that does better: continuation alone gets stuck where giving up a few answers on the hardest
 * inputs would save many dimensions.
 */
export function* minDimensionPath(table: StageTable): Generator<number[]> {
  const K = table.dims.length;
  const full = replay(table, [], { policy: 'full' }).correct;
  const dMax = table.dims[K - 1]!;
  const lagrangian: { t: number[]; p: Point }[] = [];
  let l = new Array<number>(K - 1).fill(1);
  for (let e = 3; e >= -2; e -= 0.1) {
    l = coordinateDescent(table, l, { kind: 'lagrangian', lambda: dMax * 10 ** e });
    lagrangian.push({ t: l, p: point(table, l) });
  }
  let t = new Array<number>(K - 1).fill(1);
  for (let j = 0; j <= full; j++) {
    const objective: Objective = { kind: 'min-dimension', minCorrect: full - j };
    let best = coordinateDescent(table, t, objective);
    const start = lagrangian.filter((x) => x.p.correct >= full - j).sort((a, b) => a.p.cost - b.p.cost)[0];
    if (start) {
      const x = coordinateDescent(table, start.t, objective);
      if (better(objective, point(table, x), point(table, best))) best = x;
    }
    yield (t = best);
    if (t.every((v) => v === 0)) return; // every input exits at the first stage: nothing is cheaper
  }
}

/** Up to `max` candidate thresholds for stage k: 1 and the distinct tops, thinned evenly by rank. */
function candidates(table: StageTable, k: number, max: number): number[] {
  const K = table.dims.length;
  const values = [...new Set(Array.from({ length: table.n }, (_, i) => table.top[i * K + k]!))].sort((a, b) => b - a);
  const step = Math.max(1, values.length / max);
  const out = [1];
  for (let x = 0; x < values.length; x += step) out.push(values[Math.floor(x)]!);
  return out;
}

/** The table's right answers and dimension sum under thresholds `t`. */
function point(table: StageTable, t: readonly number[]): Point {
  const r = replay(table, t);
  return { correct: r.correct, cost: r.dimensionSum };
}

/**
 * Escapes the local optima of one-stage moves: for each stage k and each of its candidates, the
 * other stages re-optimised by coordinate descent with k held. Returns an improved point or undefined.
 */
function holdOneMove(table: StageTable, t: number[], objective: Objective, maxCandidates: number): number[] | undefined {
  let best = point(table, t);
  let bestT: number[] | undefined;
  for (let k = 0; k < t.length; k++)
    for (const c of candidates(table, k, maxCandidates)) {
      const start = [...t];
      start[k] = c;
      const x = coordinateDescent(table, start, objective, k);
      const p = point(table, x);
      if (better(objective, p, best)) {
        best = p;
        bestT = x;
      }
    }
  return bestT;
}

export interface SearchResult {
  thresholds: number[];
  correct: number;
  accuracy: number;
  avgDimension: number;
  exits: number[];
}

/** Every combination of every stage's candidates, when there are few enough; else undefined. */
function exhaustive(table: StageTable, objective: Objective, maxWork: number): number[] | undefined {
  const all = table.dims.slice(0, -1).map((_, k) => candidates(table, k, Infinity));
  if (all.reduce((p, c) => p * c.length, table.n) > maxWork) return undefined;
  let best: Point | undefined;
  let bestT: number[] = [];
  const t = new Array<number>(all.length);
  const visit = (k: number) => {
    if (k === all.length) {
      const p = point(table, t);
      if (best === undefined || better(objective, p, best)) [best, bestT] = [p, [...t]];
      return;
    }
    for (const c of all[k]!) {
      t[k] = c;
      visit(k + 1);
    }
  };
  visit(0);
  return bestT;
}

export interface SearchOptions {
  /** More starting points for the heuristic, e.g. the answer for a stricter target. */
  starts?: number[][];
  /** Small tables are searched exhaustively while candidates combined × samples stay under this (default 2e7). */
  exhaustiveWork?: number;
  /** Candidates per stage tried in hold-one moves (default 32). */
  holdCandidates?: number;
}

/**
 * Per-stage thresholds for the objective, deterministically. Small tables: every combination of
 * candidate thresholds (each distinct top probability of a stage, and 1), so the optimum. Larger
 * ones (the search is combinatorial): coordinate descent (each stage set
 * to its exact best in turn) started from the full-size cascade and from the optima of Lagrangian
 * relaxations (cost − λ·correct) over a fixed grid of λ; the best point is then improved by
 * hold-one moves (one stage held at each candidate, the rest re-optimised) until none helps.
 */
export function searchThresholds(table: StageTable, objective: Objective, options: SearchOptions = {}): SearchResult {
  const K = table.dims.length;
  const result = (t: number[]): SearchResult => {
    const r = replay(table, t);
    return { thresholds: t, correct: r.correct, accuracy: r.correct / table.n, avgDimension: r.dimensionSum / table.n, exits: r.exits };
  };
  const exact = exhaustive(table, objective, options.exhaustiveWork ?? 2e7);
  if (exact) return result(exact);
  const full = new Array<number>(K - 1).fill(1);
  const dMax = table.dims[K - 1]!;
  const starts = [full];
  for (let e = -2; e <= 4; e += 0.5) starts.push(coordinateDescent(table, full, { kind: 'lagrangian', lambda: dMax * 10 ** e }));
  starts.push(...(options.starts ?? []));
  let bestT = full;
  let best: Point | undefined;
  for (const start of starts) {
    const t = coordinateDescent(table, start, objective);
    const p = point(table, t);
    if (best === undefined || better(objective, p, best)) {
      best = p;
      bestT = t;
    }
  }
  for (let moved = holdOneMove(table, bestT, objective, options.holdCandidates ?? 32); moved; ) {
    bestT = coordinateDescent(table, moved, objective);
    moved = holdOneMove(table, bestT, objective, options.holdCandidates ?? 32);
  }
  return result(bestT);
}
