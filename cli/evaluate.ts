import type { Policy } from '../services/cascade/cascade.js';
import { replay, stageAccuracies, type StageTable } from '../services/cascade/calibration.js';
import type { Bundle } from '../services/common/bundle.js';

export interface Evaluation {
  model: string;
  split: string;
  count: number;
  policy: Policy;
  max_dimension: number;
  thresholds: number[];
  accuracy: number;
  avg_dimension: number;
  full_dimension_accuracy: number;
  per_dimension_accuracy: Record<string, number>;
  exits: Record<string, number>;
}

/** The cascade on a labelled stage table, replayed with the service's exit rule. */
export function evaluateTable(
  bundle: Bundle,
  table: StageTable,
  split: string,
  options: { thresholds: readonly number[]; policy: Policy; maxDimension: number },
): Evaluation {
  const cap = options.maxDimension || bundle.embeddingDim;
  const lastStage = bundle.nesting.indexOf(cap);
  if (lastStage < 0) throw new Error(`--max-dimension ${cap} is not one of the nesting sizes ${bundle.nesting.join(', ')}`);
  const r = replay(table, options.thresholds, { lastStage, policy: options.policy });
  const perSize = stageAccuracies(table);
  return {
    model: bundle.id,
    split,
    count: table.n,
    policy: options.policy,
    max_dimension: cap,
    thresholds: [...options.thresholds],
    accuracy: r.correct / table.n,
    avg_dimension: r.dimensionSum / table.n,
    full_dimension_accuracy: perSize.at(-1)!,
    per_dimension_accuracy: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), perSize[k]!])),
    exits: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), r.exits[k]!])),
  };
}

export function formatEvaluation(e: Evaluation): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  return [
    `${e.model} on the ${e.split} split (${e.count} images), policy ${e.policy}${e.max_dimension < Number(Object.keys(e.exits).at(-1)) ? `, capped at ${e.max_dimension}` : ''}`,
    `cascade accuracy ${pct(e.accuracy)} at average dimension ${e.avg_dimension.toFixed(2)}; full size ${pct(e.full_dimension_accuracy)}`,
    '',
    '| dimension | fixed-size accuracy | cascade exits |',
    '| ---: | ---: | ---: |',
    ...Object.keys(e.per_dimension_accuracy).map((m) => `| ${m} | ${pct(e.per_dimension_accuracy[m]!)} | ${e.exits[m]} |`),
  ].join('\n');
}
