import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { BenchResult } from '../bench/run.js';
import { loadBundle } from '../matryoshka/bundle.js';

describe('npm run bench (quick smoke run)', () => {
  it('runs every part and writes a well-formed result', async () => {
    const out = await mkdtemp(join(tmpdir(), 'mrl-bench-'));
    try {
      await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', '--out', out], { maxBuffer: 1 << 24 });
      const r = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as BenchResult;
      expect(r.quick).toBe(true);
      expect(r.raw_encoder.map((p) => p.batch)).toEqual([1, 8]);
      expect(r.raw_encoder).toContainEqual(r.raw_best);
      expect(r.raw_encoder_as_served.intra_op_threads).toBe(1);
      expect(r.raw_encoder_as_served.points.map((p) => p.batch)).toEqual([8]);
      expect([...r.raw_encoder, ...r.raw_encoder_as_served.points].every((p) => p.images_per_second > 0)).toBe(true);
      const rounds = Object.values(r.rounds).flat();
      for (const p of [...r.echo, ...r.cascade, ...r.full, ...rounds, r.open_loop, r.bulk, r.bulk_packed]) {
        expect(p.calls).toBeGreaterThan(0);
        expect(p.errors).toEqual({});
        expect(p.p50_ms).toBeLessThanOrEqual(p.p99_ms);
        expect(p.cores_busy).toBeGreaterThan(0);
        expect(p.cpu_ms_per_answer).toBeGreaterThan(0);
      }
      // /proc counts in 10 ms ticks, which one short point of h2load may not fill; all of them do.
      expect(rounds.reduce((ms, p) => ms + p.process_cpu_ms_per_answer.h2load!, 0)).toBeGreaterThan(0);
      const servers = (points: BenchResult['echo']) => new Set(points.map((p) => Object.keys(p.server_cpu_seconds).join()));
      expect(servers([...r.echo, ...r.rounds.echo])).toEqual(new Set(['echo']));
      expect(servers(r.rounds.encode)).toEqual(new Set(['encoder']));
      const meshPoints = [...r.cascade, ...r.full, ...r.rounds.embedding, ...r.rounds.tensor, ...r.rounds.png, ...r.rounds.kserve_v2];
      expect(servers(meshPoints)).toEqual(new Set(['encoder,cascade']));
      const { nesting, embeddingDim } = await loadBundle();
      expect(r.full.every((p) => p.avg_dimension === embeddingDim)).toBe(true);
      expect(r.cascade.every((p) => p.avg_dimension! >= nesting[0]! && p.avg_dimension! <= embeddingDim)).toBe(true);
      expect(r.rounds.embedding.every((p) => p.avg_dimension! <= 8 && p.encoder_avg_batch === null)).toBe(true);
      // The same image and heads over either protocol: the same answers.
      expect(r.side_by_side.kserve_v2.avg_dimension).toBe(r.side_by_side.tensor.avg_dimension);
      for (const b of [r.bulk, r.bulk_packed]) expect(b.items_per_second).toBeCloseTo(b.rps * b.spec.batch!, 6);
      expect(r.heads.map((h) => h.kind)).toEqual(['mrl', 'mrl-e']);
      expect(Object.values(r.ratios).every((v) => Number.isFinite(v) && v > 0)).toBe(true);
      // Two rounds in a quick run, at c=8; the sweeps' c=8 points are the median rounds', and each ratio is the lower middle.
      expect(r.concurrency).toBe(8);
      expect(Object.values(r.rounds).map((points) => points.length)).toEqual([2, 2, 2, 2, 2, 2]);
      expect(r.echo.map((p) => p.spec.concurrency)).toEqual([1, 8]);
      expect(r.echo[1]).toEqual(r.side_by_side.echo);
      expect(r.cascade[1]).toEqual(r.side_by_side.tensor);
      const lowerMiddle = (a: keyof BenchResult['rounds'], b: keyof BenchResult['rounds']) =>
        Math.min(...r.rounds[a].map((p, i) => p.rps / r.rounds[b][i]!.rps));
      expect(r.ratios.unary_classify_c8_over_echo).toBe(lowerMiddle('tensor', 'echo'));
      expect(r.ratios.encoder_alone_over_echo_c8).toBe(lowerMiddle('encode', 'echo'));
      expect(r.ratios.png_classify_c8_over_tensor_classify_c8).toBe(lowerMiddle('png', 'tensor'));
      expect(r.ratios.kserve_v2_classify_c8_over_mrl_classify_c8).toBe(lowerMiddle('kserve_v2', 'tensor'));
      expect(r.ratios.tensor_classify_c8_over_raw_best_batch).toBe(Math.min(...r.rounds.tensor.map((p) => p.rps)) / r.raw_best.images_per_second);
      // The ceiling: the echo's CPU and the served model's per image, on every core.
      const served = r.raw_encoder_as_served.points.find((p) => p.batch === 8)!.images_per_second;
      expect(r.ratios.tensor_classify_ceiling_over_raw_best_batch).toBeCloseTo(r.machine.cpus / (r.side_by_side.echo.cpu_ms_per_answer / 1000 + 1 / served) / r.raw_best.images_per_second, 12);
      expect(r.ratios.tensor_classify_ceiling_over_raw_best_batch).toBeGreaterThan(r.ratios.tensor_classify_c8_over_raw_best_batch!);
      const md = await readFile(join(out, 'latest.md'), 'utf8');
      expect(md).toMatch(/## Side by side at c=8 \(the median of 2 rounds, each measuring these back to back\)/);
      expect(md).toMatch(/\| Classify, the same image as PNG \(a \d+-byte request\) \| \d+ \|/);
      expect(md).toMatch(/\| mesh, cascade \(tensor\) \| c=8 \|/);
      expect(md).toMatch(/By round: PNG ÷ tensor Classify \d+\.\d\d, \d+\.\d\d; kserve-v2 ÷ mrl tensor Classify \d+\.\d\d, \d+\.\d\d;/);
      expect(md).toMatch(/as the encoder serves it \(1 intra-op thread\(s\), no spinning\): 8: \d+\./);
    } finally {
      await rm(out, { recursive: true });
    }
  }, 180_000);
});
