import type { Policy } from '../matryoshka/cascade.js';
import { type LogitTable, replay, stageAccuracies, stageTable } from '../matryoshka/calibration.js';
import type { ExitSettings } from '../services/cascade/thresholds.js';
import type { Bundle } from '../matryoshka/bundle.js';

export interface Evaluation {
  model: string;
  split: string;
  count: number;
  policy: Policy;
  max_dimension: number;
  thresholds: number[];
  temperatures: number[];
  accuracy: number;
  avg_dimension: number;
  full_dimension_accuracy: number;
  /** Share of inputs whose cascade class differs from the full size's. */
  disagreement: number;
  per_dimension_accuracy: Record<string, number>;
  exits: Record<string, number>;
  /** Per stage, the accuracy of the inputs that exit there (absent where none do). */
  exit_accuracy: Record<string, number>;
  /** Per class (by label), the average dimension its inputs used. */
  class_avg_dimension: Record<string, number>;
}

/** The cascade on a labelled logit table, replayed with the service's exit rule. */
export function evaluateTable(
  bundle: Bundle,
  table: LogitTable,
  split: string,
  options: ExitSettings & { policy: Policy; maxDimension: number },
): Evaluation {
  const cap = options.maxDimension || bundle.embeddingDim;
  const lastStage = bundle.nesting.indexOf(cap);
  if (lastStage < 0) throw new Error(`--max-dimension ${cap} is not one of the nesting sizes ${bundle.nesting.join(', ')}`);
  const scored = stageTable(table, options.temperatures);
  const r = replay(scored, options.thresholds, { lastStage, policy: options.policy, perSample: true });
  const perSize = stageAccuracies(scored);
  const classSum = new Float64Array(bundle.labels.length);
  const classCount = new Float64Array(bundle.labels.length);
  for (let i = 0; i < scored.n; i++) {
    classSum[scored.labels[i]!]! += bundle.nesting[r.stageOf![i]!]!;
    classCount[scored.labels[i]!]!++;
  }
  return {
    model: bundle.id,
    split,
    count: table.n,
    policy: options.policy,
    max_dimension: cap,
    thresholds: [...options.thresholds],
    temperatures: [...options.temperatures],
    accuracy: r.correct / table.n,
    avg_dimension: r.dimensionSum / table.n,
    full_dimension_accuracy: perSize.at(-1)!,
    disagreement: r.disagreements / table.n,
    per_dimension_accuracy: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), perSize[k]!])),
    exits: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), r.exits[k]!])),
    exit_accuracy: Object.fromEntries(bundle.nesting.flatMap((m, k) => (r.exits[k]! > 0 ? [[String(m), r.exitCorrect[k]! / r.exits[k]!]] : []))),
    class_avg_dimension: Object.fromEntries(bundle.labels.flatMap((l, c) => (classCount[c]! > 0 ? [[l, classSum[c]! / classCount[c]!]] : []))),
  };
}

export function formatEvaluation(e: Evaluation): string {
  const pct = (x: number | undefined) => (x === undefined ? '—' : `${(100 * x).toFixed(2)}%`);
  return [
    `${e.model} on the ${e.split} split (${e.count} images), policy ${e.policy}${e.max_dimension < Number(Object.keys(e.exits).at(-1)) ? `, capped at ${e.max_dimension}` : ''}`,
    `cascade accuracy ${pct(e.accuracy)} at average dimension ${e.avg_dimension.toFixed(2)}; full size ${pct(e.full_dimension_accuracy)}; ` +
      `disagreement with the full size ${pct(e.disagreement)}`,
    '',
    '| dimension | fixed-size accuracy | cascade exits | accuracy of those exits |',
    '| ---: | ---: | ---: | ---: |',
    ...Object.keys(e.per_dimension_accuracy).map((m) => `| ${m} | ${pct(e.per_dimension_accuracy[m]!)} | ${e.exits[m]} | ${pct(e.exit_accuracy[m])} |`),
  ].join('\n');
}
