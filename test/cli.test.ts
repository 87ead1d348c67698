import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../services/cascade/cascade.js';
import { type Bundle, loadBundle } from '../services/common/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import type { Evaluation } from '../cli/evaluate.js';
import { startMesh } from './helpers/mesh.js';

const run = promisify(execFile);
const mrl = async (...args: string[]) => (await run(process.execPath, ['bin/mrl.js', ...args], { maxBuffer: 1 << 24 })).stdout;

let bundle: Bundle;
let dir: string;
beforeAll(async () => {
  bundle = await loadBundle();
  dir = await mkdtemp(join(tmpdir(), 'mrl-cli-'));
});
afterAll(() => rm(dir, { recursive: true }));

describe('mrl --help', () => {
  it('lists the commands', async () => {
    const out = await mrl('--help');
    for (const c of ['start', 'classify', 'calibrate', 'eval', 'report']) expect(out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });
});

describe('mrl eval --json on the shipped bundle', () => {
  let cascade: Evaluation;
  let full: Evaluation;
  beforeAll(async () => {
    [cascade, full] = (await Promise.all([mrl('eval', '--json'), mrl('eval', '--json', '--policy', 'full')])).map((o) => JSON.parse(o) as Evaluation) as [Evaluation, Evaluation];
  });

  it('reports accuracy, average dimension, exits and every fixed size on the 10,000 test images', () => {
    expect(cascade.count).toBe(10_000);
    expect(Object.values(cascade.exits).reduce((a, b) => a + b, 0)).toBe(10_000);
    const avg = Object.entries(cascade.exits).reduce((s, [m, n]) => s + Number(m) * n, 0) / 10_000;
    expect(cascade.avg_dimension).toBeCloseTo(avg, 9);
    expect(Object.keys(cascade.per_dimension_accuracy).map(Number)).toEqual(bundle.nesting);
    expect(cascade.full_dimension_accuracy).toBe(cascade.per_dimension_accuracy[String(bundle.embeddingDim)]);
  });

  it('per-size accuracies agree with what PyTorch measured at training time (within 2 of 10,000 images)', () => {
    const torch = (bundle.meta.metrics as { test_accuracy: Record<string, Record<string, number>> }).test_accuracy[bundle.headKind]!;
    for (const m of bundle.nesting) expect(Math.abs(cascade.per_dimension_accuracy[String(m)]! - torch[String(m)]!)).toBeLessThanOrEqual(2e-4);
  });

  it('the full policy is the no-cascade baseline', () => {
    expect(full.avg_dimension).toBe(bundle.embeddingDim);
    expect(full.accuracy).toBe(cascade.full_dimension_accuracy);
    expect(full.exits[String(bundle.embeddingDim)]).toBe(10_000);
  });

  it('gives the numbers the report states for the bundle thresholds', async () => {
    const report = JSON.parse(await readFile(join(bundle.dir, 'report.json'), 'utf8')) as {
      cascade: { thresholds: number[]; test: { accuracy: number; avg_dimension: number } }[];
    };
    const row = report.cascade.find((p) => p.thresholds.every((t, i) => t === bundle.thresholds[i]));
    expect(row, 'a report row calibrated like the bundle').toBeDefined();
    expect(cascade.accuracy).toBe(row!.test.accuracy);
    expect(cascade.avg_dimension).toBe(row!.test.avg_dimension);
  });
});

describe('mrl calibrate', () => {
  it('writes thresholds that the running service then uses', async () => {
    const file = join(dir, 'thresholds.json');
    const printed = JSON.parse(await mrl('calibrate', '--max-avg-dim', '12', '--out', file, '--json')) as {
      thresholds: number[];
      calibration: { avg_dimension: number; split: string; model: string };
    };
    expect(printed.calibration.avg_dimension).toBeLessThanOrEqual(12);
    expect(printed.calibration.split).toBe('validation');
    expect(printed.calibration.model).toBe(bundle.id);
    const written = JSON.parse(await readFile(file, 'utf8')) as { thresholds: number[] };
    expect(written.thresholds).toEqual(printed.thresholds);

    const mesh = await startMesh({ MRL_THRESHOLDS_FILE: file });
    try {
      const slice = await loadTestSlice(bundle);
      const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
      for (let i = 0; i < 40; i++) {
        const tensor = sliceTensor(slice, i, bundle);
        const { embedding } = await encode(mesh.encoderClient, { tensor });
        const expected = cascade.classify(Float32Array.from(embedding), { thresholds: written.thresholds });
        const res = await classify(mesh.classifier, { tensor });
        expect(res.dimension_used).toBe(expected.dimensionUsed);
        res.trace.slice(0, -1).forEach((s, k) => expect(s.threshold).toBeCloseTo(written.thresholds[k]!, 6));
      }
    } finally {
      await mesh.stop();
    }
  });
});
