import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Objective, type SearchResult, searchThresholds, stageAccuracies, type StageTable } from '../services/cascade/calibration.js';
import type { Bundle } from '../services/common/bundle.js';
import { loadSplit } from './fashionMnist.js';
import { buildStageTable } from './stageTable.js';

export interface CalibrateOptions {
  /** Accuracy the cascade must reach on the validation split (fraction). Default: full-size accuracy − tolerance. */
  targetAccuracy?: number;
  /** Accuracy (fraction) the default target gives up against the full size. */
  tolerance: number;
  /** The dual: the best accuracy with an average dimension at most this. */
  maxAvgDim?: number;
  /** Thresholds file to write; default: the bundle's model.json. */
  out?: string;
  dryRun: boolean;
  json: boolean;
}

export interface Calibration {
  thresholds: number[];
  calibration: {
    model: string;
    split: 'validation';
    count: number;
    objective: 'min-dimension' | 'max-accuracy';
    target_accuracy?: number;
    tolerance?: number;
    max_avg_dimension?: number;
    achieved_accuracy: number;
    avg_dimension: number;
    full_dimension_accuracy: number;
    exits: Record<string, number>;
    date: string;
  };
}

/** Searches thresholds on a stage table for the options' objective and returns them with their record. */
export function calibrateTable(
  bundle: Bundle,
  table: StageTable,
  options: Pick<CalibrateOptions, 'targetAccuracy' | 'tolerance' | 'maxAvgDim'>,
  starts: number[][] = [],
): Calibration {
  const full = stageAccuracies(table).at(-1)!;
  let objective: Objective;
  let target: Partial<Calibration['calibration']>;
  if (options.maxAvgDim !== undefined) {
    objective = { kind: 'max-accuracy', maxDimensionSum: options.maxAvgDim * table.n };
    target = { objective: 'max-accuracy', max_avg_dimension: options.maxAvgDim };
  } else {
    const accuracy = options.targetAccuracy ?? full - options.tolerance;
    // The fewest right answers that reach the target (a hair of slack for float rounding).
    objective = { kind: 'min-dimension', minCorrect: Math.ceil(accuracy * table.n - 1e-9) };
    target = { objective: 'min-dimension', target_accuracy: accuracy, ...(options.targetAccuracy === undefined ? { tolerance: options.tolerance } : {}) };
  }
  const found: SearchResult = searchThresholds(table, objective, { starts });
  return {
    thresholds: found.thresholds,
    calibration: {
      model: bundle.id,
      split: 'validation',
      count: table.n,
      objective: target.objective!,
      ...target,
      achieved_accuracy: found.accuracy,
      avg_dimension: found.avgDimension,
      full_dimension_accuracy: full,
      exits: Object.fromEntries(table.dims.map((m, k) => [String(m), found.exits[k]!])),
      date: new Date().toISOString(),
    },
  };
}

/** `mrl calibrate`: thresholds learned on the validation split, written where the cascade reads them. */
export async function calibrateCommand(bundle: Bundle, options: CalibrateOptions): Promise<number> {
  const table = await buildStageTable(bundle, await loadSplit('validation'), 'embedding the validation split', options.json);
  const result = calibrateTable(bundle, table, options);
  const c = result.calibration;
  if (options.json) console.log(JSON.stringify(result));
  else {
    console.log(`validation split: ${c.count} images; full-size (${bundle.embeddingDim}-d) accuracy ${(100 * c.full_dimension_accuracy).toFixed(2)}%`);
    console.log(
      c.objective === 'min-dimension'
        ? `target: accuracy >= ${(100 * c.target_accuracy!).toFixed(2)}%, smallest average dimension`
        : `target: average dimension <= ${c.max_avg_dimension}, best accuracy`,
    );
    console.log(`achieved: accuracy ${(100 * c.achieved_accuracy).toFixed(2)}% at average dimension ${c.avg_dimension.toFixed(2)}`);
    console.log(`thresholds: ${result.thresholds.map((t, k) => `${bundle.nesting[k]}-d ${t.toFixed(4)}`).join(', ')}`);
    console.log(`exits: ${Object.entries(c.exits).map(([m, n]) => `${m}-d ${n}`).join(', ')}`);
  }
  if (options.dryRun) return 0;
  if (options.out) {
    await writeFile(options.out, JSON.stringify(result, null, 2) + '\n');
  } else {
    const path = join(bundle.dir, 'model.json');
    const meta = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...meta, thresholds: result.thresholds, calibration: result.calibration }, null, 2) + '\n');
  }
  if (!options.json) console.log(`wrote ${options.out ?? join(bundle.dir, 'model.json')}`);
  return 0;
}
