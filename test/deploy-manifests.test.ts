import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { IConfigMap, IService } from 'kubernetes-models/v1';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { describe, expect, it } from 'vitest';
import { tritonConfig } from '../cli/exportTriton.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { encoderConfig } from '../services/encoder/config.js';
import { DASHBOARD_FILE, find, K8S, type K8sObject, kubectlKustomize, type Overlay, OVERLAYS, parseManifests, readRules, renderOverlay, ROOT } from './helpers/deploy.js';

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

/** What an overlay adds to the base's objects (a generated ConfigMap named without its hash). */
const OVERLAY_OBJECTS: Partial<Record<Overlay, string[]>> = { triton: ['ConfigMap/triton-model-config'] };
const unhashed = (o: K8sObject) => `${o.kind}/${o.metadata.name}`.replace(/^(ConfigMap\/triton-model-config)-[a-z0-9]+$/, '$1');

const container = (d: IDeployment) => d.spec!.template.spec!.containers[0]!;
const envOf = (d: IDeployment) => Object.fromEntries((container(d).env ?? []).map((e) => [e.name, e.value]));

describe.each(OVERLAYS)('k8s/overlays/%s', (overlay) => {
  it('renders with kustomize into the objects the deploy needs, all in the mrl namespace', async () => {
    const objects = await renderOverlay(overlay);
    expect(objects.map(unhashed).sort()).toEqual([...EXPECTED_OBJECTS, ...(OVERLAY_OBJECTS[overlay] ?? [])].sort());
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

  it("triton: the encoder is Triton on one GPU, serving the bundle from a repository laid out from the cascade's image", async () => {
    const objects = await renderOverlay('triton');
    const bundle = await loadBundle();
    const encoder = find<IDeployment>(objects, 'Deployment', 'encoder');
    const pod = encoder.spec!.template.spec!;
    const c = container(encoder);
    expect(c.image).toMatch(/^nvcr\.io\/nvidia\/tritonserver:\S+$/);
    expect(c.resources?.limits?.['nvidia.com/gpu']).toBe(1);
    expect(pod.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(c.env, "none of mrl's encoder settings").toBeUndefined();
    expect(c.args).toContain('--model-repository=/models');
    expect(Object.fromEntries(c.ports!.map((p) => [p.name, p.containerPort]))).toEqual({ http: 8000, grpc: 8001, metrics: 8002 });
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) expect(probe?.httpGet?.port).toBe('http');
    // The HTTP port is for the kubelet's probes: the policies open only the gRPC and metrics ports.
    const policy = find<INetworkPolicy>(objects, 'NetworkPolicy', 'encoder');
    expect(policy.spec!.ingress!.flatMap((r) => r.ports!.map((p) => p.port)).sort()).toEqual(['grpc', 'metrics']);
    // The init container copies the bundle the cascade's image carries (under its WORKDIR, /app)
    // to <name>/1/model.onnx, beside the config.pbtxt that `mrl export-triton` writes.
    const [init] = pod.initContainers!;
    expect(init!.image).toBe(container(find<IDeployment>(objects, 'Deployment', 'cascade')).image);
    const script = init!.command!.join(' ');
    const configMount = init!.volumeMounts!.find((m) => m.name === 'model-config')!;
    expect(script).toContain(`cp /app/${relative(ROOT, bundle.encoderPath)} /models/${bundle.name}/1/model.onnx`);
    expect(script).toContain(`cp ${configMount.mountPath}/config.pbtxt /models/${bundle.name}/config.pbtxt`);
    const configMap = find<IConfigMap>(objects, 'ConfigMap', pod.volumes!.find((v) => v.name === configMount.name)!.configMap!.name!);
    expect(configMap.data?.['config.pbtxt'], 'k8s/overlays/triton/config.pbtxt: write it again with npx mrl export-triton').toBe(tritonConfig(bundle));
    const modelsVolume = (mounts: { name: string; mountPath: string }[] | undefined) => mounts?.find((m) => m.mountPath === '/models')?.name;
    expect(modelsVolume(c.volumeMounts)).toBe(modelsVolume(init!.volumeMounts));
    expect(pod.volumes!.find((v) => v.name === modelsVolume(c.volumeMounts))?.emptyDir).toBeDefined();
  });

  it("triton: the cascade speaks the Open Inference Protocol to the Triton Service's gRPC port, for the bundle's model", async () => {
    const objects = await renderOverlay('triton');
    const cascade = find<IDeployment>(objects, 'Deployment', 'cascade');
    const service = find<IService>(objects, 'Service', 'encoder');
    const grpc = service.spec!.ports!.find((p) => p.name === 'grpc')!;
    expect([grpc.port, grpc.targetPort]).toEqual([8001, 'grpc']);
    expect(envOf(cascade)).toMatchObject({
      MRL_ENCODER_PROTOCOL: 'kserve-v2',
      MRL_ENCODER_TARGET: `dns:///${service.metadata!.name}:${grpc.port}`,
      MRL_ENCODER_MODEL: (await loadBundle()).name,
    });
    expect(JSON.stringify(cascade)).not.toMatch(/nvidia|cuda/);
    expect(container(cascade).image).toBe(container(find<IDeployment>(await renderOverlay('cpu'), 'Deployment', 'cascade')).image);
  });
});
