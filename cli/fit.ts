import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type AnyBundle, type ClassifierBundle, type HeadKind, readBundle, requireHeads } from '../matryoshka/bundle.js';
import { HEADS_FILE, writeHeads } from '../matryoshka/bundleWriter.js';
import { gatherRows, type LogitTable, pick, stageAccuracies, stageTable } from '../matryoshka/calibration.js';
import { Cascade } from '../matryoshka/cascade.js';
import { fewestTested, learnCertifySplit } from '../matryoshka/certify.js';
import { type LabelledEmbeddings, fitHeads, stratifiedSplit } from '../matryoshka/fit.js';
import { type Calibration, type CertifiedTarget, calibrateCertified, describeCalibration } from './calibrate.js';
import { embedImageFolder, readEmbeddingsJsonl, readImageFolder } from './fitData.js';
import { stageLogits } from './logitTable.js';

export interface FitOptions {
  /** An ImageFolder (`FOLDER/<label>/<image>`) to embed with the bundle's encoder. Exactly one of `data` and `embeddings`. */
  data?: string;
  /** A JSONL file of `{"embedding": [...], "label": "..."}` lines. */
  embeddings?: string;
  kind: HeadKind;
  /** Share of each label's inputs held out for validation, temperatures and the certificate, in (0, 1). */
  valFraction: number;
  /** Seed of the validation split. */
  seed: number;
  /** L2 penalty on the head weights (see matryoshka/fit.ts). */
  l2: number;
  target: CertifiedTarget;
  /** Print JSON, and no progress bar. */
  json: boolean;
}

/** model.json `fit`: how the heads were fitted, and their validation accuracy per size. */
export interface FitRecord {
  source: { images: string } | { embeddings: string };
  kind: HeadKind;
  normalization: string;
  count: number;
  train: number;
  validation: number;
  val_fraction: number;
  seed: number;
  l2: number;
  solver: string;
  /** L-BFGS iterations per solve, by nesting size. */
  iterations: Record<string, number>;
  converged: boolean;
  /** Per nesting size, the head's accuracy on the validation split. */
  validation_accuracy: Record<string, number>;
  date: string;
}

export interface FitResult {
  bundle: ClassifierBundle;
  record: FitRecord;
  calibration: Calibration;
}

const SOLVER = 'multinomial logistic regression (softmax cross-entropy, L2 on the weights) by L-BFGS, each nesting size started from the one before';

const warn = (message: string) => console.error(`warning: ${message}`);

/** The labels of the inputs and, once the split is known to be certifiable, their embeddings. */
async function readInputs(bundle: AnyBundle, options: FitOptions): Promise<{ labels: number[]; embed: () => Promise<LabelledEmbeddings>; source: FitRecord['source'] }> {
  if (options.data !== undefined) {
    if (bundle.input === undefined)
      throw new Error(`${bundle.id} is embeddings-only (model.json declares no encoder): fit it with --embeddings FILE.jsonl`);
    const images = await readImageFolder(options.data, bundle.labels);
    if (images.skipped) warn(`skipped ${images.skipped} files in ${options.data} that are not .png, .jpg or .jpeg`);
    return { labels: images.labels, embed: () => embedImageFolder(bundle, images, options.json), source: { images: options.data } };
  }
  const data = await readEmbeddingsJsonl(options.embeddings!, bundle);
  return { labels: Array.from(data.labels), embed: async () => data, source: { embeddings: options.embeddings! } };
}

/** Rows `indices` of n × d embeddings. */
const rows = (data: LabelledEmbeddings, indices: readonly number[]) => gatherRows(data.embeddings, data.dim, indices, new Float32Array(indices.length * data.dim));

/**
 * `mrl fit`: fits the heads of bundle `dir` on labelled embeddings (a validation split held
 * out), fits temperatures and certifies thresholds on that split exactly as `mrl calibrate` does,
 * and writes heads.bin, model.json (`heads`, `thresholds`, `temperatures`, `calibration`, `fit`)
 * and the model card's section. Nothing is written until the certificate is found.
 */
export async function fitBundle(dir: string, options: FitOptions): Promise<FitResult> {
  const bundle = await readBundle(dir);
  const inputs = await readInputs(bundle, options);
  const present = new Set(inputs.labels);
  const missing = bundle.labels.filter((_, c) => !present.has(c));
  if (missing.length) warn(`no examples of ${missing.map((l) => JSON.stringify(l)).join(', ')}: the heads will hardly ever answer ${missing.length === 1 ? 'it' : 'them'}`);
  const { train, validation } = stratifiedSplit(inputs.labels, options.valFraction, options.seed);
  const { risk, epsilon, delta } = options.target;
  // Even a cascade that never exits early must pass the certificate's test: refuse before embedding and fitting.
  const tested = learnCertifySplit(validation.length).certify.length;
  const needed = fewestTested(options.target);
  if (tested < needed)
    throw new Error(
      `the validation split (${validation.length} of ${inputs.labels.length} inputs) leaves ${tested} for the certificate's tests, ` +
        `too few to certify ${risk} <= ${epsilon} at delta ${delta} even without a mistake, which takes ${needed}; ` +
        'give more data, a larger --val-fraction or a larger --epsilon',
    );
  if (train.length === 0) throw new Error(`no inputs are left to fit on after the validation split of ${validation.length}; give more data or a smaller --val-fraction`);
  const data = await inputs.embed();
  const labelsOf = (indices: readonly number[]) => pick(inputs.labels, indices);

  const fitted = fitHeads(
    { n: train.length, dim: data.dim, embeddings: rows(data, train), labels: labelsOf(train) },
    { kind: options.kind, nesting: bundle.nesting, normalization: bundle.normalization, classes: bundle.labels.length, l2: options.l2 },
  );
  const cascade = new Cascade(options.kind, bundle.nesting, fitted.heads, bundle.normalization);
  const table: LogitTable = {
    n: validation.length,
    dims: bundle.nesting,
    classes: bundle.labels.length,
    logits: stageLogits(cascade, rows(data, validation)),
    labels: labelsOf(validation),
  };
  const calibration = calibrateCertified(bundle, table, options.target);
  const accuracy = stageAccuracies(stageTable(table, calibration.temperatures));
  const record: FitRecord = {
    source: inputs.source,
    kind: options.kind,
    normalization: bundle.normalization,
    count: inputs.labels.length,
    train: train.length,
    validation: validation.length,
    val_fraction: options.valFraction,
    seed: options.seed,
    l2: options.l2,
    solver: SOLVER,
    iterations: Object.fromEntries(fitted.solves.map((s) => [String(s.size), s.iterations])),
    converged: fitted.solves.every((s) => s.converged),
    validation_accuracy: Object.fromEntries(bundle.nesting.map((m, k) => [String(m), accuracy[k]!])),
    date: new Date().toISOString(),
  };
  await writeHeads(bundle.dir, options.kind, fitted.heads, { ...calibration, fit: record });
  const written = requireHeads(await readBundle(bundle.dir));
  await writeModelCard(written, record, calibration, options);
  return { bundle: written, record, calibration };
}

const START = '<!-- mrl fit: start -->';
const END = '<!-- mrl fit: end -->';
const pct = (x: number) => (100 * x).toFixed(2);

/** The command line that fits the same heads again. */
function refitCommand(bundle: ClassifierBundle, record: FitRecord, options: FitOptions): string {
  const source = 'images' in record.source ? `--data ${record.source.images}` : `--embeddings ${record.source.embeddings}`;
  const { risk, epsilon, delta } = options.target;
  return `npx mrl fit ${bundle.dir} ${source} --kind ${record.kind} --l2 ${record.l2} --val-fraction ${record.val_fraction} --seed ${record.seed} --risk ${risk} --epsilon ${epsilon} --delta ${delta}`;
}

function modelCard(bundle: ClassifierBundle, record: FitRecord, { calibration: c, thresholds, temperatures }: Calibration, options: FitOptions): string {
  const d = bundle.embeddingDim;
  const L = bundle.labels.length;
  const cert = c.certificate!;
  const source = 'images' in record.source ? `images in \`${record.source.images}\`, embedded with this bundle's encoder and preprocessing` : `embeddings from \`${record.source.embeddings}\``;
  const heads =
    record.kind === 'mrl'
      ? `**MRL** heads: one ${L} × m linear classifier per nesting size m`
      : `an **MRL-E** head: one ${L} × ${d} linear classifier whose stage m uses its first m columns`;
  const bound =
    cert.risk === 'error'
      ? `the cascade's error rate exceeds the ${d}-d head's by at most ${100 * cert.epsilon} points`
      : `the cascade disagrees with the ${d}-d answer on at most ${100 * cert.epsilon}% of inputs`;
  return [
    START,
    `## Heads fitted by \`mrl fit\` (${bundle.id})`,
    '',
    `${heads}, on frozen embeddings with normalisation \`${record.normalization}\`: ${record.count.toLocaleString('en')} labelled ${source}; ` +
      `${record.train.toLocaleString('en')} fitted the heads and ${record.validation.toLocaleString('en')} (${100 * record.val_fraction}% of each label, seed ${record.seed}) were held out for validation. ` +
      `Solver: ${record.solver}; L2 ${record.l2}; iterations per size: ${Object.entries(record.iterations).map(([m, n]) => `${m}-d ${n}`).join(', ')}` +
      `${record.converged ? '' : ' (some stopped at the iteration limit before converging)'}.`,
    '',
    '| dimension | validation accuracy (%) |',
    '| ---: | ---: |',
    ...bundle.nesting.map((m) => `| ${m} | ${pct(record.validation_accuracy[String(m)]!)} |`),
    '',
    `Certified on the validation split (Learn then Test, exact binomial tests): with probability at least ${1 - cert.delta} over that sample, ${bound} ` +
      `(bound ${pct(cert.bound)}%, ${pct(cert.empirical_risk)}% observed on the ${cert.n} inputs tested). ` +
      `On those inputs the cascade answers with an average of **${c.avg_dimension.toFixed(2)} dimensions** at ${pct(c.accuracy)}% accuracy, ` +
      `against ${pct(c.full_dimension_accuracy)}% for the ${d}-d head alone.`,
    '',
    `Thresholds: ${thresholds.map((t, k) => `${bundle.nesting[k]}-d ${t.toFixed(4)}`).join(', ')}. ` +
      `Temperatures: ${temperatures.map((t, k) => `${bundle.nesting[k]}-d ${t.toFixed(3)}`).join(', ')}.`,
    '',
    `Fit again with \`${refitCommand(bundle, record, options)}\`.`,
    END,
  ].join('\n');
}

/** Writes the fit's section of DIR/README.md: replaced where one is, appended otherwise, under a title in a new file. */
async function writeModelCard(bundle: ClassifierBundle, record: FitRecord, calibration: Calibration, options: FitOptions): Promise<void> {
  const path = join(bundle.dir, 'README.md');
  const section = modelCard(bundle, record, calibration, options);
  const text = await readFile(path, 'utf8').catch(() => `# ${bundle.name} ${bundle.version}\n`);
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  await writeFile(path, a >= 0 && b > a ? text.slice(0, a) + section + text.slice(b + END.length) : `${text.trimEnd()}\n\n${section}\n`);
}

const FIT_HELP = `mrl fit DIR (--data FOLDER | --embeddings FILE.jsonl) [options]: fit the heads of bundle DIR on frozen
embeddings, then temperatures and certified thresholds as \`mrl calibrate\` does; writes DIR/heads.bin,
DIR/model.json (heads, thresholds, temperatures, calibration, fit) and DIR/README.md's model card section.

  --data FOLDER             images in FOLDER/<label>/<image> (.png, .jpg, .jpeg), embedded with the bundle's
                            encoder; a label with "/" in it is the folder name with "_" for it
  --embeddings FILE.jsonl   instead of --data: lines {"embedding": [d numbers], "label": "<label>"}
  --kind mrl|mrl-e          one head per nesting size, or one shared head (default mrl)
  --val-fraction F          share of each label held out for validation and the certificate (default 0.2)
  --seed N                  the validation split's seed (default 0)
  --l2 L                    L2 penalty on the head weights (default 0.001)
  --risk disagreement|error, --epsilon E, --delta D
                            the certificate, as for \`mrl calibrate\` (default disagreement, 0.005, 0.05)
  --json                    print JSON, no progress bar
`;

/** `mrl fit` from its command-line arguments (those after `fit`). */
export async function fitMain(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      data: { type: 'string' },
      embeddings: { type: 'string' },
      kind: { type: 'string', default: 'mrl' },
      'val-fraction': { type: 'string', default: '0.2' },
      seed: { type: 'string', default: '0' },
      l2: { type: 'string', default: '0.001' },
      risk: { type: 'string', default: 'disagreement' },
      epsilon: { type: 'string', default: '0.005' },
      delta: { type: 'string', default: '0.05' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(FIT_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new Error('fit takes one bundle folder: mrl fit DIR --data FOLDER (or --embeddings FILE.jsonl); see mrl fit --help');
  if ((values.data === undefined) === (values.embeddings === undefined)) throw new Error('fit takes --data FOLDER (images) or --embeddings FILE.jsonl, one of them');
  const { kind, risk } = values;
  if (kind !== 'mrl' && kind !== 'mrl-e') throw new Error(`--kind must be mrl or mrl-e, not ${kind}`);
  if (risk !== 'disagreement' && risk !== 'error') throw new Error(`--risk must be disagreement or error, not ${risk}`);
  const open = (name: 'val-fraction' | 'epsilon' | 'delta') => {
    const n = Number(values[name]);
    if (!(n > 0 && n < 1)) throw new Error(`--${name} must be a fraction between 0 and 1 (0.2 is 20%), not ${values[name]}`);
    return n;
  };
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, not ${values.seed}`);
  const l2 = Number(values.l2);
  if (!(l2 >= 0 && Number.isFinite(l2))) throw new Error(`--l2 must be a number >= 0, not ${values.l2}`);
  const options: FitOptions = {
    data: values.data,
    embeddings: values.embeddings,
    kind,
    valFraction: open('val-fraction'),
    seed,
    l2,
    target: { kind: 'certified', risk, epsilon: open('epsilon'), delta: open('delta') },
    json: values.json,
  };
  const started = performance.now();
  const { bundle, record, calibration } = await fitBundle(positionals[0]!, options);
  if (options.json) {
    console.log(JSON.stringify({ model: bundle.id, dir: bundle.dir, fit: record, ...calibration }));
    return 0;
  }
  const source = 'images' in record.source ? `images in ${record.source.images}` : `embeddings from ${record.source.embeddings}`;
  console.log(
    [
      `fitted ${record.kind.toUpperCase()} heads of ${bundle.id} on ${record.train} of ${record.count} ${source} ` +
        `(${record.validation} held out, seed ${record.seed}) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      `validation accuracy: ${bundle.nesting.map((m) => `${m}-d ${pct(record.validation_accuracy[String(m)]!)}%`).join(', ')}`,
      ...describeCalibration(bundle, calibration),
      `wrote ${[HEADS_FILE, 'model.json', 'README.md'].map((f) => join(bundle.dir, f)).join(', ')}`,
    ].join('\n'),
  );
  return 0;
}
