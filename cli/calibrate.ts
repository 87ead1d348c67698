import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type LogitTable,
  type Objective,
  replay,
  searchThresholds,
  selectRows,
  stageAccuracies,
  stageTable,
} from '../matryoshka/calibration.js';
import { type Certificate, certifyThresholds, learnCertifySplit, type Risk } from '../matryoshka/certify.js';
import { expectedCalibrationErrors } from '../matryoshka/temperature.js';
import type { ThresholdsFile } from '../services/cascade/thresholds.js';
import type { Bundle, BundleInfo } from '../matryoshka/bundle.js';
import { loadSplit } from './fashionMnist.js';
import { buildLogitTable } from './logitTable.js';

/** Certified calibration: with probability ≥ 1 − delta over the validation sample, risk ≤ epsilon. */
export interface CertifiedTarget {
  kind: 'certified';
  risk: Risk;
  epsilon: number;
  delta: number;
}

/** The uncertified accuracy-target search: it holds on validation, with no statement beyond it. */
export interface AccuracyTarget {
  kind: 'accuracy';
  /** Accuracy to reach on validation (fraction). Default: full-size accuracy − tolerance. */
  targetAccuracy?: number;
  /** Accuracy (fraction) the default target gives up against the full size. */
  tolerance: number;
  /** The dual: the best accuracy with an average dimension at most this. */
  maxAvgDim?: number;
}

export type CalibrationTarget = CertifiedTarget | AccuracyTarget;

export interface CalibrateOptions {
  target: CalibrationTarget;
  /** Thresholds file to write; default: the bundle's model.json. */
  out?: string;
  dryRun: boolean;
  json: boolean;
}

export interface CalibrationRecord {
  model: string;
  split: 'validation';
  count: number;
  method: string;
  /** Present when the thresholds are certified. */
  certificate?: Certificate;
  objective?: 'min-dimension' | 'max-accuracy';
  target_accuracy?: number;
  tolerance?: number;
  max_avg_dimension?: number;
  /** On the inputs the choice was scored on (certified: the certification part). */
  accuracy: number;
  avg_dimension: number;
  full_dimension_accuracy: number;
  exits: Record<string, number>;
  /** Each stage's 15-bin expected calibration error there, at temperature 1 and at the fitted temperatures. */
  ece?: { before: number[]; after: number[] };
  date: string;
}

export interface Calibration {
  thresholds: number[];
  temperatures: number[];
  calibration: CalibrationRecord;
}

/** Certified thresholds and temperatures for a validation table, with their record. */
export function calibrateCertified(bundle: BundleInfo, table: LogitTable, target: CertifiedTarget): Calibration {
  const found = certifyThresholds(table, target);
  const tested = selectRows(table, learnCertifySplit(table.n).certify);
  const record = {
    method: found.certificate.method,
    certificate: found.certificate,
    ece: tested.labels
      ? { before: expectedCalibrationErrors(tested, bundle.nesting.map(() => 1)), after: expectedCalibrationErrors(tested, found.temperatures) }
      : undefined,
  };
  return withRecord(bundle, tested, found.thresholds, found.temperatures, table.n, record);
}

/** The uncertified accuracy-target search over the whole validation table, at the bundle's temperatures. */
export function calibrateAccuracy(bundle: Bundle, table: LogitTable, target: AccuracyTarget, starts: number[][] = []): Calibration {
  const scored = stageTable(table, bundle.temperatures);
  const full = stageAccuracies(scored).at(-1)!;
  let objective: Objective;
  let record: Partial<CalibrationRecord>;
  if (target.maxAvgDim !== undefined) {
    objective = { kind: 'max-accuracy', maxDimensionSum: target.maxAvgDim * table.n };
    record = { objective: 'max-accuracy', max_avg_dimension: target.maxAvgDim };
  } else {
    const accuracy = target.targetAccuracy ?? full - target.tolerance;
    // The fewest right answers that reach the target (a hair of slack for float rounding).
    objective = { kind: 'min-dimension', minCorrect: Math.ceil(accuracy * table.n - 1e-9) };
    record = { objective: 'min-dimension', target_accuracy: accuracy, ...(target.targetAccuracy === undefined ? { tolerance: target.tolerance } : {}) };
  }
  const found = searchThresholds(scored, objective, { starts });
  return withRecord(bundle, table, found.thresholds, bundle.temperatures, table.n, {
    method: 'accuracy-target search on validation (uncertified: no guarantee beyond the validation split)',
    ...record,
  });
}

/** The calibration record of thresholds, scored on `scoredOn` (labelled). */
function withRecord(
  bundle: BundleInfo,
  scoredOn: LogitTable,
  thresholds: number[],
  temperatures: number[],
  count: number,
  fields: Partial<CalibrationRecord> & { method: string },
): Calibration {
  const scored = stageTable(scoredOn, temperatures);
  const r = replay(scored, thresholds);
  return {
    thresholds,
    temperatures,
    calibration: {
      model: bundle.id,
      split: 'validation',
      count,
      ...fields,
      accuracy: r.correct / scored.n,
      avg_dimension: r.dimensionSum / scored.n,
      full_dimension_accuracy: stageAccuracies(scored).at(-1)!,
      exits: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), r.exits[k]!])),
      date: new Date().toISOString(),
    },
  };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** What a calibration found, a line per fact, as `mrl calibrate` and `mrl fit` print it. */
export function describeCalibration(bundle: BundleInfo, result: Calibration): string[] {
  const c = result.calibration;
  const cert = c.certificate;
  return [
    `validation split: ${c.count} images; full-size (${bundle.embeddingDim}-d) accuracy ${pct(c.full_dimension_accuracy)}`,
    cert
      ? `certified: with probability >= ${1 - cert.delta}, ${cert.risk} <= ${cert.epsilon} (bound ${cert.bound.toFixed(5)}, ` +
        `${cert.risk} ${cert.empirical_risk.toFixed(5)} on the ${cert.n} tested images; ${cert.certified} of ${cert.candidates} candidates certified)`
      : `UNCERTIFIED: ${c.objective === 'min-dimension' ? `accuracy >= ${pct(c.target_accuracy!)}` : `average dimension <= ${c.max_avg_dimension}`} on validation only`,
    `achieved: accuracy ${pct(c.accuracy)} at average dimension ${c.avg_dimension.toFixed(2)}`,
    `thresholds: ${result.thresholds.map((t, k) => `${bundle.nesting[k]}-d ${t.toFixed(4)}`).join(', ')}`,
    `temperatures: ${result.temperatures.map((t, k) => `${bundle.nesting[k]}-d ${t.toFixed(3)}`).join(', ')}`,
    ...(c.ece ? [`ECE (15 bins) before -> after: ${c.ece.before.map((b, k) => `${bundle.nesting[k]}-d ${b.toFixed(4)} -> ${c.ece!.after[k]!.toFixed(4)}`).join(', ')}`] : []),
    `exits: ${Object.entries(c.exits).map(([m, n]) => `${m}-d ${n}`).join(', ')}`,
  ];
}

/** `mrl calibrate`: thresholds (and temperatures) learned on the validation split, written where the cascade reads them. */
export async function calibrateCommand(bundle: Bundle, options: CalibrateOptions): Promise<number> {
  const table = await buildLogitTable(bundle, await loadSplit('validation'), 'embedding the validation split', options.json);
  const result = options.target.kind === 'certified' ? calibrateCertified(bundle, table, options.target) : calibrateAccuracy(bundle, table, options.target);
  if (options.json) console.log(JSON.stringify(result));
  else console.log(describeCalibration(bundle, result).join('\n'));
  if (options.dryRun) return 0;
  if (options.out) {
    const file: ThresholdsFile = { model: bundle.id, ...result };
    await writeFile(options.out, JSON.stringify(file, null, 2) + '\n');
  } else {
    const path = join(bundle.dir, 'model.json');
    const meta = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...meta, ...result }, null, 2) + '\n');
  }
  if (!options.json) console.log(`wrote ${options.out ?? join(bundle.dir, 'model.json')}`);
  return 0;
}
