import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { IConfigMap } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { encoderConfig } from '../services/encoder/config.js';
import { DASHBOARD_FILE, find, K8S, type K8sObject, kubectlKustomize, OVERLAYS, parseManifests, readRules, renderOverlay, ROOT } from './helpers/deploy.js';

const run = promisify(execFile);

/**
 * Where the schemas of each apiVersion live: kubernetes-models (the Kubernetes OpenAPI schemas
 * of a current release, compiled for @kubernetes-models/validate) and its prometheus-operator
 * package for the monitoring.coreos.com CRDs. An apiVersion missing here fails the test.
 */
const MODELS: Record<string, { module: () => Promise<Record<string, unknown>>; typesFrom: string }> = {
  v1: { module: () => import('kubernetes-models/v1'), typesFrom: 'kubernetes-models/v1' },
  'apps/v1': { module: () => import('kubernetes-models/apps/v1'), typesFrom: 'kubernetes-models/apps/v1' },
  'autoscaling/v2': { module: () => import('kubernetes-models/autoscaling/v2'), typesFrom: 'kubernetes-models/autoscaling/v2' },
  'policy/v1': { module: () => import('kubernetes-models/policy/v1'), typesFrom: 'kubernetes-models/policy/v1' },
  'networking.k8s.io/v1': { module: () => import('kubernetes-models/networking.k8s.io/v1'), typesFrom: 'kubernetes-models/networking.k8s.io/v1' },
  'monitoring.coreos.com/v1': {
    module: () => import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'),
    typesFrom: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
  },
};

type ModelClass = new (data: K8sObject) => { validate(): void };

/** Validates one object against its kind's schema; the error message, or undefined. */
async function schemaError(obj: K8sObject): Promise<string | undefined> {
  const models = MODELS[obj.apiVersion];
  if (!models) return `no schemas for apiVersion ${obj.apiVersion}`;
  const Model = (await models.module())[obj.kind] as ModelClass | undefined;
  if (!Model) return `no schema for ${obj.apiVersion} ${obj.kind}`;
  try {
    new Model(obj).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * JSON schema validation lets unknown fields through (a misspelt `readinesProbe` would pass), so
 * the objects also go through TypeScript's excess-property check against the same package's
 * generated interfaces: every field must be one the API knows.
 */
async function unknownFieldErrors(objects: readonly K8sObject[]): Promise<string> {
  const imports = new Map<string, Set<string>>();
  const lines = objects.map((o, i) => {
    const from = MODELS[o.apiVersion]!.typesFrom;
    imports.set(from, (imports.get(from) ?? new Set()).add(`I${o.kind}`));
    return `export const o${i}: I${o.kind} = ${JSON.stringify(o, null, 1)};`;
  });
  const source = [...[...imports].map(([from, names]) => `import type { ${[...names].join(', ')} } from '${from}';`), ...lines].join('\n');
  // Under node_modules so that the packages resolve; a fresh folder per run.
  await mkdir(join(ROOT, 'node_modules', '.cache'), { recursive: true });
  const dir = await mkdtemp(join(ROOT, 'node_modules', '.cache', 'mrl-k8s-fields-'));
  try {
    await writeFile(join(dir, 'objects.ts'), source);
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, module: 'ESNext', moduleResolution: 'Bundler', target: 'ES2022', types: [], skipLibCheck: true },
        files: ['objects.ts'],
      }),
    );
    try {
      await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: ROOT });
      return '';
    } catch (err) {
      return (err as { stdout?: string }).stdout || (err as Error).message;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const EXPECTED_OBJECTS = [
  'ConfigMap/mrl-cascade-dashboard',
  'ConfigMap/mrl-thresholds',
  'Deployment/cascade',
  'Deployment/encoder',
  'HorizontalPodAutoscaler/cascade',
  'HorizontalPodAutoscaler/encoder',
  'Namespace/mrl',
  'NetworkPolicy/cascade',
  'NetworkPolicy/default-deny-ingress',
  'NetworkPolicy/encoder',
  'PodDisruptionBudget/cascade',
  'PodDisruptionBudget/encoder',
  'PrometheusRule/mrl-cascade',
  'Service/cascade',
  'Service/encoder',
  'ServiceMonitor/cascade',
  'ServiceMonitor/encoder',
];

const container = (d: IDeployment) => d.spec!.template.spec!.containers[0]!;
const envOf = (d: IDeployment) => Object.fromEntries((container(d).env ?? []).map((e) => [e.name, e.value]));

describe.each(OVERLAYS)('k8s/overlays/%s', (overlay) => {
  it('renders with kustomize into the objects the deploy needs, all in the mrl namespace', async () => {
    const objects = await renderOverlay(overlay);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(EXPECTED_OBJECTS);
    for (const o of objects) if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('mrl');
  });

  it('renders the same with kubectl kustomize (what `kubectl apply -k` uses), where kubectl is installed', async (ctx) => {
    const text = await kubectlKustomize(join(K8S, 'overlays', overlay));
    if (text === undefined) return ctx.skip();
    expect(parseManifests(text)).toEqual(await renderOverlay(overlay));
  });

  it('every object validates against the Kubernetes and Prometheus Operator schemas', async () => {
    const objects = await renderOverlay(overlay);
    const errors = (await Promise.all(objects.map(async (o) => [`${o.kind}/${o.metadata.name}`, await schemaError(o)] as const))).filter(
      ([, e]) => e !== undefined,
    );
    expect(errors).toEqual([]);
  });

  it('no object has a field the API does not know', async () => {
    expect(await unknownFieldErrors(await renderOverlay(overlay))).toBe('');
  });

  it('carries the PrometheusRule and the dashboard exactly as in k8s/monitoring', async () => {
    const objects = await renderOverlay(overlay);
    expect(find<IPrometheusRule>(objects, 'PrometheusRule', 'mrl-cascade').spec.groups).toEqual(readRules());
    const dashboard = find<IConfigMap>(objects, 'ConfigMap', 'mrl-cascade-dashboard');
    expect(dashboard.metadata?.labels?.grafana_dashboard).toBe('1');
    expect(dashboard.data?.['mrl-cascade.json']).toBe(readFileSync(DASHBOARD_FILE, 'utf8'));
  });
});

describe('the checks are not vacuous', () => {
  it('the schema check refuses a wrong type', async () => {
    const broken = structuredClone(find<IDeployment>(await renderOverlay('cpu'), 'Deployment', 'encoder'));
    (container(broken).ports![0] as { containerPort: unknown }).containerPort = 'grpc';
    expect(await schemaError(broken as unknown as K8sObject)).toMatch(/containerPort must be integer/);
  });

  it('the field check refuses a misspelt field', async () => {
    const typo = structuredClone(find<IDeployment>(await renderOverlay('cpu'), 'Deployment', 'cascade'));
    const c = container(typo) as unknown as Record<string, unknown>;
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    expect(await unknownFieldErrors([typo as unknown as K8sObject])).toMatch(/readinesProbe.*does not exist in type 'IContainer'/);
  });
});

describe('the overlays differ where they should', () => {
  it('cpu: both services on CPU, no GPU anywhere', async () => {
    const objects = await renderOverlay('cpu');
    expect(JSON.stringify(objects)).not.toMatch(/nvidia|cuda/);
    expect(encoderConfig(envOf(find<IDeployment>(objects, 'Deployment', 'encoder'))).executionProviders).toEqual(['cpu']);
  });

  it('gpu: the encoder asks for one GPU, tolerates the GPU taint and runs the CUDA image with CUDA first', async () => {
    const objects = await renderOverlay('gpu');
    const encoder = find<IDeployment>(objects, 'Deployment', 'encoder');
    const c = container(encoder);
    expect(c.resources?.limits?.['nvidia.com/gpu']).toBe(1);
    expect(encoder.spec!.template.spec!.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(c.image).toMatch(/-cuda$/);
    expect(encoderConfig(envOf(encoder)).executionProviders).toEqual(['cuda', 'cpu']);
    const hpa = find<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler', 'encoder');
    expect(hpa.spec!.maxReplicas).toBeLessThan(find<IHorizontalPodAutoscaler>(await renderOverlay('cpu'), 'HorizontalPodAutoscaler', 'encoder').spec!.maxReplicas);
  });

  it('gpu: the cascade stays on CPU with the CPU image', async () => {
    const cascade = find<IDeployment>(await renderOverlay('gpu'), 'Deployment', 'cascade');
    expect(JSON.stringify(cascade)).not.toMatch(/nvidia|cuda/);
    expect(container(cascade).image).toBe(container(find<IDeployment>(await renderOverlay('cpu'), 'Deployment', 'cascade')).image);
  });
});
