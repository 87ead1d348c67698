import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogitTable } from '../matryoshka/calibration.js';
import { mostPassingLosses } from '../matryoshka/binomial.js';
import { expectedCalibrationErrors } from '../matryoshka/temperature.js';
import type { Bundle } from '../matryoshka/bundle.js';
import { calibrateCertified } from './calibrate.js';
import { type Evaluation, evaluateTable } from './evaluate.js';
import { loadSplit } from './fashionMnist.js';
import { buildLogitTable } from './logitTable.js';
import { paretoSvg } from './paretoSvg.js';

/** Disagreement bounds the report certifies cascades at (δ fixed below). */
const EPSILONS = [0.0025, 0.005, 0.01, 0.02, 0.05];
const DELTA = 0.05;
const START = '<!-- mrl report: start -->';
const END = '<!-- mrl report: end -->';

interface CascadePoint {
  epsilon: number;
  delta: number;
  thresholds: number[];
  temperatures: number[];
  /** The certificate's bound on disagreement, from the validation sample. */
  bound: number;
  /** Validation images the certificate was tested on. */
  n: number;
  test: { accuracy: number; avg_dimension: number; disagreement: number };
}

export interface Report {
  model: string;
  test_count: number;
  full_dimension: number;
  certified: CascadePoint[];
  /** Bounds at which no thresholds could be certified on this validation sample, and why. */
  not_certified: { epsilon: number; delta: number; reason: string }[];
  /** The thresholds the bundle serves, on the test split. */
  served: Pick<Evaluation, 'accuracy' | 'avg_dimension' | 'disagreement' | 'exits' | 'exit_accuracy' | 'class_avg_dimension'> & {
    certificate?: unknown;
    thresholds: number[];
    temperatures: number[];
  };
  fixed: Record<string, number>;
  /** Test accuracy of the models training wrote down (the other head kind, fixed-feature baselines). */
  trained: Record<string, Record<string, number>>;
  /** Per stage, the test split's 15-bin expected calibration error at temperature 1 and at the served temperatures. */
  ece: { before: number[]; after: number[] };
}

const pct = (a: number | undefined) => (a === undefined ? '—' : (100 * a).toFixed(2));

/** Rounds every number in a JSON value to 6 significant digits: the report changes only when a result does. */
function rounded<T>(value: T): T {
  return JSON.parse(JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v))) as T;
}

/** The smallest fixed prefix whose test accuracy reaches `accuracy`, if any. */
function smallestMatching(fixed: Record<string, number>, nesting: readonly number[], accuracy: number): number | undefined {
  return nesting.find((m) => fixed[String(m)]! >= accuracy);
}

function markdown(bundle: Bundle, r: Report, svgName: string): string {
  const d = r.full_dimension;
  const full = r.fixed[String(d)]!;
  const kind = bundle.headKind.toUpperCase();
  const other = bundle.headKind === 'mrl' ? 'mrl-e' : 'mrl';
  const s = r.served;
  const cert = s.certificate as { risk: string; epsilon: number; delta: number; n: number; bound: number } | undefined;
  const match = smallestMatching(r.fixed, bundle.nesting, s.accuracy);
  const exitsRow = bundle.nesting.map((m) => `${m}-d ${((100 * (s.exits[String(m)] ?? 0)) / r.test_count).toFixed(1)}%`).join(', ');
  const classes = Object.entries(s.class_avg_dimension).sort((a, b) => b[1] - a[1]);
  const headline = cert
    ? `Certified on the validation split (with probability at least ${1 - cert.delta} over that sample, ` +
      (cert.risk === 'error'
        ? `the cascade's error rate exceeds the ${d}-d one's by at most ${100 * cert.epsilon} points`
        : `the cascade disagrees with the ${d}-d answer on at most ${100 * cert.epsilon}% of inputs`) +
      `; bound reached ${(100 * cert.bound).toFixed(2)}% on ${cert.n} images), the served cascade ` +
      `answers the ${r.test_count.toLocaleString('en')} test images with an average of **${s.avg_dimension.toFixed(2)} dimensions** at ${pct(s.accuracy)}% accuracy, ` +
      `against ${pct(full)}% for the ${d}-d representation: **${(d / s.avg_dimension).toFixed(1)}× smaller** (accuracy ${((s.accuracy - full) * 100).toFixed(2)} points; ` +
      `it disagrees with the full size on ${pct(s.disagreement)}% of test images).`
    : `The served thresholds are not certified (see model.json's calibration record). On the test split they use an average of ` +
      `**${s.avg_dimension.toFixed(2)} dimensions** at ${pct(s.accuracy)}% accuracy, against ${pct(full)}% for the ${d}-d representation.`;
  const rows = [
    '| model | dimension | test accuracy (%) | disagreement with full size (%) |',
    '| --- | ---: | ---: | ---: |',
    ...r.certified.map(
      (p) =>
        `| ${kind} cascade, certified disagreement ≤ ${100 * p.epsilon}% (δ = ${p.delta}) | ${p.test.avg_dimension.toFixed(2)} (average) | ${pct(p.test.accuracy)} | ${pct(p.test.disagreement)} |`,
    ),
    ...r.not_certified.map((p) => `| ${kind} cascade, disagreement ≤ ${100 * p.epsilon}% (δ = ${p.delta}): not certifiable on this validation sample | | | |`),
    ...bundle.nesting.map((m) => `| ${kind}, fixed size | ${m} | ${pct(r.fixed[String(m)])} | |`),
    ...bundle.nesting
      .filter((m) => r.trained[other]?.[String(m)] !== undefined)
      .map((m) => `| ${other.toUpperCase()} (its own encoder), fixed size | ${m} | ${pct(r.trained[other]![String(m)])} | |`),
    ...bundle.nesting
      .filter((m) => r.trained[`ff-${m}`]?.[String(m)] !== undefined)
      .map((m) => `| fixed-feature baseline (its own encoder) | ${m} | ${pct(r.trained[`ff-${m}`]![String(m)])} | |`),
  ];
  // What the tightest bound demands of the sample: the most losses a set may show among the tested images and pass.
  const tight = r.certified[0];
  const tested = tight?.n;
  const passing = tight && tested ? mostPassingLosses(tested, tight.epsilon, tight.delta) : -1;
  const allowed = passing >= 0 ? passing : undefined;
  return [
    START,
    `### Accuracy against expected dimension (${bundle.id}, ${r.test_count.toLocaleString('en')} test images)`,
    '',
    headline,
    match === undefined
      ? `No single prefix size reaches the cascade's accuracy on its own.`
      : `The smallest fixed prefix as accurate as the cascade is ${match}-d: the cascade needs ${(match / s.avg_dimension).toFixed(1)}× fewer dimensions on average, by spending them where a small prefix is unsure.`,
    '',
    ...rows,
    '',
    ...(tight && tested && allowed !== undefined
      ? [
          `A bound is only as tight as the sample allows: on ${tested.toLocaleString('en')} tested images, disagreement ≤ ${100 * tight.epsilon}% is certified only for ` +
            `thresholds that disagree with the full size on at most ${allowed} of them (${((100 * allowed) / tested).toFixed(2)}%), hence its cost in dimensions; ` +
            'a larger validation split buys tighter bounds cheaper.',
          '',
        ]
      : []),
    `Where the served cascade answers (share of test images): ${exitsRow}. The accuracy of the answers each stage gives: ` +
      `${bundle.nesting.filter((m) => s.exit_accuracy[String(m)] !== undefined).map((m) => `${m}-d ${pct(s.exit_accuracy[String(m)])}%`).join(', ')}.`,
    '',
    `Which classes escalate (average dimension used per class): ${classes.map(([l, v]) => `${l} ${v.toFixed(1)}`).join(', ')}.`,
    '',
    `Temperature scaling (per stage, fitted on validation) and the test split's expected calibration error (15 bins), before → after: ` +
      `${bundle.nesting.map((m, k) => `${m}-d ${r.ece.before[k]!.toFixed(4)} → ${r.ece.after[k]!.toFixed(4)} (T = ${s.temperatures[k]!.toFixed(2)})`).join(', ')}.`,
    '',
    `The served thresholds (model.json; the ${d}-d stage always answers): ${s.thresholds.map((t, i) => `${bundle.nesting[i]}-d ${t.toFixed(4)}`).join(', ')}.`,
    '',
    `![accuracy against dimension](${svgName})`,
    '',
    'Regenerate with `npx mrl report` (it certifies on validation and evaluates on test; `npx mrl eval --json` gives the served cascade\'s numbers).',
    END,
  ].join('\n');
}

async function replaceSection(path: string, section: string): Promise<void> {
  const text = await readFile(path, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  const next = a >= 0 && b > a ? text.slice(0, a) + section + text.slice(b + END.length) : `${text.trimEnd()}\n\n${section}\n`;
  if (next !== text) await writeFile(path, next);
}

async function writeIfChanged(path: string, content: string): Promise<void> {
  const old = await readFile(path, 'utf8').catch(() => undefined);
  if (old !== content) await writeFile(path, content);
}

/** The report's numbers: certified cascades at several ε and the served one, on the test split. */
export function buildReport(bundle: Bundle, val: LogitTable, test: LogitTable): Report {
  const certified: CascadePoint[] = [];
  const notCertified: Report['not_certified'] = [];
  for (const epsilon of EPSILONS) {
    let cal;
    try {
      cal = calibrateCertified(bundle, val, { kind: 'certified', risk: 'disagreement', epsilon, delta: DELTA });
    } catch (err) {
      notCertified.push({ epsilon, delta: DELTA, reason: (err as Error).message });
      continue;
    }
    const e = evaluateTable(bundle, test, 'test', { ...cal, policy: 'cascade', maxDimension: 0 });
    certified.push({
      epsilon,
      delta: DELTA,
      thresholds: cal.thresholds,
      temperatures: cal.temperatures,
      bound: cal.calibration.certificate!.bound,
      n: cal.calibration.certificate!.n,
      test: { accuracy: e.accuracy, avg_dimension: e.avg_dimension, disagreement: e.disagreement },
    });
  }
  const served = evaluateTable(bundle, test, 'test', { thresholds: bundle.thresholds, temperatures: bundle.temperatures, policy: 'cascade', maxDimension: 0 });
  const trained = (bundle.meta.metrics as { test_accuracy?: Record<string, Record<string, number>> } | undefined)?.test_accuracy ?? {};
  return rounded({
    model: bundle.id,
    test_count: test.n,
    full_dimension: bundle.embeddingDim,
    certified,
    not_certified: notCertified,
    served: {
      certificate: (bundle.meta.calibration as { certificate?: unknown } | undefined)?.certificate,
      thresholds: bundle.thresholds,
      temperatures: bundle.temperatures,
      accuracy: served.accuracy,
      avg_dimension: served.avg_dimension,
      disagreement: served.disagreement,
      exits: served.exits,
      exit_accuracy: served.exit_accuracy,
      class_avg_dimension: served.class_avg_dimension,
    },
    fixed: served.per_dimension_accuracy,
    trained,
    ece: { before: expectedCalibrationErrors(test, bundle.nesting.map(() => 1)), after: expectedCalibrationErrors(test, bundle.temperatures) },
  });
}

/**
 * `mrl report`: certifies at several ε on validation, evaluates each and the served thresholds on
 * test, and writes the table and an SVG plot into the model card, the README and `report.json`.
 * Files are rewritten only when their content changes.
 */
export async function reportCommand(bundle: Bundle, readme: string | undefined, json: boolean): Promise<number> {
  const val = await buildLogitTable(bundle, await loadSplit('validation'), 'embedding the validation split', json);
  const test = await buildLogitTable(bundle, await loadSplit('test'), 'embedding the test split', json);
  const report = buildReport(bundle, val, test);
  const kind = bundle.headKind.toUpperCase();
  const other = bundle.headKind === 'mrl' ? 'mrl-e' : 'mrl';
  const trained = report.trained;
  const series = [
    {
      name: `${kind} cascade, certified`,
      colour: '#d62728',
      line: true,
      points: report.certified.map((p) => ({ dimension: p.test.avg_dimension, accuracy: p.test.accuracy, label: `ε ${p.epsilon}` })),
    },
    { name: `${kind} fixed size`, colour: '#1f77b4', line: true, points: bundle.nesting.map((m) => ({ dimension: m, accuracy: report.fixed[String(m)]! })) },
    ...(trained[other]
      ? [{ name: `${other.toUpperCase()} fixed size`, colour: '#2ca02c', line: true, points: bundle.nesting.filter((m) => trained[other]![String(m)] !== undefined).map((m) => ({ dimension: m, accuracy: trained[other]![String(m)]! })) }]
      : []),
    {
      name: 'fixed-feature baseline',
      colour: '#7f7f7f',
      line: false,
      points: bundle.nesting.filter((m) => trained[`ff-${m}`]?.[String(m)] !== undefined).map((m) => ({ dimension: m, accuracy: trained[`ff-${m}`]![String(m)]! })),
    },
  ].filter((s) => s.points.length > 0);
  const svgName = 'pareto.svg';
  // From a point below the lowest certified cascade: where the choice between sizes is made.
  const lowest = report.certified.length ? report.certified.map((p) => p.test.accuracy) : Object.values(report.fixed);
  const floor = Math.min(...lowest) - 0.01;
  await writeIfChanged(join(bundle.dir, svgName), paretoSvg(`${bundle.name}: accuracy against dimension`, series, bundle.nesting, floor));
  await writeIfChanged(join(bundle.dir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  await replaceSection(join(bundle.dir, 'README.md'), markdown(bundle, report, svgName));
  if (readme) await replaceSection(readme, markdown(bundle, report, `models/${bundle.name}/${svgName}`));
  console.log(json ? JSON.stringify(report) : markdown(bundle, report, svgName));
  return 0;
}
