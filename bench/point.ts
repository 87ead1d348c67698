/**
 * `npm run bench:point -- --call classify --concurrency 64`: one load point against a fresh mesh,
 * taken apart, for the questions the benchmark's table raises. Per process, CPU ms per answer of
 * its main thread and of its other threads (the encoder's inference worker, GC helpers); the share
 * of the machine's cores left idle; and, from the services' own metrics, where the time went:
 * how many calls each stage had in flight on average (Little's law: time spent in the stage ÷
 * the time the load ran), and the encoder's batches. Prints JSON.
 * Load comes from h2load, one repeated request (see bench/requests.ts).
 * `--rate N` runs an open loop instead, with at most `--concurrency` calls in flight; `--batch N` sets the images per ClassifyBatch call;
 * `--set MRL_X=v` tunes the mesh.
 */
import { parseArgs } from 'node:util';
import { measurePoint } from './measurePoint.js';
import { CALLS as ALL_CALLS, type Call } from './requests.js';
import { parseSettings } from './settings.js';

/** Every call but the echo, which needs no mesh. */
const CALLS = ALL_CALLS.filter((c) => c !== 'echo');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      call: { type: 'string', default: 'classify' },
      concurrency: { type: 'string', default: '64' },
      rate: { type: 'string' },
      batch: { type: 'string', default: '64' },
      'duration-ms': { type: 'string', default: '5000' },
      'warmup-ms': { type: 'string', default: '1000' },
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  const call = values.call as Call;
  if (!(CALLS as readonly string[]).includes(call)) throw new Error(`--call takes one of ${CALLS.join(', ')}, got ${values.call}`);
  const count = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number of at least 1, got ${v}`);
    return n;
  };
  const report = await measurePoint({
    call,
    concurrency: count('concurrency', values.concurrency),
    rate: values.rate === undefined ? undefined : count('rate', values.rate),
    batch: count('batch', values.batch),
    warmupMs: count('warmup-ms', values['warmup-ms']),
    durationMs: count('duration-ms', values['duration-ms']),
    settings: parseSettings(values.set),
  });
  console.log(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(3)) : v), 2));
}

await main();
