import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, loadBundle } from '../services/common/bundle.js';
import { classifyCommand } from './classify.js';
import { start } from './start.js';

const HELP = `mrl: adaptive classification cascades over Matryoshka representations

Usage: mrl <command> [options]

Commands:
  start                     run the encoder and cascade services (settings from MRL_* variables)
  classify <image.png>      classify an image file with a running cascade
  classify --sample N       classify image N of the bundle's test slice
  help                      show this text

Options:
  --target HOST:PORT        cascade address (default localhost:50051)
  --model DIR               model bundle (default models/fashion-mnist-mrl)
  --max-dimension N         cap on the prefix size (default: none)
  --policy cascade|full     full = always the largest size (default cascade)
  --top-k N                 classes to list (default 1)
  --timeout-ms N            call deadline (default 10000)
  --json                    print JSON (start: raw JSON log lines)
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
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...rest] = positionals;
  const int = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
    return n;
  };
  if (values.help || command === undefined || command === 'help') {
    console.log(HELP);
    return 0;
  }
  switch (command) {
    case 'start':
      return start({ json: values.json });
    case 'classify': {
      if ((rest.length === 1) === (values.sample !== undefined)) throw new Error('classify takes an image path or --sample N');
      if (values.policy !== 'cascade' && values.policy !== 'full') throw new Error('--policy must be cascade or full');
      return classifyCommand(
        {
          target: values.target,
          image: rest[0],
          sample: values.sample === undefined ? undefined : int('sample'),
          maxDimension: int('max-dimension'),
          policy: values.policy,
          topK: int('top-k'),
          json: values.json,
          timeoutMs: int('timeout-ms'),
        },
        await loadBundle(values.model),
      );
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
