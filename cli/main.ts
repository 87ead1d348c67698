import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, loadBundle } from '../services/common/bundle.js';
import { readThresholdsFile } from '../services/cascade/thresholds.js';
import { calibrateCommand } from './calibrate.js';
import { classifyCommand } from './classify.js';
import { evaluateTable, formatEvaluation } from './evaluate.js';
import { reportCommand } from './report.js';
import { loadSplit } from './fashionMnist.js';
import { buildStageTable } from './stageTable.js';
import { start } from './start.js';

const HELP = `mrl: adaptive classification cascades over Matryoshka representations

Usage: mrl <command> [options]

Commands:
  start                     run the encoder and cascade services (settings from MRL_* variables)
  classify <image.png>      classify an image file with a running cascade
  classify --sample N       classify image N of the bundle's test slice
  calibrate                 learn the cascade thresholds on the validation split
  eval                      the cascade's accuracy and average dimension on the test split
  report                    calibrate at several targets, evaluate on test, write the table and plot
  help                      show this text

Options:
  --target HOST:PORT        cascade address (default localhost:50051)
  --model DIR               model bundle (default models/fashion-mnist-mrl)
  --max-dimension N         cap on the prefix size (default: none)
  --policy cascade|full     full = always the largest size (default cascade)
  --top-k N                 classes to list (default 1)
  --timeout-ms N            call deadline (default 10000)
  --json                    print JSON (start: raw JSON log lines)

calibrate:
  --target-accuracy A       accuracy to reach on validation, a fraction (default: full size - tolerance)
  --tolerance T             accuracy the default target gives up, a fraction (default 0)
  --max-avg-dim B           instead: the best accuracy with an average dimension <= B
  --out FILE                write a thresholds file (MRL_THRESHOLDS_FILE) instead of model.json
  --dry-run                 print only

eval:
  --thresholds FILE         thresholds file to evaluate (default: the bundle's)
  --policy full             the no-cascade baseline
  --split test|validation   (default test)
`;

async function main(argv: string[]): Promise<number> {
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
      tolerance: { type: 'string', default: '0' },
      'max-avg-dim': { type: 'string' },
      out: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      thresholds: { type: 'string' },
      split: { type: 'string', default: 'test' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...rest] = positionals;
  const int = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
    return n;
  };
  const fraction = (name: 'target-accuracy' | 'tolerance') => {
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
      return start({ json: values.json });
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
      if (maxAvgDim !== undefined && values['target-accuracy'] !== undefined) throw new Error('give --target-accuracy or --max-avg-dim, not both');
      return calibrateCommand(await loadBundle(values.model), {
        targetAccuracy: fraction('target-accuracy'),
        tolerance: fraction('tolerance')!,
        maxAvgDim,
        out: values.out,
        dryRun: values['dry-run'],
        json: values.json,
      });
    }
    case 'eval': {
      if (values.split !== 'test' && values.split !== 'validation') throw new Error('--split must be test or validation');
      const bundle = await loadBundle(values.model);
      const thresholds = values.thresholds ? readThresholdsFile(values.thresholds, bundle.nesting).thresholds : bundle.thresholds;
      const table = await buildStageTable(bundle, await loadSplit(values.split), `embedding the ${values.split} split`, values.json);
      const result = evaluateTable(bundle, table, values.split, { thresholds, policy, maxDimension: int('max-dimension') });
      console.log(values.json ? JSON.stringify(result) : formatEvaluation(result));
      return 0;
    }
    case 'report':
      return reportCommand(
        await loadBundle(values.model),
        values.model === DEFAULT_MODEL_DIR ? fileURLToPath(new URL('../README.md', import.meta.url)) : undefined,
        values.json,
      );
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
