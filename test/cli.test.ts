import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import type { Evaluation } from '../cli/evaluate.js';
import { startMesh } from '../harness/mesh.js';
import { mrl as run } from './helpers/mrl.js';

const mrl = async (...args: string[]) => (await run(...args)).stdout;

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

  it('measures disagreement with the full size and the accuracy of each stage\'s exits', () => {
    // Recomputed from the exits: the accuracy is the exit-weighted mean of the per-stage exit accuracies.
    const weighted = Object.entries(cascade.exit_accuracy).reduce((a, [m, acc]) => a + acc * cascade.exits[m]!, 0) / cascade.count;
    expect(weighted).toBeCloseTo(cascade.accuracy, 9);
    expect(Object.keys(cascade.exit_accuracy).every((m) => cascade.exits[m]! > 0)).toBe(true);
    expect(cascade.disagreement).toBeGreaterThanOrEqual(0);
    // Disagreeing is the only way to differ from the full size's accuracy.
    expect(Math.abs(cascade.accuracy - cascade.full_dimension_accuracy)).toBeLessThanOrEqual(cascade.disagreement + 1e-12);
    expect(full.disagreement).toBe(0);
  });

  it('gives the numbers the report states for the served thresholds', async () => {
    const report = JSON.parse(await readFile(join(bundle.dir, 'report.json'), 'utf8')) as {
      served: { thresholds: number[]; accuracy: number; avg_dimension: number; disagreement: number };
    };
    report.served.thresholds.forEach((t, k) => expect(t).toBeCloseTo(bundle.thresholds[k]!, 5));
    expect(cascade.accuracy).toBeCloseTo(report.served.accuracy, 5);
    expect(cascade.avg_dimension).toBeCloseTo(report.served.avg_dimension, 3);
    expect(cascade.disagreement).toBeCloseTo(report.served.disagreement, 5);
  });
});

describe('mrl report', () => {
  it('reproduces the shipped report, and a second run rewrites nothing', async () => {
    const copy = join(dir, 'bundle');
    await cp(bundle.dir, copy, { recursive: true });
    await mrl('report', '--model', copy, '--json');
    const files = ['report.json', 'pareto.svg', 'README.md'];
    for (const f of files) expect(await readFile(join(copy, f), 'utf8'), f).toBe(await readFile(join(bundle.dir, f), 'utf8'));
    const before = await Promise.all(files.map(async (f) => (await stat(join(copy, f))).mtimeMs));
    await mrl('report', '--model', copy, '--json');
    expect(await Promise.all(files.map(async (f) => (await stat(join(copy, f))).mtimeMs))).toEqual(before);
  }, 120_000);
});

describe('the default bundle\'s certified cascade, on the test split', () => {
  let e: Evaluation;
  let certificate: { risk: string; epsilon: number; delta: number; n: number; method: string; bound: number };
  beforeAll(async () => {
    e = JSON.parse(await mrl('eval', '--json')) as Evaluation;
    certificate = (bundle.meta.calibration as { certificate: typeof certificate }).certificate;
  });

  it('ships thresholds certified at disagreement ≤ 0.005 with δ = 0.05, and the bound holds on test', () => {
    expect(certificate).toMatchObject({ risk: 'disagreement', epsilon: 0.005, delta: 0.05 });
    expect(certificate.n).toBeGreaterThanOrEqual(1000);
    expect(certificate.bound).toBeLessThanOrEqual(certificate.epsilon);
    expect(certificate.method).toMatch(/Learn then Test/);
    expect(e.disagreement).toBeLessThanOrEqual(certificate.epsilon);
  });

  it('is within 0.2 points of the full size, and the full size reaches 93.3%', () => {
    expect(e.full_dimension_accuracy).toBeGreaterThanOrEqual(0.933);
    expect(e.accuracy).toBeGreaterThanOrEqual(e.full_dimension_accuracy - 0.002);
  });

  it('beats every fixed size at its own accuracy, with at least three stages answering 2% of images or more', () => {
    const matching = bundle.nesting.find((m) => e.per_dimension_accuracy[String(m)]! >= e.accuracy);
    expect(matching, 'a fixed size as accurate as the cascade').toBeDefined();
    expect(e.avg_dimension).toBeLessThan(matching!);
    expect(Object.values(e.exits).filter((n) => n >= 0.02 * e.count).length).toBeGreaterThanOrEqual(3);
  });
});

describe('mrl calibrate', () => {
  it('certifies by default and writes a thresholds file naming its model, which the running service then uses', async () => {
    const file = join(dir, 'thresholds.json');
    const printed = JSON.parse(await mrl('calibrate', '--epsilon', '0.01', '--out', file, '--json')) as {
      thresholds: number[];
      temperatures: number[];
      calibration: { avg_dimension: number; split: string; model: string; certificate: { risk: string; epsilon: number; delta: number; bound: number } };
    };
    expect(printed.calibration.certificate).toMatchObject({ risk: 'disagreement', epsilon: 0.01, delta: 0.05 });
    expect(printed.calibration.certificate.bound).toBeLessThanOrEqual(0.01);
    expect(printed.calibration.split).toBe('validation');
    expect(printed.calibration.model).toBe(bundle.id);
    const written = JSON.parse(await readFile(file, 'utf8')) as { model: string; thresholds: number[]; temperatures: number[] };
    expect(written.model).toBe(bundle.id);
    expect(written.thresholds).toEqual(printed.thresholds);
    expect(written.temperatures).toEqual(printed.temperatures);

    const mesh = await startMesh({ MRL_THRESHOLDS_FILE: file });
    try {
      const slice = await loadTestSlice(bundle);
      const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
      for (let i = 0; i < 40; i++) {
        const tensor = sliceTensor(slice, i, bundle);
        const { embedding } = await encode(mesh.encoderClient, { tensor });
        const expected = cascade.classify(Float32Array.from(embedding), written);
        const res = await classify(mesh.classifier, { tensor });
        expect(res.dimension_used).toBe(expected.dimensionUsed);
        expect(res.confidence).toBeCloseTo(expected.confidence, 6);
        res.trace.slice(0, -1).forEach((s, k) => expect(s.threshold).toBeCloseTo(written.thresholds[k]!, 6));
      }
    } finally {
      await mesh.stop();
    }
  });

  it('keeps the accuracy-target search, labelled uncertified', async () => {
    const printed = JSON.parse(await mrl('calibrate', '--max-avg-dim', '12', '--dry-run', '--json')) as {
      calibration: { avg_dimension: number; method: string; certificate?: unknown };
    };
    expect(printed.calibration.avg_dimension).toBeLessThanOrEqual(12);
    expect(printed.calibration.method).toMatch(/uncertified/);
    expect(printed.calibration.certificate).toBeUndefined();
  });

  it('refuses options of both kinds together', async () => {
    await expect(mrl('calibrate', '--tolerance', '0.01', '--epsilon', '0.01')).rejects.toThrow(/give one kind/);
  });
});
