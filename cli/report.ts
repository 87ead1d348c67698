import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StageTable } from '../services/cascade/calibration.js';
import type { Bundle } from '../services/common/bundle.js';
import { calibrateTable } from './calibrate.js';
import { evaluateTable } from './evaluate.js';
import { loadSplit } from './fashionMnist.js';
import { paretoSvg } from './paretoSvg.js';
import { buildStageTable } from './stageTable.js';

/** Accuracy the calibration targets give up against the full size on validation (fractions). */
const TOLERANCES = [0, 0.001, 0.002, 0.005, 0.01, 0.02];
const START = '<!-- mrl report: start -->';
const END = '<!-- mrl report: end -->';

interface CascadePoint {
  tolerance: number;
  thresholds: number[];
  validation: { accuracy: number; avg_dimension: number };
  test: { accuracy: number; avg_dimension: number };
}

const pct = (a: number | undefined) => (a === undefined ? '—' : (100 * a).toFixed(2));

/** Where the bundle's thresholds came from, as its calibration record says. */
function thresholdsOrigin(bundle: Bundle): string {
  const record = bundle.meta.calibration as { method?: string; date?: string } | undefined;
  return record?.method === 'initial'
    ? 'the exporter\'s initial ones: run `npx mrl calibrate`, then this report again'
    : `from \`npx mrl calibrate\`${record?.date ? ` on ${record.date.slice(0, 10)}` : ''}`;
}

function markdown(bundle: Bundle, points: CascadePoint[], fixed: Record<string, number>, trained: Record<string, Record<string, number>>, svgName: string) {
  const d = bundle.embeddingDim;
  const full = fixed[String(d)]!;
  const kind = bundle.headKind.toUpperCase();
  const other = bundle.headKind === 'mrl' ? 'mrl-e' : 'mrl';
  const head = points[0]!;
  const rows = [
    '| model | dimension | test accuracy (%) |',
    '| --- | ---: | ---: |',
    ...points.map(
      (p) =>
        `| ${kind} cascade, calibrated for full-size accuracy − ${(100 * p.tolerance).toFixed(1)} pt on validation | ${p.test.avg_dimension.toFixed(2)} (average) | ${pct(p.test.accuracy)} |`,
    ),
    ...bundle.nesting.map((m) => `| ${kind}, fixed size | ${m} | ${pct(fixed[String(m)])} |`),
    ...bundle.nesting.map((m) => `| ${other.toUpperCase()} (its own encoder), fixed size | ${m} | ${pct(trained[other]?.[String(m)])} |`).filter((r) => !r.endsWith('| — |')),
    ...bundle.nesting.map((m) => `| fixed-feature baseline | ${m} | ${pct(trained[`ff-${m}`]?.[String(m)])} |`).filter((r) => !r.endsWith('| — |')),
  ];
  return [
    START,
    `### Accuracy against expected dimension (${bundle.id}, 10,000 test images)`,
    '',
    `Headline: calibrated on the validation split for the full size's accuracy, the cascade answers the test split with an`,
    `average of **${head.test.avg_dimension.toFixed(2)} dimensions** at ${pct(head.test.accuracy)}% accuracy, against ${pct(full)}%`,
    `for the ${d}-d representation: **${(d / head.test.avg_dimension).toFixed(1)}× smaller** (accuracy ${((head.test.accuracy - full) * 100).toFixed(2)} points).`,
    '',
    ...rows,
    '',
    `The bundle serves the thresholds in its model.json (${thresholdsOrigin(bundle)}; the ${d}-d stage always answers): ${bundle.thresholds.map((t, i) => `${bundle.nesting[i]}-d ${t.toFixed(4)}`).join(', ')}.`,
    '',
    `![accuracy against dimension](${svgName})`,
    '',
    'Regenerate with `npx mrl report` (it calibrates on validation and evaluates on test; `npx mrl eval --json` gives the same cascade numbers for the bundle\'s thresholds).',
    END,
  ].join('\n');
}

async function replaceSection(path: string, section: string): Promise<void> {
  const text = await readFile(path, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  const next = a >= 0 && b > a ? text.slice(0, a) + section + text.slice(b + END.length) : `${text.trimEnd()}\n\n${section}\n`;
  await writeFile(path, next);
}

/**
 * `mrl report`: calibrates at several tolerances on validation, evaluates each on test, and writes
 * the table and an SVG plot into the model card, the README and `report.json`.
 */
export async function reportCommand(bundle: Bundle, readme: string | undefined, json: boolean): Promise<number> {
  const val: StageTable = await buildStageTable(bundle, await loadSplit('validation'), 'embedding the validation split', json);
  const test: StageTable = await buildStageTable(bundle, await loadSplit('test'), 'embedding the test split', json);
  const points: CascadePoint[] = [];
  for (const tolerance of TOLERANCES) {
    // Each stricter target's thresholds also meet the looser ones: a start that keeps the curve monotone.
    const cal = calibrateTable(bundle, val, { tolerance }, points.map((p) => p.thresholds));
    const e = evaluateTable(bundle, test, 'test', { thresholds: cal.thresholds, policy: 'cascade', maxDimension: 0 });
    points.push({
      tolerance,
      thresholds: cal.thresholds,
      validation: { accuracy: cal.calibration.achieved_accuracy, avg_dimension: cal.calibration.avg_dimension },
      test: { accuracy: e.accuracy, avg_dimension: e.avg_dimension },
    });
  }
  const fixed = evaluateTable(bundle, test, 'test', { thresholds: bundle.thresholds, policy: 'full', maxDimension: 0 }).per_dimension_accuracy;
  const trained = ((bundle.meta.metrics as { test_accuracy?: Record<string, Record<string, number>> } | undefined)?.test_accuracy ?? {});
  const svgName = 'pareto.svg';
  const kind = bundle.headKind.toUpperCase();
  const other = bundle.headKind === 'mrl' ? 'mrl-e' : 'mrl';
  const series = [
    { name: `${kind} cascade`, colour: '#d62728', line: true, points: points.map((p) => ({ dimension: p.test.avg_dimension, accuracy: p.test.accuracy, label: `tolerance ${p.tolerance}` })) },
    { name: `${kind} fixed size`, colour: '#1f77b4', line: true, points: bundle.nesting.map((m) => ({ dimension: m, accuracy: fixed[String(m)]! })) },
    ...(trained[other]
      ? [{ name: `${other.toUpperCase()} fixed size`, colour: '#2ca02c', line: true, points: bundle.nesting.map((m) => ({ dimension: m, accuracy: trained[other]![String(m)]! })) }]
      : []),
    {
      name: 'fixed-feature baseline',
      colour: '#7f7f7f',
      line: false,
      points: bundle.nesting.filter((m) => trained[`ff-${m}`]).map((m) => ({ dimension: m, accuracy: trained[`ff-${m}`]![String(m)]! })),
    },
  ].filter((s) => s.points.length > 0);
  await writeFile(join(bundle.dir, svgName), paretoSvg(`${bundle.name}: accuracy against dimension`, series, bundle.nesting));
  const report = { model: bundle.id, cascade: points, fixed_mrl: fixed, trained, date: new Date().toISOString() };
  await writeFile(join(bundle.dir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  await replaceSection(join(bundle.dir, 'README.md'), markdown(bundle, points, fixed, trained, svgName));
  if (readme) await replaceSection(readme, markdown(bundle, points, fixed, trained, `models/${bundle.name}/${svgName}`));
  console.log(json ? JSON.stringify(report) : markdown(bundle, points, fixed, trained, svgName));
  return 0;
}
