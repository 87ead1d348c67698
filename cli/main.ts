import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, loadBundle } from '../matryoshka/bundle.js';
import { PACKAGE_ROOT } from '../services/common/runtime.js';
import { exitSettings, readThresholdsFile } from '../services/cascade/thresholds.js';
import { type CalibrationTarget, calibrateCommand } from './calibrate.js';
import { classifyCommand } from './classify.js';
import { evaluateTable, formatEvaluation } from './evaluate.js';
import { TRITON_DEFAULTS, exportTritonCommand } from './exportTriton.js';
import { fitMain } from './fit.js';
import { importCommand } from './import.js';
import { reportCommand } from './report.js';
import { loadSplit } from './fashionMnist.js';
import { buildLogitTable } from './logitTable.js';
import { start } from './start.js';
import { watchCommand } from './watch.js';

const HELP = `mrl: adaptive classification cascades over Matryoshka representations

Usage: mrl <command> [options]

Commands:
  start [encoder|cascade]   run and supervise the encoder and cascade, or the one named (settings from
                            MRL_* variables); a service that exits is restarted with backoff
  classify <image.png>      classify an image file with a running cascade
  classify --sample N       classify image N of the bundle's test slice
  calibrate                 certify the cascade's thresholds (and fit temperatures) on the validation split
  eval                      the cascade's accuracy and average dimension on the test split
  report                    certify at several bounds, evaluate on test, write the table and plot
  watch                     a running cascade's live average dimension, shadow disagreement and certificate
  export-triton DIR         write a Triton model repository for the bundle's encoder into DIR
  fit DIR --data FOLDER     fit a bundle's heads, temperatures and certified thresholds on images (or
                            --embeddings FILE.jsonl); see mrl fit --help
  import --out DIR          write a bundle without heads from an ONNX encoder, or for embeddings computed
                            elsewhere (embeddings-only); \`mrl fit\` gives it heads
  help                      show this text

Options:
  --target HOST:PORT        cascade address (default localhost:50051)
  --model DIR               model bundle (default models/fashion-mnist-mrl)
  --max-dimension N         cap on the prefix size (default: none)
  --policy cascade|full     full = always the largest size (default cascade)
  --top-k N                 classes to list (default 1)
  --timeout-ms N            call deadline (default 10000)
  --json                    print JSON (start: raw JSON log lines)

calibrate (certified, the default: with probability >= 1 - D over the validation sample, risk <= E):
  --risk disagreement|error disagreement: share of answers that differ from the full size's (needs no
                            labels); error: cascade error rate minus the full size's (default disagreement)
  --epsilon E               the risk bound, a fraction (default 0.005)
  --delta D                 the chance the bound is allowed to fail, a fraction (default 0.05)
calibrate (UNCERTIFIED accuracy-target search: it holds on validation, no guarantee beyond it):
  --tolerance T             reach the full size's validation accuracy minus T, a fraction
  --target-accuracy A       reach accuracy A on validation, a fraction
  --max-avg-dim B           the best validation accuracy with an average dimension <= B
  --out FILE                write a thresholds file (MRL_THRESHOLDS_FILE) instead of model.json
  --dry-run                 print only

watch:
  --metrics URL             the cascade's metrics (default http://localhost:9464/metrics)
  --interval S              seconds between reports (default 5)
  --once                    one report, then exit

export-triton (DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx; Triton serves it over the Open Inference Protocol):
  --max-batch N             max_batch_size: largest batch, and most images per request (default ${TRITON_DEFAULTS.maxBatch})
  --max-queue N             max_queue_size: requests waiting before Triton refuses more (default ${TRITON_DEFAULTS.maxQueue})
  --max-delay-us N          max_queue_delay_microseconds: longest wait for a batch to fill (default ${TRITON_DEFAULTS.maxDelayUs})

import (writes DIR/model.json, and DIR/encoder.onnx with --encoder):
  --encoder FILE            an ONNX image encoder: one float32 input, a float32 [batch, d] embedding output
  --embedding-dim D         instead of --encoder: an embeddings-only bundle, classifying \`embedding\` requests
  --labels FILE             class names, one per line
  --nesting A,B,...,D       the Matryoshka sizes, ascending, the last the embedding size
  --preprocess FILE         with --encoder: the image pipeline (a Hugging Face preprocessor_config.json)
  --output NAME             with --encoder: the embedding output, where the model has several
  --layout NCHW|NHWC        with --encoder: where the input's shape does not tell
  --normalization N         before each head: none, l2 (after truncation) or layer_norm_l2 (a layer
                            norm over the whole embedding, then l2) (default none)
  --name NAME               (default: DIR's folder name)
  --version V               (default 1.0.0)
  --out DIR                 the new bundle's folder (made if missing; refused if it holds a model.json)

eval:
  --thresholds FILE         thresholds file to evaluate (default: the bundle's)
  --policy full             the no-cascade baseline
  --split test|validation   (default test)
`;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'fit') return fitMain(argv.slice(1));
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      target: { type: 'string', default: 'localhost:50051' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      sample: { type: 'string' },
      'max-dimension': { type: 'string', default: '0' },
      policy: { type: 'string', default: 'cascade' },
      'top-k': { type: 'string', default: '1' },
      'timeout-ms': { type: 'string', default: '10000' },
      json: { type: 'boolean', default: false },
      'target-accuracy': { type: 'string' },
      tolerance: { type: 'string' },
      risk: { type: 'string' },
      epsilon: { type: 'string' },
      delta: { type: 'string' },
      'max-avg-dim': { type: 'string' },
      out: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      thresholds: { type: 'string' },
      split: { type: 'string', default: 'test' },
      metrics: { type: 'string', default: 'http://localhost:9464/metrics' },
      interval: { type: 'string', default: '5' },
      once: { type: 'boolean', default: false },
      'max-batch': { type: 'string', default: String(TRITON_DEFAULTS.maxBatch) },
      'max-queue': { type: 'string', default: String(TRITON_DEFAULTS.maxQueue) },
      'max-delay-us': { type: 'string', default: String(TRITON_DEFAULTS.maxDelayUs) },
      encoder: { type: 'string' },
      'embedding-dim': { type: 'string' },
      labels: { type: 'string' },
      nesting: { type: 'string' },
      preprocess: { type: 'string' },
      output: { type: 'string' },
      layout: { type: 'string' },
      normalization: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...rest] = positionals;
  const int = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
    return n;
  };
  const fraction = (name: 'target-accuracy' | 'tolerance' | 'epsilon' | 'delta') => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(n >= 0 && n <= 1)) throw new Error(`--${name} must be a fraction from 0 to 1 (0.93 is 93%)`);
    return n;
  };
  if (values.policy !== 'cascade' && values.policy !== 'full') throw new Error('--policy must be cascade or full');
  const policy = values.policy;
  if (values.help || command === undefined || command === 'help') {
    console.log(HELP);
    return 0;
  }
  switch (command) {
    case 'start':
      return start({ services: rest, json: values.json });
    case 'classify': {
      if ((rest.length === 1) === (values.sample !== undefined)) throw new Error('classify takes an image path or --sample N');
      return classifyCommand(
        {
          target: values.target,
          image: rest[0],
          sample: values.sample === undefined ? undefined : int('sample'),
          maxDimension: int('max-dimension'),
          policy,
          topK: int('top-k'),
          json: values.json,
          timeoutMs: int('timeout-ms'),
        },
        await loadBundle(values.model),
      );
    }
    case 'calibrate': {
      const maxAvgDim = values['max-avg-dim'] === undefined ? undefined : Number(values['max-avg-dim']);
      if (maxAvgDim !== undefined && !(maxAvgDim > 0)) throw new Error('--max-avg-dim must be a positive number');
      const uncertified = ['target-accuracy', 'tolerance', 'max-avg-dim'].filter((k) => values[k as keyof typeof values] !== undefined);
      const certified = ['risk', 'epsilon', 'delta'].filter((k) => values[k as keyof typeof values] !== undefined);
      if (uncertified.length > 1) throw new Error(`give one of --target-accuracy, --tolerance, --max-avg-dim, not ${uncertified.map((k) => `--${k}`).join(' and ')}`);
      if (uncertified.length && certified.length)
        throw new Error(`--${uncertified[0]} is the uncertified search; --${certified[0]} is for certified calibration: give one kind`);
      if (values.risk !== undefined && values.risk !== 'disagreement' && values.risk !== 'error') throw new Error('--risk must be disagreement or error');
      const target: CalibrationTarget = uncertified.length
        ? { kind: 'accuracy', targetAccuracy: fraction('target-accuracy'), tolerance: fraction('tolerance') ?? 0, maxAvgDim }
        : { kind: 'certified', risk: values.risk ?? 'disagreement', epsilon: fraction('epsilon') ?? 0.005, delta: fraction('delta') ?? 0.05 };
      return calibrateCommand(await loadBundle(values.model), { target, out: values.out, dryRun: values['dry-run'], json: values.json });
    }
    case 'eval': {
      if (values.split !== 'test' && values.split !== 'validation') throw new Error('--split must be test or validation');
      const bundle = await loadBundle(values.model);
      const settings = exitSettings(bundle, values.thresholds ? readThresholdsFile(values.thresholds, bundle) : undefined);
      const table = await buildLogitTable(bundle, await loadSplit(values.split), `embedding the ${values.split} split`, values.json);
      const result = evaluateTable(bundle, table, values.split, { ...settings, policy, maxDimension: int('max-dimension') });
      console.log(values.json ? JSON.stringify(result) : formatEvaluation(result));
      return 0;
    }
    case 'report':
      return reportCommand(
        await loadBundle(values.model),
        values.model === DEFAULT_MODEL_DIR ? join(PACKAGE_ROOT, 'README.md') : undefined,
        values.json,
      );
    case 'watch': {
      const intervalS = Number(values.interval);
      if (!(intervalS > 0)) throw new Error('--interval must be a positive number of seconds');
      return watchCommand({ url: values.metrics, intervalS, once: values.once, json: values.json });
    }
    case 'export-triton': {
      if (rest.length !== 1) throw new Error('export-triton takes one folder: mrl export-triton DIR');
      const [maxBatch, maxQueue, maxDelayUs] = [int('max-batch'), int('max-queue'), int('max-delay-us')];
      // Triton takes max_queue_size 0 as unbounded.
      if (maxBatch < 1 || maxQueue < 1) throw new Error('--max-batch and --max-queue must be at least 1');
      return exportTritonCommand(await loadBundle(values.model), rest[0]!, { maxBatch, maxQueue, maxDelayUs }, values.json);
    }
    case 'import': {
      if (rest.length > 0) throw new Error('import takes options only: mrl import --encoder model.onnx --labels labels.txt --nesting ... --out DIR');
      const { encoder, labels, nesting, preprocess, output, layout, normalization, name, version, out } = values;
      return importCommand({ encoder, embeddingDim: values['embedding-dim'], labels, nesting, preprocess, output, layout, normalization, name, version, out }, values.json);
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}; see mrl --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`mrl: ${(err as { details?: string }).details ?? (err as Error).message}`);
    process.exitCode = 1;
  },
);
