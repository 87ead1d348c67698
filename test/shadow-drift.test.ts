import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify, float32Bytes } from '../cli/clients.js';
import { type LabelledImages, loadSplit } from '../cli/fashionMnist.js';
import { fewestInputs } from '../matryoshka/certify.js';
import { type Bundle, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { histogramMean, scrape } from '../harness/prom.js';
import { type RunningPrometheus, startPrometheus, waitFor } from './helpers/prometheusServer.js';

const ALERT = 'MrlCascadeShadowDisagreementHigh';
const RESERVOIR = 2000;

let bundle: Bundle;
let images: LabelledImages;
let mesh: TestMesh;
let prometheus: RunningPrometheus;
let dir: string;

/** Test image i as a tensor, its pixels inverted when `drifted` (a light background, as in photos). */
function tensor(i: number, drifted: boolean) {
  const px = images.images.slice(i * 784, (i + 1) * 784);
  if (drifted) for (let j = 0; j < px.length; j++) px[j] = 255 - px[j]!;
  return { shape: [1, 28, 28], raw: float32Bytes(pixelsToInput(px, bundle.input)) };
}

/** Classifies test images from..to-1, 16 at a time. */
async function send(from: number, to: number, drifted: boolean): Promise<void> {
  for (let i = from; i < to; i += 16)
    await Promise.all(Array.from({ length: Math.min(16, to - i) }, (_, j) => classify(mesh.classifier, { tensor: tensor(i + j, drifted) })));
}

const shadowTotal = (m: Map<string, number>, agreed?: 'true' | 'false') =>
  [...m].filter(([k]) => k.startsWith('mrl_cascade_shadow_total{') && (!agreed || k.includes(`agreed="${agreed}"`))).reduce((a, [, v]) => a + v, 0);

/** Waits until every answer sent has its shadow sample counted. */
async function settled(expected: number): Promise<Map<string, number>> {
  return waitFor('the shadow samples', async () => {
    const m = await scrape(mesh.cascade.metricsPort);
    return shadowTotal(m) >= expected ? m : undefined;
  });
}

beforeAll(async () => {
  bundle = await loadBundle();
  images = await loadSplit('test');
  dir = await mkdtemp(join(tmpdir(), 'mrl-drift-'));
  // The alert as shipped, but firing at once: its 10-minute `for` is covered by the promtool test.
  const rules = (await readFile(new URL('../k8s/monitoring/rules.yaml', import.meta.url), 'utf8')).replace(
    new RegExp(`(alert: ${ALERT}\\n(?:.*\\n)*?\\s+for: )10m`),
    '$10s',
  );
  expect(rules).toMatch(new RegExp(`alert: ${ALERT}\\n.*\\n\\s+for: 0s`));
  await writeFile(join(dir, 'rules.yaml'), rules);
  mesh = await startMesh({ MRL_SHADOW_RATE: '1', MRL_SHADOW_RECALIBRATE: '1', MRL_SHADOW_RESERVOIR: String(RESERVOIR), MRL_SHADOW_RECALIBRATE_MS: '3600000' });
  prometheus = await startPrometheus({ targets: [{ job: 'cascade', port: mesh.cascade.metricsPort }], ruleFiles: [join(dir, 'rules.yaml')] });
  await waitFor('the shadow counter in Prometheus', async () => ((await prometheus.query('mrl_cascade_shadow_total')).length > 0 ? true : undefined));
}, 120_000);

afterAll(async () => {
  await prometheus?.stop();
  await mesh?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('drift: inputs change under certified thresholds', () => {
  it('the live disagreement rises above ε and the alert fires; re-certified thresholds bring it back under ε, at a higher average dimension', async () => {
    const epsilon = (bundle.meta.calibration as { certificate: { epsilon: number } }).certificate.epsilon;
    expect(fewestInputs({ epsilon, delta: 0.05 })).toBeLessThan(RESERVOIR);
    const metric = (m: Map<string, number>, name: string) => m.get(name) ?? 0;
    const start = await scrape(mesh.cascade.metricsPort);

    // The distribution the thresholds were certified on: the cascade agrees with its full size.
    await send(0, 1500, false);
    const clean = await settled(1500);
    const cleanDisagreement = shadowTotal(clean, 'false') / shadowTotal(clean);
    expect(cleanDisagreement).toBeLessThanOrEqual(epsilon);
    expect(metric(clean, 'mrl_cascade_threshold_reloads_total{result="recertified"}')).toBe(0);

    // Drift: polarity inverted. Early exits stop agreeing with the full size.
    await send(1500, 4500, true);
    const drifted = await settled(4500);
    const driftDisagreement = (shadowTotal(drifted, 'false') - shadowTotal(clean, 'false')) / 3000;
    expect(driftDisagreement).toBeGreaterThan(epsilon);
    await waitFor(`${ALERT} firing in Prometheus`, async () =>
      (await prometheus.query(`ALERTS{alertname="${ALERT}", alertstate="firing"}`)).length === 1 ? true : undefined,
    );

    // The cascade re-certified on what it sampled, and serves the new thresholds.
    const recertified = await waitFor('a re-certification', async () => {
      const m = await scrape(mesh.cascade.metricsPort);
      return metric(m, 'mrl_cascade_threshold_reloads_total{result="recertified"}') > 0 ? m : undefined;
    });
    const moved = bundle.nesting.slice(0, -1).some((d, k) => recertified.get(`mrl_cascade_threshold{dimension="${d}"}`) !== bundle.thresholds[k]);
    expect(moved).toBe(true);
    // Let it settle on a reservoir of drifted samples only, then measure on fresh ones.
    await send(4500, 6500, true);
    const before = await settled(6500);
    await send(6500, 8000, true);
    const after = await settled(8000);
    const freshDisagreement = (shadowTotal(after, 'false') - shadowTotal(before, 'false')) / 1500;
    expect(freshDisagreement).toBeLessThanOrEqual(epsilon);
    // The price, shown: more dimensions per answer than under the thresholds certified for clean inputs.
    const cleanDim = histogramMean(start, clean, 'mrl_cascade_dimension_used')!;
    const freshDim = histogramMean(before, after, 'mrl_cascade_dimension_used')!;
    expect(freshDim).toBeGreaterThan(cleanDim);
  });
});
