/**
 * Goodput under overload: `npm run bench:overload`. One mesh (encoder and cascade as processes),
 * h2load sending one PNG Classify body with 2 s deadlines at 64 and then 5,000 concurrent calls;
 * OK answers per second from the cascade's counter, every other code, the breaker's opens, CPU
 * per process and peak RSS against idle. Prints the table and goodput at 5,000 ÷ goodput at 64.
 * `--set MRL_X=value` settings go to both services.
 */
import { spawnMesh } from '../harness/mesh.js';
import { codeDeltas, delta, scrape } from '../harness/prom.js';
import { h2load } from './h2load.js';
import { cpuSeconds, rssBytes } from './procStats.js';
import { unaryRequest } from './requests.js';
import { parseSettings } from './settings.js';

const SECONDS = 10;
const DEADLINE_MS = 2000;
/** Concurrent calls as connections × streams on each. */
const LOADS = [
  { calls: 64, connections: 4, streams: 16 },
  { calls: 5000, connections: 50, streams: 100 },
];

const { path, message } = await unaryRequest('classify-png');

const settings = parseSettings(process.argv.slice(2).filter((a) => a !== '--set'));
const mesh = await spawnMesh(settings);
const pids = { encoder: mesh.encoder.pid, cascade: mesh.cascade.pid };
const idleRss = { encoder: rssBytes(pids.encoder), cascade: rssBytes(pids.cascade) };

const rows = [];
try {
  for (const load of LOADS) {
    const before = await scrape(mesh.cascade.metricsPort);
    const cpu0 = { encoder: cpuSeconds(pids.encoder), cascade: cpuSeconds(pids.cascade) };
    const peak = { encoder: 0, cascade: 0 };
    const sampler = setInterval(() => {
      peak.encoder = Math.max(peak.encoder, rssBytes(pids.encoder));
      peak.cascade = Math.max(peak.cascade, rssBytes(pids.cascade));
    }, 100);
    // The warm-up's answers count too: the counters cover it, so measure OK over both.
    const warmup = 2;
    try {
      await h2load({ origin: `http://127.0.0.1:${mesh.cascade.port}`, path, message, ...load, seconds: SECONDS, warmupSeconds: warmup, deadlineMs: DEADLINE_MS });
    } finally {
      clearInterval(sampler);
    }
    await new Promise((r) => setTimeout(r, DEADLINE_MS)); // calls still in the cascade finish and count
    const after = await scrape(mesh.cascade.metricsPort);
    const codes = codeDeltas(before, after, 'cascade');
    const opens = delta(before, after, 'mrl_cascade_breaker_events_total{event="open"}');
    const cpu = { encoder: cpuSeconds(pids.encoder) - cpu0.encoder, cascade: cpuSeconds(pids.cascade) - cpu0.cascade };
    rows.push({ ...load, okPerSecond: (codes.OK ?? 0) / (SECONDS + warmup), codes, opens, cpu, peak });
  }
} finally {
  await mesh.stop();
}

const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log('| concurrent calls | OK answers/s | other answers | breaker opened | CPU s: encoder / cascade | peak RSS MiB: encoder / cascade (idle) |');
console.log('| ---: | ---: | --- | ---: | --- | --- |');
for (const r of rows) {
  const other = Object.entries(r.codes).filter(([c]) => c !== 'OK').map(([c, v]) => `${v} ${c}`).join(', ') || 'none';
  console.log(
    `| ${r.calls} | ${r.okPerSecond.toFixed(0)} | ${other} | ${r.opens} | ${r.cpu.encoder.toFixed(1)} / ${r.cpu.cascade.toFixed(1)} | ` +
      `${mib(r.peak.encoder)} / ${mib(r.peak.cascade)} (${mib(idleRss.encoder)} / ${mib(idleRss.cascade)}) |`,
  );
}
const [base, heavy] = rows;
console.log(`goodput at ${heavy!.calls} ÷ at ${base!.calls}: ${(heavy!.okPerSecond / base!.okPerSecond).toFixed(2)}`);
console.log(`peak RSS ÷ idle at ${heavy!.calls}: encoder ${(heavy!.peak.encoder / idleRss.encoder).toFixed(2)}, cascade ${(heavy!.peak.cascade / idleRss.cascade).toFixed(2)}`);
