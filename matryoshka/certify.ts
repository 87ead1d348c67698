import { binomialCdf, binomialUpperBound } from './binomial.js';
import { type LogitTable, minDimensionPath, replay, selectRows, selectStageRows, type StageTable, stageTable } from './calibration.js';
import { fitTemperatures } from './temperature.js';

/**
 * The risk a certificate bounds. `disagreement`: the share of inputs whose cascade class differs
 * from the full size's (needs no labels). `error`: the cascade's error rate minus the full size's.
 */
export type Risk = 'disagreement' | 'error';

/** The record `model.json` and thresholds files keep as `calibration.certificate`. */
export interface Certificate {
  risk: Risk;
  epsilon: number;
  delta: number;
  /** Inputs the tests ran on (the certification part). */
  n: number;
  /** Inputs the temperatures and the candidate sequence were learned on (the other part). */
  n_learn: number;
  method: string;
  /** Exact 1 − δ upper confidence bound on the chosen thresholds' risk (at most ε). */
  bound: number;
  /** The chosen thresholds' risk on the certification part. */
  empirical_risk: number;
  p_value: number;
  /** Candidates certified before the fixed sequence stopped, of `candidates` tested (the last of which failed, unless the path ran out). */
  certified: number;
  candidates: number;
}

export interface CertifyOptions {
  risk: Risk;
  epsilon: number;
  delta: number;
  /** Temperatures to use as they are; default: fitted on the learning part (needs labels). */
  temperatures?: readonly number[];
}

export interface CertifiedCalibration {
  thresholds: number[];
  temperatures: number[];
  certificate: Certificate;
  /** On the certification part, under the chosen thresholds. */
  avgDimension: number;
  exits: number[];
}

export const METHOD =
  'Learn then Test (Angelopoulos et al. 2021), fixed-sequence testing with exact binomial p-values: ' +
  'temperatures and a sequence of threshold sets (the cheapest with 0, 1, 2, ... mistakes) learned on 2 of every 5 inputs; ' +
  'each set tested in turn on the other 3, stopping at the first that fails';

/**
 * `steps` threshold sets from just after `from` to `to`, each stage's 1 − t moving geometrically
 * (confidence thresholds matter most near 1); from a threshold of 1, starting at 10⁻⁴ of the way.
 */
function between(from: readonly number[], to: readonly number[], steps: number): number[][] {
  return Array.from({ length: steps }, (_, s) => {
    const w = (s + 1) / steps;
    return to.map((b, k) => {
      const ub = 1 - b;
      if (ub <= 0) return 1;
      const ua = Math.max(1 - from[k]!, ub * 1e-4);
      return w === 1 ? b : 1 - ua ** (1 - w) * ub ** w;
    });
  });
}

/** The fewest inputs tested on which even a cascade without a mistake passes at ε and δ: (1 − ε)^n ≤ δ. */
export function fewestTested({ epsilon, delta }: Pick<Certificate, 'epsilon' | 'delta'>): number {
  return Math.ceil(Math.log(delta) / Math.log1p(-epsilon));
}

/** The fewest inputs whose certification part (see learnCertifySplit) holds fewestTested. */
export function fewestInputs(terms: Pick<Certificate, 'epsilon' | 'delta'>): number {
  const tested = fewestTested(terms);
  // Each five inputs give three to the tests, from their third on.
  const rest = tested % 3;
  return Math.floor(tested / 3) * 5 + (rest ? 2 + rest : 0);
}

/** Splits inputs 2 : 3 by position, every fifth pattern, so both parts cover the whole sample alike. */
export function learnCertifySplit(n: number): { learn: number[]; certify: number[] } {
  const learn: number[] = [];
  const certify: number[] = [];
  for (let i = 0; i < n; i++) (i % 5 < 2 ? learn : certify).push(i);
  return { learn, certify };
}

/** The rows of a labelled stage table on which the full size (the last stage) is right. */
function fullSizeRight(table: StageTable): number[] {
  const K = table.dims.length;
  return Array.from({ length: table.n }, (_, i) => i).filter((i) => table.classIndex[i * K + K - 1] === table.labels[i]);
}

function checkRisk({ epsilon, delta }: { epsilon: number; delta: number }): void {
  if (!(epsilon > 0 && epsilon < 1)) throw new Error(`epsilon must be in (0, 1), got ${epsilon}`);
  if (!(delta > 0 && delta < 1)) throw new Error(`delta must be in (0, 1), got ${delta}`);
}

/**
 * Thresholds certified by Learn then Test: with probability at least 1 − δ over the sample, the
 * cascade's risk on the distribution it came from is at most ε; among the certified sets, the one
 * with the smallest average dimension. Temperatures are fitted on the learning part unless given.
 *
 * Why this procedure: the losses are 0/1 (an input disagrees with the full size, or it does not),
 * so the exact binomial tail is a valid p-value for H0: risk > ε, tighter than Hoeffding-Bentkus,
 * which only assumes boundedness. For `error`, the loss "wrong where the full size is right" is 0/1
 * and bounds the error difference from above, so its test is valid (and conservative) for it.
 * Fixed-sequence testing controls the family-wise error at δ without a Bonferroni split, provided
 * the order is fixed before the tested inputs are seen: the sequence is learned on a disjoint part.
 * Threshold vectors are multi-dimensional, so the sequence is a path through them learned from
 * data: the cheapest cascades on the learning part that make 0, 1, 2, … more mistakes than the
 * full size, so that risk grows along it and the first failure comes late.
 */
export function certifyThresholds(table: LogitTable, options: CertifyOptions): CertifiedCalibration {
  checkRisk(options);
  if (options.risk === 'error' && !table.labels) throw new Error('the error risk needs labelled inputs; the disagreement risk does not');
  const split = learnCertifySplit(table.n);
  const learn = selectRows(table, split.learn);
  const test = selectRows(table, split.certify);
  const temperatures = options.temperatures ? [...options.temperatures] : fitTemperatures(learn);
  const reference = options.risk === 'disagreement' ? 'full-size' : 'labels';
  let learnTable = stageTable(learn, temperatures, reference);
  // For the error risk the path is learned where the full size is right: there a wrong answer
  // is exactly the loss tested (elsewhere no answer can harm), so "j mistakes" means j losses.
  if (options.risk === 'error') learnTable = selectStageRows(learnTable, fullSizeRight(learnTable));
  return { temperatures, ...learnThenTest(learnTable, stageTable(test, temperatures, reference), options) };
}

/**
 * The same for inputs already scored at fixed temperatures (a stage table whose labels are the
 * full size's classes, as shadow samples are): the disagreement risk only.
 */
export function certifyDisagreement(table: StageTable, options: Omit<CertifyOptions, 'risk' | 'temperatures'>): Omit<CertifiedCalibration, 'temperatures'> {
  checkRisk(options);
  const split = learnCertifySplit(table.n);
  return learnThenTest(selectStageRows(table, split.learn), selectStageRows(table, split.certify), { ...options, risk: 'disagreement' });
}

function learnThenTest(learnTable: StageTable, testTable: StageTable, options: Pick<CertifyOptions, 'risk' | 'epsilon' | 'delta'>): Omit<CertifiedCalibration, 'temperatures'> {
  const { risk, epsilon, delta } = options;
  // First the most cautious cascade (every threshold 1: only certain answers exit early), then
  // the learned path, with small steps between its sets. The path is learned from the learning
  // part alone, so it may be computed as the tests go: where they stop decides only how far.
  const cautious = new Array<number>(learnTable.dims.length - 1).fill(1);
  const n = testTable.n;
  let chosen: { thresholds: number[]; losses: number; p: number; dimensionSum: number; exits: number[] } | undefined;
  let certified = 0;
  let candidates = 0;
  let previous: number[] | undefined;
  const test = (thresholds: number[]): boolean => {
    if (previous && thresholds.every((v, k) => v === previous![k])) return true; // the same set again adds nothing
    previous = thresholds;
    candidates++;
    const r = replay(testTable, thresholds);
    const losses = risk === 'disagreement' ? r.disagreements : r.harms;
    const p = binomialCdf(losses, n, epsilon);
    if (p > delta) return false;
    certified++;
    if (!chosen || r.dimensionSum < chosen.dimensionSum) chosen = { thresholds, losses, p, dimensionSum: r.dimensionSum, exits: r.exits };
    return true;
  };
  let last = cautious;
  let steps = 16;
  search: if (test(cautious))
    for (const t of minDimensionPath(learnTable)) {
      for (const step of between(last, t, steps)) if (!test(step)) break search;
      [last, steps] = [t, 4];
    }
  if (!chosen)
    throw new Error(
      `no thresholds could be certified at ${risk} ≤ ${epsilon} with δ = ${delta} on ${n} inputs: ` +
        'even the most cautious cascade (every threshold 1) fails the test; give more inputs or a larger epsilon',
    );
  return {
    thresholds: chosen.thresholds,
    avgDimension: chosen.dimensionSum / n,
    exits: chosen.exits,
    certificate: {
      risk,
      epsilon,
      delta,
      n,
      n_learn: learnTable.n,
      method: METHOD,
      bound: binomialUpperBound(chosen.losses, n, delta),
      empirical_risk: chosen.losses / n,
      p_value: chosen.p,
      certified,
      candidates,
    },
  };
}
