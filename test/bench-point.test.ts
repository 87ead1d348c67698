import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { PointReport } from '../bench/measurePoint.js';

const point = async (args: string[]) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/point.ts', '--warmup-ms', '200', '--duration-ms', '600', ...args]);
  return JSON.parse(stdout) as PointReport;
};

describe('npm run bench:point (one load point taken apart)', () => {
  it('splits each process CPU per answer and reads the stages from the metrics, with --set reaching the mesh', async () => {
    // MRL_MAX_BATCH=1 is the encoder's: each inference runs one image, whatever the cascade sends.
    const r = await point(['--call', 'classify', '--concurrency', '4', '--set', 'MRL_MAX_BATCH=1']);
    expect(r.spec).toMatchObject({ call: 'classify', concurrency: 4 });
    expect(r.spec.rate).toBeUndefined(); // a closed loop
    expect(r.answers_per_second).toBeGreaterThan(0);
    expect(r.errors).toEqual({});
    const cpu = r.cpu_ms_per_answer;
    for (const v of [cpu.encoder.main, cpu.cascade.main, cpu.encoder.other]) expect(v).toBeGreaterThan(0);
    // /proc counts in 10 ms ticks: h2load may spend less than one in this short a point.
    expect(cpu.client).toBeGreaterThanOrEqual(0);
    expect(cpu.cascade.other).toBeGreaterThanOrEqual(0);
    expect(r.machine_idle_share).toBeGreaterThanOrEqual(0);
    expect(r.machine_idle_share).toBeLessThanOrEqual(1);
    expect(r.stages.encoder_avg_batch).toBe(1);
    expect(r.stages.cascade_calls_in_flight).toBeGreaterThan(0);
    expect(r.stages.encoder_calls_in_flight).toBeGreaterThan(0);
    expect(r.stages.inference_busy_share).toBeGreaterThan(0);
  }, 120_000);

  it('drives the encoder alone for --call encode, and refuses an unknown call', async () => {
    const r = await point(['--call', 'encode', '--concurrency', '4']);
    expect(r.stages.cascade_calls_in_flight).toBeUndefined();
    expect(r.stages.encoder_avg_batch).toBeGreaterThanOrEqual(1);
    expect(r.stages.encoder_avg_batch).toBeLessThanOrEqual(4);
    await expect(point(['--call', 'nonsense'])).rejects.toThrow(/--call takes one of classify, classify-full, classify-embedding, classify-png, classify-batch, classify-packed, encode, got nonsense/);
  }, 120_000);
});
