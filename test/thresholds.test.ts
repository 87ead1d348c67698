import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { ThresholdStore } from '../services/cascade/thresholds.js';
import { silentLogger } from '../services/common/logger.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { scrape } from '../harness/prom.js';

let dir: string;
let file: string;
let mesh: TestMesh;
let bundle: Bundle;
let tensor: { shape: number[]; raw: Buffer };

/** Replaces the file the way a ConfigMap update does: a new file renamed over the old one. */
async function writeThresholds(thresholds: number[] | string, model = bundle.id): Promise<void> {
  const next = join(dir, 'next.json');
  await writeFile(next, typeof thresholds === 'string' ? thresholds : JSON.stringify({ model, thresholds }));
  await rename(next, file);
}

async function dimensionUsedEventually(expected: number): Promise<void> {
  const until = Date.now() + 5000;
  let last = 0;
  while (Date.now() < until) {
    last = (await classify(mesh.classifier, { tensor })).dimension_used;
    if (last === expected) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(last).toBe(expected);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mrl-thresholds-'));
  file = join(dir, 'thresholds.json');
  bundle = await loadBundle();
  await writeThresholds(new Array(bundle.nesting.length - 1).fill(0));
  mesh = await startMesh({ MRL_THRESHOLDS_FILE: file, MRL_THRESHOLDS_POLL_MS: '20' });
  // An image that no stage is certain about, so thresholds of 1 make every stage escalate.
  const slice = await loadTestSlice(bundle);
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  for (let i = 0; i < slice.count; i++) {
    tensor = sliceTensor(slice, i, bundle);
    const { embedding } = await encode(mesh.encoderClient, { tensor });
    if (cascade.allStages(Float32Array.from(embedding)).every((s) => s.topProbability < 0.999)) break;
  }
});
afterAll(async () => {
  await mesh.stop();
  await rm(dir, { recursive: true });
});

describe('thresholds override file', () => {
  it('is what the running service uses, and a change takes effect without a restart', async () => {
    await dimensionUsedEventually(bundle.nesting[0]!);
    await writeThresholds(new Array(bundle.nesting.length - 1).fill(1));
    await dimensionUsedEventually(bundle.embeddingDim);
    const metrics = await scrape(mesh.cascade.metricsPort);
    expect(metrics.get(`mrl_cascade_threshold{dimension="${bundle.nesting[0]}"}`)).toBe(1);
  });

  /** Writes `write`'s file, waits for the reload counter of `result` to move, and checks the last good thresholds stay. */
  async function expectRefused(result: string, write: () => Promise<void>): Promise<void> {
    await writeThresholds(new Array(bundle.nesting.length - 1).fill(1));
    await dimensionUsedEventually(bundle.embeddingDim);
    const metric = `mrl_cascade_threshold_reloads_total{result="${result}"}`;
    const before = (await scrape(mesh.cascade.metricsPort)).get(metric) ?? 0;
    await write();
    const until = Date.now() + 5000;
    while (Date.now() < until && ((await scrape(mesh.cascade.metricsPort)).get(metric) ?? 0) === before) await new Promise((r) => setTimeout(r, 20));
    expect((await scrape(mesh.cascade.metricsPort)).get(metric)).toBe(before + 1);
    expect((await classify(mesh.classifier, { tensor })).dimension_used).toBe(bundle.embeddingDim);
    expect((await scrape(mesh.cascade.metricsPort)).get(`mrl_cascade_threshold{dimension="${bundle.nesting[0]}"}`)).toBe(1);
  }

  it('a broken file is refused and the last good thresholds stay', async () => {
    await expectRefused('error', () => writeThresholds([0.5, 0.5]));
  });

  it('a file calibrated for another model is refused, counted and the last good thresholds stay', async () => {
    await expectRefused('wrong_model', () => writeThresholds(new Array(bundle.nesting.length - 1).fill(0), 'fashion-mnist-mrl-e@' + bundle.version));
  });

  it('a file with its own temperatures is served with them', async () => {
    // Very high temperatures flatten every stage's softmax below any threshold of 0.5, so the last stage answers.
    const thresholds = new Array(bundle.nesting.length - 1).fill(0.5);
    await writeThresholds(JSON.stringify({ model: bundle.id, thresholds, temperatures: bundle.nesting.map(() => 1e6) }));
    await dimensionUsedEventually(bundle.embeddingDim);
    await writeThresholds(JSON.stringify({ model: bundle.id, thresholds: new Array(bundle.nesting.length - 1).fill(0), temperatures: bundle.nesting.map(() => 1e6) }));
    await dimensionUsedEventually(bundle.nesting[0]!);
  });
});

describe('thresholds re-certified on live traffic', () => {
  it('are served until the thresholds file changes, which wins', async () => {
    const path = join(dir, 'store.json');
    const fileThresholds = new Array(bundle.nesting.length - 1).fill(0.9);
    await writeFile(path, JSON.stringify({ model: bundle.id, thresholds: fileThresholds }));
    const changes: string[] = [];
    const store = new ThresholdStore(bundle, { path, pollMs: 60_000, onChange: (result) => changes.push(result) }, silentLogger);
    try {
      const live = new Array(bundle.nesting.length - 1).fill(0.99);
      store.recertified(live, { risk: 'disagreement', epsilon: 0.01, delta: 0.05 });
      expect(store.current.thresholds).toEqual(live);
      expect(store.current.certificate).toEqual({ risk: 'disagreement', epsilon: 0.01, delta: 0.05 });
      expect(store.current.temperatures).toEqual(bundle.temperatures);
      await writeFile(path, JSON.stringify({ model: bundle.id, thresholds: fileThresholds.map(() => 0.5) }));
      store.reload();
      expect(store.current.thresholds).toEqual(fileThresholds.map(() => 0.5));
      expect(changes).toEqual(['recertified', 'ok']);
    } finally {
      store.close();
    }
  });
});
