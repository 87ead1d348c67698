import type { BenchResult, MeshPoint } from './run.js';
import type { LoadResult } from './loadClient.js';
import type { RawPoint } from './rawEncoder.js';

const f = (x: number | null | undefined, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(digits));
const rawList = (points: RawPoint[]) => points.map((p) => `${p.batch}: ${f(p.images_per_second)}`).join(', ');
const errs = (e: Record<string, number>) => Object.entries(e).map(([k, v]) => `${k} ${v}`).join(', ') || '0';

/** One target's ratios to the echo, round by round. */
const byRound = (r: BenchResult, points: number[]) => points.map((rps, i) => f(rps / r.rounds.echo_rps[i]!, 2)).join(', ');

function row(name: string, p: LoadResult | MeshPoint): string {
  const m = p as Partial<MeshPoint>;
  const load = p.spec.mode === 'open' ? `open ${p.spec.rate}/s` : `c=${p.spec.concurrency}${p.spec.batch ? ` × ${p.spec.batch}` : ''}`;
  const servers = Object.values(p.server_cpu_seconds).map((s) => f(s, 1)).join(' + ');
  return `| ${name} | ${load} | ${f(p.items_per_second)} | ${f(p.p50_ms, 2)} | ${f(p.p95_ms, 2)} | ${f(p.p99_ms, 2)} | ${errs(p.errors)} | ${f(p.avg_dimension, 1)} | ${f(m.encoder_avg_batch, 1)} | ${servers} / ${f(p.client_cpu_seconds, 1)} | ${f(p.cores_busy, 2)} | ${f(p.cpu_ms_per_answer, 2)} |`;
}

/** The benchmark as the Markdown table the README quotes. */
export function markdownReport(r: BenchResult): string {
  return [
    `# Benchmark ${r.quick ? '(quick smoke run) ' : ''}${r.date}`,
    '',
    `Machine: ${r.machine.cpus} × ${r.machine.cpu_model}, ${r.machine.memory_gib} GiB, Node ${r.machine.node}; services and client share the machine.` +
      (Object.keys(r.settings).length ? ` Mesh settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${v}`).join(', ')}.` : ''),
    '',
    'CPU is read over each point\'s measured window: servers (echo; or encoder + cascade) / client, then cores busy in all, and CPU ms per answer.',
    '',
    '| what | load | answers/s | p50 ms | p95 ms | p99 ms | errors | avg dim | encoder batch | CPU s servers / client | cores busy | CPU ms / answer |',
    '| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |',
    ...r.echo.map((p) => row('grpc-js echo (transport limit)', p)),
    row('encoder alone, Encode', r.encoder_alone),
    ...r.cascade.map((p) => row('mesh, cascade', p)),
    ...r.full.map((p) => row('mesh, full size', p)),
    row('mesh, cascade, half saturated rate', r.open_loop),
    row('mesh, ClassifyBatch (bulk), requests', r.bulk),
    row('mesh, ClassifyBatch (bulk), packed tensor', r.bulk_packed),
    '',
    `Raw onnxruntime-node (compute limit), images/s by batch: ${rawList(r.raw_encoder)}.`,
    `The same as the encoder serves it (${r.raw_encoder_as_served.intra_op_threads} intra-op thread(s), no spinning): ${rawList(r.raw_encoder_as_served.points)}.`,
    '',
    `Peak RSS: encoder ${f(r.peak_rss_bytes.encoder / 2 ** 20)} MiB, cascade ${f(r.peak_rss_bytes.cascade / 2 ** 20)} MiB.`,
    '',
    '| heads (L = 1000, d = 2048) | avg dim | cascade µs/req | full µs/req | time ratio | dim ratio |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.heads.map((h) => `| ${h.kind} | ${f(h.avg_dimension, 1)} | ${f(h.cascade_us_per_request)} | ${f(h.full_us_per_request)} | ${f(h.time_ratio, 3)} | ${f(h.dimension_ratio, 3)} |`),
    '',
    `By round, each measured back to back at c=${r.rounds.concurrency} (the ratios below are their medians): ` +
      `unary Classify ÷ echo ${byRound(r, r.rounds.classify_rps)}; encoder alone ÷ echo ${byRound(r, r.rounds.encode_rps)}.`,
    '',
    '| ratio | value |',
    '| --- | ---: |',
    ...Object.entries(r.ratios).map(([k, v]) => `| ${k} | ${f(v, 2)} |`),
    '',
  ].join('\n');
}
