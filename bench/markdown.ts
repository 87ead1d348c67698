import type { LoadResult } from './loadPoint.js';
import type { RawPoint } from './rawEncoder.js';
import type { BenchResult, SideBySide } from './run.js';

const f = (x: number | null | undefined, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(digits));
const rawList = (points: RawPoint[]) => points.map((p) => `${p.batch}: ${f(p.images_per_second)}`).join(', ');
const errs = (e: Record<string, number>) => Object.entries(e).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
const cpu = (p: LoadResult) =>
  `${f(p.cpu_ms_per_answer, 2)} (${Object.entries(p.process_cpu_ms_per_answer).map(([name, ms]) => `${name} ${f(ms, 2)}`).join(' · ')})`;

const SIDE_BY_SIDE_NAMES: Record<SideBySide, (p: LoadResult) => string> = {
  echo: () => 'bare grpc-js echo (transport limit)',
  embedding: () => 'Classify, an 8-float embedding',
  tensor: () => 'Classify, a 28x28 float32 tensor',
  png: (p) => `Classify, the same image as PNG (a ${p.request_bytes}-byte request)`,
  kserve_v2: () => 'Classify, tensor, cascade to encoder over kserve-v2',
  encode: () => 'Encode, the encoder alone',
};

const HEADER = '| answers/s | p50 ms | p95 ms | p99 ms | errors | avg dim | encoder batch | CPU ms per answer (per process) | cores busy |';
const ALIGN = '| ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |';
const cells = (p: LoadResult) =>
  `${f(p.items_per_second)} | ${f(p.p50_ms, 2)} | ${f(p.p95_ms, 2)} | ${f(p.p99_ms, 2)} | ${errs(p.errors)} | ${f(p.avg_dimension, 1)} | ${f(p.encoder_avg_batch, 1)} | ${cpu(p)} | ${f(p.cores_busy, 2)} |`;

function row(name: string, p: LoadResult): string {
  const s = p.spec;
  const load = s.rate !== undefined ? `open ${s.rate}/s` : `c=${s.concurrency}${s.batch ? ` × ${s.batch}` : ''}`;
  return `| ${name} | ${load} | ${cells(p)}`;
}

/** A value of whatever bench/headTime.ts returns, for its table. */
const cell = (v: unknown) =>
  typeof v !== 'number' ? String(v) : Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);

/** The benchmark as the Markdown the README quotes. */
export function markdownReport(r: BenchResult): string {
  const names = Object.keys(r.side_by_side) as SideBySide[];
  const ratioOf = (a: SideBySide, b: SideBySide) => r.rounds[a].map((p, i) => f(p.rps / r.rounds[b][i]!.rps, 2)).join(', ');
  const heads = r.heads as unknown as Record<string, unknown>[];
  const headKeys = Object.keys(heads[0] ?? {});
  return [
    `# Benchmark ${r.quick ? '(quick smoke run) ' : ''}${r.date}`,
    '',
    `Machine: ${r.machine.cpus} × ${r.machine.cpu_model}, ${r.machine.memory_gib} GiB, Node ${r.machine.node}; services and load generator share the machine; the run took ${f(r.seconds)} s.` +
      (Object.keys(r.settings).length ? ` Mesh settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${v}`).join(', ')}.` : ''),
    '',
    'Load: h2load, at most 16 calls in flight on a connection, repeating one request (image 0 of the test slice as a float32 ' +
      'tensor or a PNG; for ClassifyBatch the first `batch` images, listed or packed in one tensor). Errors are the called ' +
      'service\'s non-OK answers; CPU is read from /proc over each point\'s measured window: all processes per answer ' +
      '(h2load and each server), and cores busy in all.',
    '',
    `## Side by side at c=${r.concurrency} (the median of ${r.rounds.echo.length} rounds, each measuring these back to back)`,
    '',
    `| call ${HEADER}`,
    `| --- ${ALIGN}`,
    ...names.map((k) => `| ${SIDE_BY_SIDE_NAMES[k](r.side_by_side[k])} | ${cells(r.side_by_side[k])}`),
    `| raw onnxruntime-node, best batch (${r.raw_best.batch}), all cores, in-process | ${f(r.raw_best.images_per_second)} images/s | | | | | | | | |`,
    '',
    `By round: PNG ÷ tensor Classify ${ratioOf('png', 'tensor')}; kserve-v2 ÷ mrl tensor Classify ${ratioOf('kserve_v2', 'tensor')}; ` +
      `tensor Classify ÷ echo ${ratioOf('tensor', 'echo')}; Encode ÷ echo ${ratioOf('encode', 'echo')}.`,
    '',
    '## Sweeps, open loop, bulk',
    '',
    `| what | load ${HEADER}`,
    `| --- | --- ${ALIGN}`,
    ...r.echo.map((p) => row('grpc-js echo', p)),
    ...r.cascade.map((p) => row('mesh, cascade (tensor)', p)),
    ...r.full.map((p) => row('mesh, full size (tensor)', p)),
    row('mesh, cascade, half saturated rate', r.open_loop),
    row('mesh, ClassifyBatch (bulk), requests', r.bulk),
    row('mesh, ClassifyBatch (bulk), packed tensor', r.bulk_packed),
    '',
    `Raw onnxruntime-node (compute limit), images/s by batch: ${rawList(r.raw_encoder)}.`,
    `The same as the encoder serves it (${r.raw_encoder_as_served.intra_op_threads} intra-op thread(s), no spinning): ${rawList(r.raw_encoder_as_served.points)}.`,
    '',
    `Peak RSS: encoder ${f(r.peak_rss_bytes.encoder / 2 ** 20)} MiB, cascade ${f(r.peak_rss_bytes.cascade / 2 ** 20)} MiB, ` +
      `kserve-v2 cascade ${f(r.peak_rss_bytes.cascade_v2 / 2 ** 20)} MiB.`,
    '',
    '## Heads (bench/headTime.ts)',
    '',
    `| ${headKeys.join(' | ')} |`,
    `| ${headKeys.map(() => '---').join(' | ')} |`,
    ...heads.map((h) => `| ${headKeys.map((k) => cell(h[k])).join(' | ')} |`),
    '',
    '## Ratios',
    '',
    '| ratio | value |',
    '| --- | ---: |',
    ...Object.entries(r.ratios).map(([k, v]) => `| ${k} | ${f(v, 2)} |`),
    '',
  ].join('\n');
}
