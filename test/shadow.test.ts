import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WatchView } from '../cli/watch.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice, type TestSlice } from '../cli/testSlice.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { scrape } from '../harness/prom.js';
import { MRL } from './helpers/mrl.js';

let bundle: Bundle;
let slice: TestSlice;
let mesh: TestMesh;

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  mesh = await startMesh({ MRL_SHADOW_RATE: '1' });
});
afterAll(() => mesh?.stop());

/** The shadow counter's series, as `dimension/agreed` → count. */
async function shadowCounts(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [series, value] of await scrape(mesh.cascade.metricsPort)) {
    const m = /^mrl_cascade_shadow_total\{dimension="(\d+)",agreed="(true|false)"\}$/.exec(series);
    if (m && value > 0) out.set(`${m[1]}/${m[2]}`, value);
  }
  return out;
}

describe('shadow agreement at MRL_SHADOW_RATE=1', () => {
  it('counts, request for request, what asking again with POLICY_FULL finds', async () => {
    const n = 400;
    const expected = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const tensor = sliceTensor(slice, i, bundle);
      const answer = await classify(mesh.classifier, { tensor });
      const full = await classify(mesh.classifier, { tensor, policy: 'POLICY_FULL' });
      expect(full.dimension_used).toBe(bundle.embeddingDim);
      const key = `${answer.dimension_used}/${answer.class_index === full.class_index}`;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    // Capped requests are not shadowed either: they could not have escalated to the full size.
    for (let i = 0; i < 20; i++) await classify(mesh.classifier, { tensor: sliceTensor(slice, i, bundle), max_dimension: bundle.nesting[2]! });
    // Nor is a full-length embedding sent with a cap: its answer could not have escalated either.
    const { embedding } = await encode(mesh.encoderClient, { tensor: sliceTensor(slice, 0, bundle) });
    for (let i = 0; i < 5; i++) await classify(mesh.classifier, { embedding: { values: embedding }, max_dimension: bundle.nesting[0]! });
    // The shadow answer is computed after the response: give it a moment to land.
    const until = Date.now() + 5000;
    let got = await shadowCounts();
    while ([...got.values()].reduce((a, b) => a + b, 0) < n && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      got = await shadowCounts();
    }
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(expected));
    // The slice is mostly agreed on, and the cascade does answer below the full size.
    expect([...expected.keys()].some((k) => !k.startsWith(`${bundle.embeddingDim}/`))).toBe(true);
  });

  it('mrl watch reports the same disagreement, per stage and overall, with its interval and the certificate', async () => {
    const url = `http://127.0.0.1:${mesh.cascade.metricsPort}/metrics`;
    const run = promisify(execFile);
    const counts = await shadowCounts();
    const view = JSON.parse((await run(process.execPath, [...MRL, 'watch', '--once', '--json', '--metrics', url])).stdout) as WatchView;
    const all = view.shadow.find((s) => s.dimension === 'all')!;
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const wrong = [...counts].filter(([k]) => k.endsWith('/false')).reduce((a, [, v]) => a + v, 0);
    expect(all.samples).toBe(total);
    expect(all.disagreement).toBeCloseTo(wrong / total, 12);
    expect(all.low).toBeLessThanOrEqual(all.disagreement);
    expect(all.high).toBeGreaterThan(all.disagreement);
    for (const s of view.shadow.filter((x) => x.dimension !== 'all'))
      expect(s.samples).toBe((counts.get(`${s.dimension}/true`) ?? 0) + (counts.get(`${s.dimension}/false`) ?? 0));
    expect(view.avgDimension).toBeGreaterThan(0);
    expect(view.certificate).toMatchObject({ risk: 'disagreement' });
    const text = (await run(process.execPath, [...MRL, 'watch', '--once', '--metrics', url])).stdout;
    expect(text).toMatch(/average dimension used: \d+\.\d\d/);
    expect(text).toMatch(/certificate: disagreement <= 0\.50% with probability >= 0\.95/);
  });

  it('exports the certificate the served thresholds carry', async () => {
    const metrics = await scrape(mesh.cascade.metricsPort);
    const certificate = (bundle.meta.calibration as { certificate: { epsilon: number; delta: number } }).certificate;
    expect(metrics.get('mrl_cascade_certificate_epsilon{risk="disagreement"}')).toBe(certificate.epsilon);
    expect(metrics.get('mrl_cascade_certificate_delta{risk="disagreement"}')).toBe(certificate.delta);
  });
});
