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
      expect(r.raw_encoder_as_served.intra_op_threads).toBe(1);
      expect(r.raw_encoder_as_served.points.map((p) => p.batch)).toEqual([8]);
      expect([...r.raw_encoder, ...r.raw_encoder_as_served.points].every((p) => p.images_per_second > 0)).toBe(true);
      for (const p of [...r.echo, ...r.cascade, ...r.full, r.encoder_alone, r.open_loop, r.bulk, r.bulk_packed]) {
        expect(p.requests).toBeGreaterThan(0);
        expect(p.errors).toEqual({});
        expect(p.p50_ms).toBeLessThanOrEqual(p.p99_ms);
        expect(p.cores_busy).toBeGreaterThan(0);
        expect(p.cpu_ms_per_answer).toBeGreaterThan(0);
      }
      expect(r.echo.every((p) => Object.keys(p.server_cpu_seconds).join() === 'echo')).toBe(true);
      expect([...r.cascade, r.encoder_alone].every((p) => Object.keys(p.server_cpu_seconds).join() === 'encoder,cascade')).toBe(true);
      const { nesting, embeddingDim } = await loadBundle();
      expect(r.full.every((p) => p.avg_dimension === embeddingDim)).toBe(true);
      for (const b of [r.bulk, r.bulk_packed]) expect(b.items_per_second).toBeCloseTo(b.rps * b.spec.batch!, 6);
      expect(r.cascade.every((p) => p.avg_dimension! >= nesting[0]! && p.avg_dimension! <= embeddingDim)).toBe(true);
      expect(r.heads.map((h) => h.kind)).toEqual(['mrl', 'mrl-e']);
      expect(Object.values(r.ratios).every((v) => Number.isFinite(v) && v > 0)).toBe(true);
      // Two rounds in a quick run, measured apart from the sweeps; each ratio is the lower middle.
      const rounds = r.rounds;
      expect([rounds.concurrency, rounds.echo_rps.length, rounds.classify_rps.length, rounds.encode_rps.length]).toEqual([8, 2, 2, 2]);
      expect([...rounds.echo_rps, ...rounds.classify_rps, ...rounds.encode_rps].every((rps) => rps > 0)).toBe(true);
      const lowerMiddle = (points: number[]) => Math.min(...points.map((c, i) => c / rounds.echo_rps[i]!));
      expect(r.ratios.unary_classify_c8_over_echo).toBe(lowerMiddle(rounds.classify_rps));
      expect(r.ratios.encoder_alone_over_echo_c8).toBe(lowerMiddle(rounds.encode_rps));
      const md = await readFile(join(out, 'latest.md'), 'utf8');
      expect(md).toMatch(/\| mesh, cascade \| c=8 \|/);
      expect(md).toMatch(/By round, each measured back to back at c=8 \(the ratios below are their medians\): unary Classify ÷ echo \d+\.\d\d, \d+\.\d\d; encoder alone ÷ echo \d+\.\d\d, \d+\.\d\d\./);
      expect(md).toMatch(/as the encoder serves it \(1 intra-op thread\(s\), no spinning\): 8: \d+\./);
    } finally {
      await rm(out, { recursive: true });
    }
  }, 180_000);
});
