import type { ServiceError } from '@grpc/grpc-js';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import { loadTestSlice, type TestSlice } from '../cli/testSlice.js';
import {
  dashboardQueries,
  exportedNames,
  find,
  metricNames,
  readDashboard,
  readRules,
  recordedNames,
  renderOverlay,
  RULES_FILE,
} from './helpers/deploy.js';
import { healthCheck } from '../harness/health.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { type RunningPrometheus, startPrometheus, waitFor } from './helpers/prometheusServer.js';

let mesh: TestMesh;
let prometheus: RunningPrometheus;
let bundle: Bundle;
let slice: TestSlice;

const tensorOf = (i: number) => sliceTensor(slice, i, bundle);
/** The value of a one-series instant query, or undefined while it has no (or several) series. */
const single = async (expr: string) => {
  const samples = await prometheus.query(expr);
  return samples.length === 1 ? samples[0] : undefined;
};

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  mesh = await startMesh();
  prometheus = await startPrometheus({
    targets: [
      { job: 'cascade', port: mesh.cascade.metricsPort },
      { job: 'encoder', port: mesh.encoder.metricsPort },
    ],
    ruleFiles: [RULES_FILE],
  });
  // Both scraped before any call: the histogram's first samples are 0, as for a new pod.
  await waitFor('both targets up', async () => ((await prometheus.query('up == 1')).length === 2 ? true : undefined));
  await waitFor('the dimension histogram in Prometheus', () => single('mrl_cascade_dimension_used_count'));
});

afterAll(async () => {
  await prometheus?.stop();
  await mesh?.stop();
});

describe('a real Prometheus scraping the real services, with the rules from k8s/monitoring/rules.yaml', () => {
  it('reads back through the recording rule the average dimension the responses show', async () => {
    const full = await encode(mesh.encoderClient, { tensor: tensorOf(40), dimension: 128 });
    const requests: ClassifyRequest[] = [
      // The cascade picks the dimension.
      ...Array.from({ length: 12 }, (_, i) => ({ tensor: tensorOf(i) })),
      // The full size, and capped sizes.
      ...Array.from({ length: 3 }, (_, i) => ({ tensor: tensorOf(20 + i), policy: 'POLICY_FULL' as const })),
      ...Array.from({ length: 4 }, (_, i) => ({ tensor: tensorOf(30 + i), max_dimension: 16, policy: 'POLICY_FULL' as const })),
      ...Array.from({ length: 2 }, (_, i) => ({ tensor: tensorOf(35 + i), max_dimension: 64, policy: 'POLICY_FULL' as const })),
      // A precomputed 128-d prefix: no encoder call.
      { embedding: { values: full.embedding }, policy: 'POLICY_FULL' as const },
      { embedding: { values: full.embedding } },
    ];
    const answers = [];
    for (const request of requests) answers.push(await classify(mesh.classifier, request));
    // A client's bad input is answered, but answers at no dimension.
    await classify(mesh.classifier, { embedding: { values: [1, 2, 3] } }).then(
      () => expect.fail('expected INVALID_ARGUMENT'),
      (err: ServiceError) => expect(err.details).toMatch(/embedding has 3 values/),
    );
    const dims = answers.map((a) => a.dimension_used);
    expect(new Set(dims).size, `dimension_used should vary: ${dims}`).toBeGreaterThanOrEqual(4);
    const expected = dims.reduce((s, d) => s + d, 0) / dims.length;

    // The scrape that saw every call, then a rule evaluation after it.
    const scraped = await waitFor('the last calls scraped', async () => {
      const s = await single('mrl_cascade_dimension_used_count');
      return s?.value === answers.length ? (await single('timestamp(mrl_cascade_dimension_used_count)'))!.value : undefined;
    });
    await waitFor('a rule evaluation after that scrape', async () => {
      const t = await single('timestamp(mrl_cascade:dimension_used:avg_rate5m)');
      return t && t.value > scraped ? true : undefined;
    });
    const recorded = await single('mrl_cascade:dimension_used:avg_rate5m');
    expect(recorded?.metric).toEqual({ __name__: 'mrl_cascade:dimension_used:avg_rate5m', job: 'cascade' });
    expect(recorded!.value).toBeCloseTo(expected, 6);

    // The contract's own formula, and the dashboard's first panel, agree.
    const contract = await single('rate(mrl_cascade_dimension_used_sum[5m]) / rate(mrl_cascade_dimension_used_count[5m])');
    expect(contract!.value).toBeCloseTo(expected, 6);
    const firstPanel = readDashboard().panels[0]!.targets![0]!.expr.replaceAll('$namespace', '').replaceAll('$__rate_interval', '5m');
    expect((await single(firstPanel))!.value).toBeCloseTo(expected, 6);

    // The other recording rules have data too (a counter's labelled series needs two scrapes for a rate).
    await waitFor('request rates by code', async () => {
      const codes = (await prometheus.query('mrl_cascade:requests:rate5m')).map((s) => s.metric.code).sort();
      return codes.join() === 'INVALID_ARGUMENT,OK' ? true : undefined;
    });
    for (const rule of ['mrl_cascade:request_duration_seconds:p99_rate5m', 'mrl_encoder:request_duration_seconds:p99_rate5m'])
      expect((await waitFor(rule, () => single(rule))).value, rule).toBeGreaterThan(0);
    expect(await prometheus.query('ALERTS{alertstate="firing"}')).toEqual([]);
  });

  it('the health service names the probes ask for are SERVING on the real services', async () => {
    const objects = await renderOverlay('cpu');
    const ports = { encoder: mesh.encoder.port, cascade: mesh.cascade.port };
    for (const name of ['encoder', 'cascade'] as const) {
      const c = find<IDeployment>(objects, 'Deployment', name).spec!.template.spec!.containers[0]!;
      for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe])
        expect(await healthCheck(ports[name], probe!.grpc!.service ?? ''), `${name} ${probe!.grpc!.service}`).toBe('SERVING');
    }
  });
});

describe('the Grafana dashboard (k8s/monitoring/dashboards/mrl-cascade.json)', () => {
  it('parses, and puts the average dimension used first', () => {
    const dashboard = readDashboard();
    expect(dashboard.uid).toBe('mrl-cascade');
    const byPosition = [...dashboard.panels].sort((a, b) => a.gridPos.y - b.gridPos.y || a.gridPos.x - b.gridPos.x);
    expect(byPosition[0]).toBe(dashboard.panels[0]);
    expect(dashboard.panels[0]!.title).toBe('Average dimension used');
    expect(dashboard.panels[0]!.targets![0]!.expr).toMatch(/rate\(mrl_cascade_dimension_used_sum.*\/.*rate\(mrl_cascade_dimension_used_count/);
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [/exits per stage/i, /escalation/i, /requests by code/i, /latency/i, /batch size/i, /queue wait/i, /breaker state/i])
      expect(titles.some((t) => wanted.test(t)), String(wanted)).toBe(true);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  });

  it('every metric its queries (and the rules) read is one the running services export or the rules record', async () => {
    const exported = new Set<string>();
    for (const port of [mesh.cascade.metricsPort, mesh.encoder.metricsPort])
      for (const name of exportedNames(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())) exported.add(name);
    const groups = readRules();
    const recorded = recordedNames(groups);
    const unknown = (exprs: string[]) => exprs.flatMap((e) => metricNames(e)).filter((n) => !exported.has(n) && !recorded.has(n));
    const queries = dashboardQueries(readDashboard());
    expect(queries.length).toBeGreaterThan(15);
    for (const q of queries) expect(metricNames(q).length, q).toBeGreaterThan(0);
    expect(unknown(queries)).toEqual([]);
    expect(unknown(groups.flatMap((g) => g.rules.map((r) => r.expr)))).toEqual([]);
    // The lexer is not vacuous.
    expect(unknown(['sum(rate(mrl_cascade_dimension_usde_sum[5m]))'])).toEqual(['mrl_cascade_dimension_usde_sum']);
  });

  it('every query is PromQL that Prometheus accepts', async () => {
    for (const q of dashboardQueries(readDashboard())) {
      const expr = q.replaceAll('$namespace', '').replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m');
      await expect(prometheus.query(expr), expr).resolves.toBeDefined();
    }
  });
});
