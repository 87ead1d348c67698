import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { INetworkPolicy, INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { IConfigMap, IContainer, IService } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { cascadeConfig } from '../services/cascade/config.js';
import { readThresholdsFile } from '../services/cascade/thresholds.js';
import { DEFAULT_MODEL_DIR, loadBundle, pixelsToInput } from '../matryoshka/bundle.js';
import type { Env } from '../services/common/config.js';
import { silentLogger } from '../services/common/logger.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { encoderConfig } from '../services/encoder/config.js';
import { EncoderSession } from '../services/encoder/session.js';
import { find, type K8sObject, MRL_ENCODER_OVERLAYS, readRules, renderOverlay, ROOT, selects } from './helpers/deploy.js';

/** The variables a config function reads from this environment (it is given a recording proxy). */
function variablesRead(config: (env: Env) => unknown, env: Env): Set<string> {
  const read = new Set<string>();
  config(new Proxy(env, { get: (target, key) => (typeof key === 'string' && read.add(key), Reflect.get(target, key)) }));
  return read;
}

const SERVICES = {
  encoder: { config: (env: Env) => encoderConfig(env), healthName: 'mrl.v1.Encoder' },
  cascade: { config: (env: Env) => cascadeConfig(env), healthName: 'mrl.v1.Classifier' },
} as const;
type ServiceName = keyof typeof SERVICES;
const NAMES = Object.keys(SERVICES) as ServiceName[];

const podSpec = (d: IDeployment) => d.spec!.template.spec!;
const podLabels = (d: IDeployment) => d.spec!.template.metadata!.labels!;
const containerOf = (d: IDeployment): IContainer => {
  expect(podSpec(d).containers).toHaveLength(1);
  return podSpec(d).containers[0]!;
};
const envOf = (c: IContainer): Env => {
  for (const e of c.env ?? []) expect(e.valueFrom, e.name).toBeUndefined();
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
};
const containerPort = (c: IContainer, name: string) => {
  const port = c.ports?.find((p) => p.name === name);
  if (!port) throw new Error(`container ${c.name} has no port named ${name}`);
  return port;
};
/** A CPU quantity in cores ("2", "250m"). */
const cores = (q: string | number | undefined) => (typeof q === 'number' ? q : q?.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));

describe.each(MRL_ENCODER_OVERLAYS)('k8s/overlays/%s agrees with the services', (overlay) => {
  let objects: K8sObject[];
  const deployment = (name: ServiceName) => find<IDeployment>(objects, 'Deployment', name);
  const service = (name: ServiceName) => find<IService>(objects, 'Service', name);
  beforeAll(async () => {
    objects = await renderOverlay(overlay);
  });

  it.each(NAMES)('%s: every MRL_* variable is one its config reads, and the values parse', (name) => {
    const env = envOf(containerOf(deployment(name)));
    expect(Object.keys(env).every((k) => k.startsWith('MRL_')), 'only MRL_* variables').toBe(true);
    const read = variablesRead(SERVICES[name].config, env);
    expect(read.has(name === 'encoder' ? 'MRL_ENCODER_PORT' : 'MRL_CASCADE_PORT')).toBe(true);
    expect(Object.keys(env).filter((k) => !read.has(k)), `variables ${name}'s config does not read`).toEqual([]);
    expect(variablesRead(SERVICES[name].config, { ...env, MRL_NOT_A_SETTING: '1' }).has('MRL_NOT_A_SETTING')).toBe(false);
    expect(() => SERVICES[name].config(env)).not.toThrow();
  });

  it.each(NAMES)('%s: gRPC and metrics ports are the config defaults, and the probes use them', (name) => {
    const c = containerOf(deployment(name));
    const config = SERVICES[name].config(envOf(c));
    const defaults = SERVICES[name].config({});
    expect(containerPort(c, 'grpc').containerPort).toBe(config.port);
    expect(containerPort(c, 'metrics').containerPort).toBe(config.metricsPort);
    expect([config.port, config.metricsPort]).toEqual([defaults.port, defaults.metricsPort]);
    expect(config.host).toBe('0.0.0.0');
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      expect(probe?.grpc?.port).toBe(config.port);
      expect(['', SERVICES[name].healthName]).toContain(probe?.grpc?.service ?? '');
    }
    // Ready means this service's model is loaded, not only the process up.
    expect(c.readinessProbe?.grpc?.service).toBe(SERVICES[name].healthName);
    expect(c.startupProbe?.grpc?.service).toBe(SERVICES[name].healthName);
  });

  it.each(NAMES)('%s: runs its own compiled main.js, the way the image does', (name) => {
    const c = containerOf(deployment(name));
    expect(c.command).toEqual(['node', `dist/services/${name}/main.js`]);
    // `npm run build` writes services/<name>/main.ts there: outDir dist, the tree kept from the root.
    const { compilerOptions } = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
    expect([compilerOptions.outDir, compilerOptions.rootDir]).toEqual(['dist', '.']);
    expect(existsSync(join(ROOT, 'services', name, 'main.ts'))).toBe(true);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/^ENTRYPOINT \["node"\]$/m);
  });

  it.each(NAMES)('%s: its Service selects its pods and maps the container ports by name', (name) => {
    const svc = service(name);
    const c = containerOf(deployment(name));
    expect(selects(svc.spec!.selector, podLabels(deployment(name)))).toBe(true);
    expect(selects(deployment(name).spec!.selector.matchLabels, podLabels(deployment(name)))).toBe(true);
    for (const other of NAMES.filter((n) => n !== name)) expect(selects(svc.spec!.selector, podLabels(deployment(other)))).toBe(false);
    for (const p of svc.spec!.ports!) expect(p.port, p.name).toBe(containerPort(c, String(p.targetPort)).containerPort);
    expect(svc.spec!.ports!.map((p) => p.name).sort()).toEqual(['grpc', 'metrics']);
  });

  it('the encoder Service is headless and the cascade reaches it with dns:/// (per-call round robin)', () => {
    const encoderSvc = service('encoder');
    expect(encoderSvc.spec!.clusterIP).toBe('None');
    expect(service('cascade').spec!.type ?? 'ClusterIP').toBe('ClusterIP');
    const grpcPort = encoderSvc.spec!.ports!.find((p) => p.name === 'grpc')!.port;
    expect(cascadeConfig(envOf(containerOf(deployment('cascade')))).encoderTarget).toBe(`dns:///${encoderSvc.metadata!.name}:${grpcPort}`);
  });

  it('the encoder closes connections after a maximum age, so the cascade finds new encoder pods', () => {
    const config = encoderConfig(envOf(containerOf(deployment('encoder'))));
    expect(config.maxConnectionAgeMs).toBeGreaterThan(0);
    expect(config.maxConnectionAgeMs).toBeLessThanOrEqual(5 * 60_000);
  });

  it.each(NAMES)('%s: the termination grace period covers preStop plus MRL_SHUTDOWN_GRACE_MS', (name) => {
    const d = deployment(name);
    const c = containerOf(d);
    const sleep = c.lifecycle?.preStop?.exec?.command;
    expect(sleep?.[0]).toBe('sleep');
    const preStopMs = Number(sleep![1]) * 1000;
    expect(preStopMs).toBeGreaterThan(0);
    const graceMs = SERVICES[name].config(envOf(c)).shutdownGraceMs;
    // 5 s left for the rest of the shutdown (closing the metrics server, releasing the model).
    expect(podSpec(d).terminationGracePeriodSeconds! * 1000).toBeGreaterThanOrEqual(preStopMs + graceMs + 5000);
  });

  it.each(NAMES)('%s: non-root, read-only root, no privilege escalation, all capabilities dropped; /tmp writable', (name) => {
    const d = deployment(name);
    const c = containerOf(d);
    const pod = podSpec(d).securityContext!;
    expect(pod.runAsNonRoot).toBe(true);
    expect(pod.seccompProfile?.type).toBe('RuntimeDefault');
    // The uid the images run as.
    for (const dockerfile of ['Dockerfile', 'Dockerfile.cuda'])
      expect(readFileSync(join(ROOT, dockerfile), 'utf8')).toMatch(new RegExp(`^USER ${pod.runAsUser}:${pod.runAsGroup}$`, 'm'));
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(c.securityContext?.capabilities?.drop).toEqual(['ALL']);
    expect(c.securityContext?.privileged).toBeUndefined();
    const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
    expect(podSpec(d).volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
    expect(podSpec(d).automountServiceAccountToken).toBe(false);
  });

  it.each(NAMES)('%s: resources set; topology spread over its own pods', (name) => {
    const d = deployment(name);
    const c = containerOf(d);
    expect(c.resources?.requests?.cpu).toBeDefined();
    expect(c.resources?.requests?.memory).toBeDefined();
    expect(c.resources?.limits?.memory).toBeDefined();
    const spread = podSpec(d).topologySpreadConstraints ?? [];
    expect(spread.map((t) => t.topologyKey).sort()).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
    for (const t of spread) expect(selects(t.labelSelector?.matchLabels, podLabels(d))).toBe(true);
  });

  it("the encoder's onnxruntime threads fit its CPU limit", () => {
    const c = containerOf(deployment('encoder'));
    const threads = encoderConfig(envOf(c)).intraOpThreads;
    expect(threads).toBeGreaterThan(0);
    expect(threads).toBeLessThanOrEqual(cores(c.resources!.limits!.cpu));
  });

  it.each(NAMES)('%s: the HPA scales its Deployment (which leaves replicas to it), the PDB covers its pods', (name) => {
    const d = deployment(name);
    expect(d.spec!.replicas).toBeUndefined();
    const hpa = find<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler', name);
    expect(hpa.spec!.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata!.name });
    expect(hpa.spec!.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec!.maxReplicas).toBeGreaterThan(hpa.spec!.minReplicas!);
    const pdb = find<IPodDisruptionBudget>(objects, 'PodDisruptionBudget', name);
    expect(selects(pdb.spec!.selector?.matchLabels, podLabels(d))).toBe(true);
  });

  it.each(NAMES)('%s: its ServiceMonitor scrapes /metrics on the Service port that is the metrics port', (name) => {
    const sm = find<IServiceMonitor>(objects, 'ServiceMonitor', name);
    const svc = service(name);
    expect(selects(sm.spec.selector.matchLabels, svc.metadata!.labels)).toBe(true);
    for (const other of NAMES.filter((n) => n !== name)) expect(selects(sm.spec.selector.matchLabels, service(other).metadata!.labels)).toBe(false);
    expect(sm.spec.endpoints).toHaveLength(1);
    const endpoint = sm.spec.endpoints![0]!;
    // startMetricsServer serves GET /metrics and nothing else.
    expect(endpoint.path).toBe('/metrics');
    const port = svc.spec!.ports!.find((p) => p.name === endpoint.port)!;
    expect(port.port).toBe(SERVICES[name].config(envOf(containerOf(deployment(name)))).metricsPort);
  });

  it("network policies: only the cascade reaches the encoder's gRPC port, only the monitoring namespace the metrics ports", () => {
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as unknown as INetworkPolicy[];
    const defaultDeny = policies.find((p) => Object.keys(p.spec!.podSelector?.matchLabels ?? {}).length === 0);
    expect(defaultDeny?.spec).toMatchObject({ policyTypes: ['Ingress'] });
    expect(defaultDeny?.spec?.ingress ?? []).toEqual([]);
    /** The peers any policy lets reach this pod's port; 'anyone' for a rule with no `from`. */
    const peers = (name: ServiceName, portName: string): ('anyone' | INetworkPolicyPeer)[] => {
      const port = containerPort(containerOf(deployment(name)), portName);
      const labels = podLabels(deployment(name));
      return policies
        .filter((p) => p.spec!.policyTypes?.includes('Ingress'))
        .filter((p) => Object.keys(p.spec!.podSelector?.matchLabels ?? {}).length === 0 || selects(p.spec!.podSelector?.matchLabels, labels))
        .flatMap((p) => p.spec!.ingress ?? [])
        .filter((rule) => !rule.ports || rule.ports.some((rp) => rp.port === undefined || rp.port === port.name || rp.port === port.containerPort))
        .flatMap((rule): ('anyone' | INetworkPolicyPeer)[] => (rule.from?.length ? rule.from : ['anyone']));
    };
    const monitoring = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }];
    expect(peers('encoder', 'metrics')).toEqual(monitoring);
    expect(peers('cascade', 'metrics')).toEqual(monitoring);
    expect(peers('cascade', 'grpc')).toEqual(['anyone']);
    const encoderGrpc = peers('encoder', 'grpc');
    expect(encoderGrpc).toHaveLength(1);
    const peer = encoderGrpc[0] as INetworkPolicyPeer;
    expect(peer.namespaceSelector).toBeUndefined();
    expect(selects(peer.podSelector?.matchLabels, podLabels(deployment('cascade')))).toBe(true);
    expect(selects(peer.podSelector?.matchLabels, podLabels(deployment('encoder')))).toBe(false);
  });

  it('the thresholds ConfigMap is mounted (as a folder, so updates reach the pod) where MRL_THRESHOLDS_FILE points, and holds the bundle thresholds', async () => {
    const d = deployment('cascade');
    const c = containerOf(d);
    const file = cascadeConfig(envOf(c)).thresholdsFile!;
    expect(file).toBeDefined();
    const mount = c.volumeMounts?.find((m) => m.mountPath === dirname(file));
    expect(mount).toBeDefined();
    expect(mount!.subPath).toBeUndefined();
    const volume = podSpec(d).volumes?.find((v) => v.name === mount!.name);
    const configMap = find<IConfigMap>(objects, 'ConfigMap', volume!.configMap!.name!);
    const content = configMap.data?.[basename(file)];
    expect(content, `ConfigMap ${configMap.metadata!.name} has no key ${basename(file)}`).toBeDefined();
    const bundle = await loadBundle();
    const dir = await mkdtemp(join(tmpdir(), 'mrl-thresholds-'));
    try {
      await writeFile(join(dir, 'thresholds.json'), content!);
      // What the cascade does with it at start: refuses a file that does not fit the bundle.
      const parsed = readThresholdsFile(join(dir, 'thresholds.json'), bundle);
      // A stale copy would override a retrained model's thresholds: keep k8s/base/thresholds.json in step with model.json.
      expect(parsed.model).toBe(bundle.id);
      expect(parsed.thresholds).toEqual(bundle.thresholds);
      expect(parsed.temperatures).toEqual(bundle.temperatures);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the images', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const cuda = readFileSync(join(ROOT, 'Dockerfile.cuda'), 'utf8');
  const froms = (text: string) => [...text.matchAll(/^ARG NODE_IMAGE=(\S+)$/gm)].map((m) => m[1]);
  /** The text of the stage named `name`, or of the last (the image) with none. */
  const stage = (text: string, name?: string) => {
    const stages = text.split(/^(?=FROM )/m).slice(1);
    return (name ? stages.find((s) => s.startsWith(`FROM \${NODE_IMAGE} AS ${name}\n`)) : stages.at(-1)) ?? '';
  };

  it('build on a supported Node LTS slim image, with production dependencies from the lockfile', () => {
    for (const text of [dockerfile, cuda]) {
      expect(froms(text)).toHaveLength(1);
      expect(froms(text)[0]).toMatch(/^node:(22|24)(\.\d+)*-\w+-slim$/);
      expect(text).toMatch(/^FROM \$\{NODE_IMAGE\}/m);
      expect(stage(text, 'deps')).toMatch(/COPY package\.json package-lock\.json \.npmrc/);
      // Without the prepare script, which compiles: the compiler is a dev dependency.
      expect(stage(text, 'deps')).toMatch(/npm ci --omit=dev --ignore-scripts/);
    }
    expect(cuda).toMatch(/^ENV ONNXRUNTIME_NODE_INSTALL=cuda12$/m);
    expect(stage(cuda, 'deps')).toMatch(/npm rebuild onnxruntime-node/);
    expect(cuda).toMatch(/libonnxruntime_providers_cuda\.so/);
  });

  it('compile in a build stage with the dev dependencies, and hold dist/ but no TypeScript', () => {
    for (const text of [dockerfile, cuda]) {
      const build = stage(text, 'build');
      expect(build).toMatch(/^RUN (\S+ )?npm ci --ignore-scripts/m);
      expect(build).not.toMatch(/--omit=dev/);
      expect(build).toMatch(/^COPY tsconfig\.json tsconfig\.build\.json \.\/$/m);
      expect(build).toMatch(/^COPY services \.\/services$/m);
      expect(build).toMatch(/^RUN npm run build$/m);
      const image = stage(text);
      expect(image).toMatch(/^COPY --from=deps \/app\/node_modules \.\/node_modules$/m);
      expect(image).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
      expect(image).not.toMatch(/^COPY (services|cli|tsconfig)/m);
      expect(image).toMatch(/^ENTRYPOINT \["node"\]$/m);
    }
  });

  it('carry the default model, the protos and the compiled services, and expose the default ports', () => {
    expect(relative(ROOT, DEFAULT_MODEL_DIR)).toBe('models/fashion-mnist-mrl');
    const ports = [cascadeConfig({}).port, encoderConfig({}).port, cascadeConfig({}).metricsPort, encoderConfig({}).metricsPort];
    for (const text of [dockerfile, cuda]) {
      // package.json: "type": "module" for dist/, and the root protos/ and models/ are found from.
      for (const line of ['COPY package.json ./', 'COPY protos ./protos', 'COPY models/fashion-mnist-mrl ./models/fashion-mnist-mrl'])
        expect(stage(text).split('\n')).toContain(line);
    }
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${ports.join(' ')}$`, 'm'));
    expect(cuda).toMatch(new RegExp(`^EXPOSE ${encoderConfig({}).port} ${encoderConfig({}).metricsPort}$`, 'm'));
    expect(dockerfile).toMatch(/^CMD \["dist\/services\/cascade\/main\.js"\]$/m);
    expect(cuda).toMatch(/^CMD \["dist\/services\/encoder\/main\.js"\]$/m);
  });

  it('.dockerignore keeps out node_modules, dist and the other model, and keeps in what the images copy', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    expect(ignore).toContain('**/node_modules');
    expect(ignore).toContain('dist');
    expect(ignore).toContain('models/*');
    expect(ignore).toContain('!models/fashion-mnist-mrl');
    for (const kept of ['services', 'protos', 'package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', 'tsconfig.build.json']) expect(ignore).not.toContain(kept);
  });

  it('nothing in production runs tsx: a dev dependency, named by neither image nor the bin; npm ci and npm start build first', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
      scripts: Record<string, string>;
      bin: Record<string, string>;
    };
    expect(pkg.dependencies.tsx).toBeUndefined();
    expect(pkg.devDependencies.tsx).toBeDefined();
    expect(pkg.devDependencies.typescript).toBeDefined();
    for (const text of [dockerfile, cuda]) expect(text).not.toMatch(/tsx|\.ts\b/);
    expect(readFileSync(join(ROOT, pkg.bin.mrl!), 'utf8')).not.toMatch(/tsx|\.ts\b/);
    expect(pkg.scripts.start).toBe(`node ${pkg.bin.mrl} start`);
    expect(pkg.scripts.prestart).toBe('npm run build');
    expect(pkg.scripts.prepare).toBe('npm run build');
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
  });
});

describe('the calibrated average dimension in the rules', () => {
  const calibrated = () => {
    const rule = readRules()
      .flatMap((g) => g.rules)
      .find((r) => r.record === 'mrl_cascade:dimension_used:calibrated');
    return Number(/^vector\(([\d.]+)\)$/.exec(rule!.expr.trim())?.[1]);
  };

  it("is the calibration record's average dimension, where the shipped thresholds file has one", () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, 'k8s', 'base', 'thresholds.json'), 'utf8')) as { calibration?: { avg_dimension?: number } };
    const recorded = shipped.calibration?.avg_dimension;
    if (recorded !== undefined) expect(calibrated(), `set vector(${recorded.toFixed(1)}) in k8s/monitoring/rules.yaml`).toBeCloseTo(recorded, 1);
  });

  it('is close to what the shipped thresholds give on the bundled test slice (within 15%)', async () => {
    const bundle = await loadBundle();
    const slice = await loadTestSlice(bundle);
    const session = await EncoderSession.create(bundle, { executionProviders: ['cpu'], intraOpThreads: 1 }, silentLogger);
    try {
      const embeddings = await session.run(pixelsToInput(slice.images, bundle.input), slice.count);
      const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
      const d = bundle.embeddingDim;
      let sum = 0;
      for (let i = 0; i < slice.count; i++) sum += cascade.classify(embeddings.subarray(i * d, (i + 1) * d), bundle).dimensionUsed;
      const average = sum / slice.count;
      expect(Math.abs(calibrated() - average) / average, `the slice gives ${average.toFixed(2)}: recalibrate and update k8s/monitoring/rules.yaml`).toBeLessThan(0.15);
    } finally {
      await session.dispose();
    }
  });
});
