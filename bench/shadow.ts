/**
 * `npm run bench:shadow`: what shadow agreement costs. Unary tensor Classify at 64 calls in
 * flight against fresh meshes at MRL_SHADOW_RATE 0 (off), 0.01 (the default) and 1 (every
 * answer), in back-to-back rounds (`--rounds`, default 3) so that drift on the machine falls on
 * all three alike. Prints each round, the medians, the default rate's latency ratios to rate 0
 * next to rate 0's own spread between rounds (the noise), and the cascade's CPU per sampled
 * request: (CPU per answer at rate 1 − at rate 0), since at rate 1 every answer is sampled.
 */
import { parseArgs } from 'node:util';
import { median } from '../harness/load.js';
import { measurePoint, type PointReport } from './measurePoint.js';

const RATES = ['0', '0.01', '1'] as const;

const cascadeCpu = (r: PointReport) => r.cpu_ms_per_answer.cascade.main + r.cpu_ms_per_answer.cascade.other;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, 'duration-ms': { type: 'string', default: '5000' } } });
  const rounds = Number(values.rounds);
  const durationMs = Number(values['duration-ms']);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a whole number of at least 1');
  const runs: Record<string, PointReport[]> = Object.fromEntries(RATES.map((r) => [r, []]));
  for (let round = 1; round <= rounds; round++)
    for (const rate of RATES) {
      const r = await measurePoint({ call: 'classify', concurrency: 64, batch: 64, warmupMs: 1000, durationMs, settings: { MRL_SHADOW_RATE: rate } });
      runs[rate]!.push(r);
      console.log(
        `round ${round}, MRL_SHADOW_RATE=${rate}: ${r.answers_per_second.toFixed(0)} answers/s, p50 ${r.p50_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms, ` +
          `cascade CPU ${cascadeCpu(r).toFixed(4)} ms/answer`,
      );
    }
  const m = (rate: string, f: (r: PointReport) => number) => median(runs[rate]!.map(f));
  const spread = (f: (r: PointReport) => number) => {
    const xs = runs['0']!.map(f);
    return `${(Math.min(...xs) / median(xs)).toFixed(2)}–${(Math.max(...xs) / median(xs)).toFixed(2)}`;
  };
  const summary = {
    rounds,
    median: Object.fromEntries(
      RATES.map((rate) => [rate, { answers_per_second: m(rate, (r) => r.answers_per_second), p50_ms: m(rate, (r) => r.p50_ms), p99_ms: m(rate, (r) => r.p99_ms), cascade_cpu_ms_per_answer: m(rate, cascadeCpu) }]),
    ),
    default_over_off: { p50: m('0.01', (r) => r.p50_ms) / m('0', (r) => r.p50_ms), p99: m('0.01', (r) => r.p99_ms) / m('0', (r) => r.p99_ms) },
    off_spread_over_rounds: { p50: spread((r) => r.p50_ms), p99: spread((r) => r.p99_ms) },
    shadow_cpu_ms_per_sampled_request: m('1', cascadeCpu) - m('0', cascadeCpu),
  };
  console.log(JSON.stringify(summary, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(3)) : v), 2));
}

await main();
