import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { K8S, readRules, recordedNames, RULES_FILE, RULES_TEST_FILE } from './helpers/deploy.js';

const run = promisify(execFile);

/** promtool from Debian's prometheus package (.ci/run installs it); its output whatever the exit code. */
async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: join(K8S, 'monitoring') });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('promtool is not installed: run .ci/run, or apt-get install prometheus');
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

interface RulesTest {
  rule_files: string[];
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[]; promql_expr_test?: { expr: string }[] }[];
}

describe('k8s/monitoring/rules.yaml', () => {
  it('passes promtool check rules', async () => {
    const { code, output } = await promtool('check', 'rules', RULES_FILE);
    expect(output).toMatch(/SUCCESS/);
    expect(code, output).toBe(0);
  });

  it('passes its promtool unit tests (promtool test rules rules.test.yaml)', async () => {
    const { code, output } = await promtool('test', 'rules', RULES_TEST_FILE);
    expect(code, output).toBe(0);
    expect(output).toMatch(/SUCCESS/);
  });

  it('has a unit test for each alert that fires it, and one for the average-dimension recording rule', () => {
    const unit = parse(readFileSync(RULES_TEST_FILE, 'utf8')) as RulesTest;
    expect(unit.rule_files).toEqual(['rules.yaml']);
    const alerts = readRules().flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
    const fired = new Set(unit.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    expect(alerts.length).toBeGreaterThanOrEqual(4);
    for (const alert of alerts) expect(fired, alert).toContain(alert);
    const exprs = unit.tests.flatMap((t) => (t.promql_expr_test ?? []).map((e) => e.expr));
    expect(exprs).toContain('mrl_cascade:dimension_used:avg_rate5m');
  });

  it('records what the issue asks for: average dimension used, request rate, error ratio and p99', () => {
    const groups = readRules();
    const byName = new Map(groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [[r.record, r.expr] as const] : []))));
    const squash = (s: string) => s.replace(/\s+/g, ' ').trim();
    expect(squash(byName.get('mrl_cascade:dimension_used:avg_rate5m')!)).toBe(
      'sum by (namespace, job) (rate(mrl_cascade_dimension_used_sum[5m])) / sum by (namespace, job) (rate(mrl_cascade_dimension_used_count[5m]))',
    );
    expect(byName.get('mrl_cascade:requests:rate5m')).toMatch(/rate\(mrl_cascade_requests_total\[5m\]\)/);
    expect(byName.get('mrl_cascade:request_errors:ratio_rate5m')).toMatch(/mrl_cascade_requests_total\{code=~/);
    expect(byName.get('mrl_cascade:request_duration_seconds:p99_rate5m')).toMatch(/histogram_quantile\(0\.99,/);
    const alerts = new Map(groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [[r.alert, r.expr] as const] : []))));
    expect(alerts.get('MrlCascadeBreakerOpen')).toMatch(/mrl_cascade_breaker_state\[1m\]\) == 2$/);
    expect(alerts.get('MrlCascadeAverageDimensionDrift')).toMatch(/mrl_cascade:dimension_used:calibrated/);
    // Every recorded name an alert reads is recorded here.
    const recorded = recordedNames(groups);
    for (const expr of alerts.values()) for (const name of expr.match(/mrl_\w+:[\w:]+/g) ?? []) expect(recorded, name).toContain(name);
  });
});

describe('the PrometheusRule', () => {
  it('k8s/monitoring/prometheusrule.yaml carries the groups of rules.yaml unchanged', () => {
    const docs = parseAllDocuments(readFileSync(join(K8S, 'monitoring', 'prometheusrule.yaml'), 'utf8')).map((d) => d.toJS() as IPrometheusRule);
    expect(docs).toHaveLength(1);
    // On a mismatch: copy the groups of rules.yaml into spec.groups of prometheusrule.yaml.
    expect(docs[0]!.spec.groups).toEqual(readRules());
  });

});
