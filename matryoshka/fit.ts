import type { HeadKind, LinearHead } from './bundle.js';
import { type Normalization, prefixNormalizer } from './normalize.js';

/** A differentiable function: writes the gradient at `x` into `grad` and returns the value. */
export type Objective = (x: Float64Array, grad: Float64Array) => number;

export interface LbfgsOptions {
  /** Stop when every gradient component is at most this in absolute value. Default 1e-6. */
  gradientTolerance?: number;
  /** Stop when the value fell by less than this × max(1, |value|) over the last 10 iterations. Default 0 (off). */
  valueTolerance?: number;
  /** Default 500. */
  maxIterations?: number;
  /** Correction pairs kept. Default 10. */
  memory?: number;
  /** Writes an approximation of the inverse Hessian times `v` into `out` (the initial matrix H₀); default: the identity. */
  precondition?: (v: Float64Array, out: Float64Array) => void;
}

export interface LbfgsResult {
  x: Float64Array;
  value: number;
  /** Largest absolute gradient component at `x`. */
  gradientNorm: number;
  iterations: number;
  /** A tolerance was reached (otherwise the iterations ran out, or no step decreased the value further). */
  converged: boolean;
}

const dot = (a: Float64Array, b: Float64Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const maxAbs = (a: Float64Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * A step along `d` from `x` meeting the weak Wolfe conditions (sufficient decrease, c1 = 1e-4, and
 * curvature, c2 = 0.9), by doubling and bisection (Lewis and Overton 2013): written into `xNext`
 * and `gNext`, its value returned; the last sufficient decrease found if the curvature condition
 * is not met in 60 tries; undefined if none is.
 */
function wolfeStep(f: Objective, x: Float64Array, d: Float64Array, value: number, slope: number, xNext: Float64Array, gNext: Float64Array): number | undefined {
  let [lo, hi, t] = [0, Infinity, 1];
  const at = (step: number) => {
    for (let i = 0; i < x.length; i++) xNext[i] = x[i]! + step * d[i]!;
    return f(xNext, gNext);
  };
  for (let tries = 0; tries < 60; tries++) {
    const next = at(t);
    if (!(next <= value + 1e-4 * t * slope)) hi = t;
    else if (dot(gNext, d) < 0.9 * slope) lo = t;
    else return next;
    t = hi === Infinity ? 2 * lo : (lo + hi) / 2;
  }
  return lo > 0 ? at(lo) : undefined;
}

/**
 * Minimises a smooth function by L-BFGS (Nocedal and Wright, Numerical Optimization, algorithm
 * 7.4) with a weak Wolfe line search. Deterministic: plain arithmetic in a fixed order.
 */
export function minimizeLbfgs(f: Objective, x0: Float64Array, options: LbfgsOptions = {}): LbfgsResult {
  const { gradientTolerance = 1e-6, valueTolerance = 0, maxIterations = 500, memory = 10, precondition = (v, out) => out.set(v) } = options;
  const p = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(p);
  let value = f(x, g);
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Float64Array(memory);
  const d = new Float64Array(p);
  const q = new Float64Array(p);
  const hy = new Float64Array(p);
  let xNext = new Float64Array(p);
  let gNext = new Float64Array(p);
  const WINDOW = 10;
  const history: number[] = [value];
  let converged = false;
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    const earlier = history.length > WINDOW ? history.shift()! : Infinity;
    if (maxAbs(g) <= gradientTolerance || earlier - value <= valueTolerance * Math.max(1, Math.abs(value))) {
      converged = true;
      break;
    }
    // Two-loop recursion: d = −H·g.
    for (let i = 0; i < p; i++) q[i] = -g[i]!;
    for (let k = s.length - 1; k >= 0; k--) {
      alpha[k] = rho[k]! * dot(s[k]!, q);
      for (let i = 0; i < p; i++) q[i]! -= alpha[k]! * y[k]![i]!;
    }
    // Initial matrix γ·H₀, γ = sᵀy / yᵀH₀y (Nocedal and Wright 7.20 in H₀'s metric).
    precondition(q, d);
    if (s.length) {
      precondition(y.at(-1)!, hy);
      const gamma = 1 / (rho.at(-1)! * dot(y.at(-1)!, hy));
      for (let i = 0; i < p; i++) d[i]! *= gamma;
    }
    for (let k = 0; k < s.length; k++) {
      const beta = rho[k]! * dot(y[k]!, d);
      for (let i = 0; i < p; i++) d[i]! += (alpha[k]! - beta) * s[k]![i]!;
    }
    const slope = dot(g, d);
    if (!(slope < 0)) break; // not a descent direction: only rounding is left to gain
    const next = wolfeStep(f, x, d, value, slope, xNext, gNext);
    if (next === undefined) break; // no step decreases the value: only rounding is left to gain
    const sk = new Float64Array(p);
    const yk = new Float64Array(p);
    for (let i = 0; i < p; i++) {
      sk[i] = xNext[i]! - x[i]!;
      yk[i] = gNext[i]! - g[i]!;
    }
    // The Wolfe step makes sᵀy positive but for rounding; a pair without it would make H indefinite.
    const sy = dot(sk, yk);
    if (sy > 0) {
      if (s.length === memory) {
        s.shift();
        y.shift();
        rho.shift();
      }
      s.push(sk);
      y.push(yk);
      rho.push(1 / sy);
    }
    [x, xNext, g, gNext] = [xNext, x, gNext, g];
    value = next;
    history.push(value);
  }
  return { x, value, gradientNorm: maxAbs(g), iterations, converged };
}

/** One stage of a head being fitted: `n × size` inputs, row-major, scored by the head's first `size` columns and its bias. */
export interface FitStage {
  size: number;
  inputs: Float32Array;
}

/**
 * Multinomial logistic regression for one linear head: the mean over stages of the mean softmax
 * cross-entropy, plus `l2` / 2 × the squared norm of the weights (not the bias). An MRL head has
 * one stage; an MRL-E head one per nesting size, sharing the weights as the cascade does.
 */
export interface SoftmaxProblem {
  classes: number;
  /** Class index of each input, 0 ≤ label < classes. */
  labels: ArrayLike<number>;
  stages: FitStage[];
  l2: number;
}

export interface HeadFit extends Omit<LbfgsResult, 'x'> {
  head: LinearHead;
}

/**
 * The Cholesky factor L of a symmetric positive definite `k × k` matrix (row-major), in place:
 * L below the diagonal, Lᵀ above it, so that both solves read rows.
 */
function cholesky(a: Float64Array, k: number): Float64Array {
  for (let j = 0; j < k; j++) {
    let diag = a[j * k + j]!;
    for (let t = 0; t < j; t++) diag -= a[j * k + t]! ** 2;
    if (!(diag > 0)) throw new Error('the inputs\' second-moment matrix is singular (a dimension that is always 0, or copies of one); give a positive l2');
    const root = Math.sqrt(diag);
    a[j * k + j] = root;
    for (let i = j + 1; i < k; i++) {
      let v = a[i * k + j]!;
      for (let t = 0; t < j; t++) v -= a[i * k + t]! * a[j * k + t]!;
      a[i * k + j] = v / root;
    }
    for (let t = j + 1; t < k; t++) a[j * k + t] = a[t * k + j]!;
  }
  return a;
}

/** Solves L·Lᵀ·z = b in place, for the factor `cholesky` made. */
function choleskySolve(l: Float64Array, k: number, b: Float64Array): void {
  for (let i = 0; i < k; i++) {
    let v = b[i]!;
    for (let t = 0; t < i; t++) v -= l[i * k + t]! * b[t]!;
    b[i] = v / l[i * k + i]!;
  }
  for (let i = k - 1; i >= 0; i--) {
    let v = b[i]!;
    for (let t = i + 1; t < k; t++) v -= l[i * k + t]! * b[t]!;
    b[i] = v / l[i * k + i]!;
  }
}

/**
 * Fits a softmax head by L-BFGS, from `start` (a smaller head's weights in the first columns) or
 * from zero. Its initial matrix is the inverse of Böhning's bound on the Hessian (1992) without
 * the coupling of classes: per class ½·E[x̃x̃ᵀ] + l2, x̃ the inputs with a 1 for the bias, solved
 * by Cholesky. Embedding dimensions are correlated and of very unequal scale: the bound accounts
 * for both, where plain L-BFGS spends several times as many iterations learning them.
 */
export function fitSoftmaxHead(problem: SoftmaxProblem, options: LbfgsOptions & { start?: LinearHead } = {}): HeadFit {
  const { classes: C, labels, stages, l2 } = problem;
  const n = labels.length;
  const M = Math.max(...stages.map((st) => st.size));
  for (const st of stages)
    if (st.inputs.length !== n * st.size) throw new Error(`a ${st.size}-d stage has ${st.inputs.length} values for ${n} inputs`);
  for (let i = 0; i < n; i++)
    if (!(Number.isInteger(labels[i]) && labels[i]! >= 0 && labels[i]! < C)) throw new Error(`label ${labels[i]} of input ${i} is not a class index below ${C}`);
  const weight = 1 / (stages.length * n);
  const inputs = stages.map((st) => ({ size: st.size, x: Float64Array.from(st.inputs) }));

  // The bound's block (M + 1 square, the bias last), lower triangle, then mirrored.
  const K = M + 1;
  const bound = new Float64Array(K * K);
  for (const { size, x } of inputs)
    for (let i = 0; i < n; i++) {
      const off = i * size;
      for (let a = 0; a < size; a++) {
        const va = 0.5 * weight * x[off + a]!;
        for (let b = 0; b <= a; b++) bound[a * K + b]! += va * x[off + b]!;
        bound[M * K + a]! += va;
      }
      bound[M * K + M]! += 0.5 * weight;
    }
  for (let a = 0; a < K; a++) for (let b = 0; b < a; b++) bound[b * K + a] = bound[a * K + b]!;
  for (let a = 0; a < M; a++) bound[a * K + a]! += l2;
  const factor = cholesky(bound, K);
  const block = new Float64Array(K);
  const precondition = (v: Float64Array, out: Float64Array) => {
    for (let c = 0; c < C; c++) {
      block.set(v.subarray(c * M, (c + 1) * M));
      block[M] = v[C * M + c]!;
      choleskySolve(factor, K, block);
      out.set(block.subarray(0, M), c * M);
      out[C * M + c] = block[M]!;
    }
  };

  const logits = new Float64Array(C);
  // The parameters: the weights, C × M row-major, then the C biases.
  const objective: Objective = (theta, grad) => {
    grad.fill(0);
    let loss = 0;
    for (const { size, x } of inputs) {
      for (let i = 0; i < n; i++) {
        const off = i * size;
        let max = -Infinity;
        for (let c = 0; c < C; c++) {
          let acc = theta[C * M + c]!;
          const w = c * M;
          for (let j = 0; j < size; j++) acc += theta[w + j]! * x[off + j]!;
          logits[c] = acc;
          if (acc > max) max = acc;
        }
        let sum = 0;
        for (let c = 0; c < C; c++) sum += logits[c] = Math.exp(logits[c]! - max);
        const y = labels[i]!;
        loss -= Math.log(logits[y]! / sum);
        for (let c = 0; c < C; c++) {
          const r = (weight * logits[c]!) / sum - (c === y ? weight : 0);
          grad[C * M + c]! += r;
          const w = c * M;
          for (let j = 0; j < size; j++) grad[w + j]! += r * x[off + j]!;
        }
      }
    }
    loss *= weight;
    for (let k = 0; k < C * M; k++) {
      loss += 0.5 * l2 * theta[k]! ** 2;
      grad[k]! += l2 * theta[k]!;
    }
    return loss;
  };
  const theta0 = new Float64Array(C * M + C);
  if (options.start) {
    const { size, weight: w, bias } = options.start;
    for (let c = 0; c < C; c++) theta0.set(w.subarray(c * size, c * size + Math.min(size, M)), c * M);
    theta0.set(bias, C * M);
  }
  const { x: theta, ...result } = minimizeLbfgs(objective, theta0, { precondition, ...options });
  return { head: { size: M, weight: Float32Array.from(theta.subarray(0, C * M)), bias: Float32Array.from(theta.subarray(C * M)) }, ...result };
}

/** Labelled embeddings: `n × d` values, row-major, and a class index per row. */
export interface LabelledEmbeddings {
  n: number;
  dim: number;
  embeddings: Float32Array;
  labels: ArrayLike<number>;
}

export interface HeadsSpec {
  kind: HeadKind;
  nesting: readonly number[];
  normalization: Normalization;
  classes: number;
  /** Weight of the L2 penalty on the weights (see SoftmaxProblem). */
  l2: number;
}

/** What `fitHeads` gives: the heads as the cascade takes them, and each solve's outcome (MRL: one per size; MRL-E: one per stage added). */
export interface FittedHeads {
  heads: LinearHead[];
  solves: (Omit<HeadFit, 'head'> & { size: number })[];
}

/** L-BFGS's stopping rule for heads: the loss moving less than 1e-5 over 10 iterations, at most 1000 of them. */
const HEAD_SOLVER: LbfgsOptions = { gradientTolerance: 1e-6, valueTolerance: 1e-5, maxIterations: 1000 };

/**
 * Fits a bundle's heads on frozen embeddings, each prefix normalised as the cascade normalises it.
 * MRL: one head per nesting size on its prefix. MRL-E: one head of the full size whose stage m
 * uses its first m columns, all stages' losses averaged. Both are solved small to large, each
 * solve starting from the one before (the smaller head's weights, the new columns 0): successive
 * prefixes' optima are close, so the larger sizes take tens of iterations where a cold start takes hundreds.
 */
export function fitHeads(data: LabelledEmbeddings, spec: HeadsSpec, options: LbfgsOptions = {}): FittedHeads {
  const { n, dim, embeddings, labels } = data;
  const prefixes = Array.from({ length: n }, (_, i) => prefixNormalizer(embeddings.subarray(i * dim, (i + 1) * dim), spec.normalization));
  const stage = (m: number): FitStage => {
    const inputs = new Float32Array(n * m);
    prefixes.forEach((prefix, i) => inputs.set(prefix(m), i * m));
    return { size: m, inputs };
  };
  const heads: LinearHead[] = [];
  const solves: FittedHeads['solves'] = [];
  const stages: FitStage[] = [];
  let start: LinearHead | undefined;
  for (const m of spec.nesting) {
    const problem = { classes: spec.classes, labels, l2: spec.l2, stages: spec.kind === 'mrl' ? [stage(m)] : [...stages, stage(m)] };
    if (spec.kind === 'mrl-e') stages.push(problem.stages.at(-1)!);
    const { head, ...solve } = fitSoftmaxHead(problem, { ...HEAD_SOLVER, ...options, start });
    if (spec.kind === 'mrl') heads.push(head);
    solves.push({ size: m, ...solve });
    start = head;
  }
  return { heads: spec.kind === 'mrl' ? heads : [start!], solves };
}

/**
 * A validation split, stratified by label and seeded: per class, `fraction` of its inputs
 * (rounded) chosen by a seeded shuffle. Both parts are returned in input order.
 */
export function stratifiedSplit(labels: ArrayLike<number>, fraction: number, seed: number): { train: number[]; validation: number[] } {
  let state = seed >>> 0;
  // mulberry32: a small, well-mixed 32-bit generator, the same on every platform.
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const list = byClass.get(labels[i]!) ?? [];
    list.push(i);
    byClass.set(labels[i]!, list);
  }
  const inValidation = new Uint8Array(labels.length);
  for (const cls of [...byClass.keys()].sort((a, b) => a - b)) {
    const list = byClass.get(cls)!;
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [list[i], list[j]] = [list[j]!, list[i]!];
    }
    for (const i of list.slice(0, Math.round(fraction * list.length))) inValidation[i] = 1;
  }
  const train: number[] = [];
  const validation: number[] = [];
  inValidation.forEach((v, i) => (v ? validation : train).push(i));
  return { train, validation };
}
