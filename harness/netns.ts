import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { classifierClient, classify } from '../cli/clients.js';
import { parseExposition } from '../cli/metrics.js';
import { loadTestSlice, slicePng } from '../cli/testSlice.js';
import { loadBundle } from '../matryoshka/bundle.js';
import type { Env } from '../services/common/config.js';
import { late, type Outcome, outcome, percentile, tally } from './load.js';
import { delta } from './prom.js';
import { type ServiceName, type ServiceProcess, spawnService } from './services.js';

/*
 * The mesh as three hosts: network namespaces mrl-<pid>-{cascade,enc1,enc2}, each with one veth
 * link (eth0) to a bridge in a fourth, mrl-<pid>-switch, so the host's own network gets only one
 * veth (mrl<pid>) into that bridge, from which the test calls the cascade and reads /metrics.
 * Addresses: one /24 of 198.18.0.0/15 (RFC 2544's benchmarking range) per run.
 */

const exec = promisify(execFile);

const REPLICAS = ['enc1', 'enc2'] as const;
export type Replica = (typeof REPLICAS)[number];
export type HostName = 'cascade' | Replica;

/** The name every replica has in the cascade's /etc/hosts: `dns:///` resolves both, balanced round robin. */
const ENCODERS_NAME = 'encoders.test';
const PORTS = { encoder: { grpc: 50052, metrics: 9465 }, cascade: { grpc: 50051, metrics: 9464 } };

/** Runs a command; rejects with its stderr. */
async function sh(cmd: string, ...args: string[]): Promise<string> {
  try {
    return (await exec(cmd, args)).stdout;
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')}: ${(err as { stderr?: string }).stderr?.trim() || String(err)}`);
  }
}

const quiet = (p: Promise<unknown>) => p.catch(() => undefined);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Why this machine cannot run the namespace mesh (not root, no iproute2, namespaces, bridges,
 * veths or tbf refused), or undefined when it can. Synchronous, for `describe.skipIf`.
 */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root: `ip netns add` needs CAP_SYS_ADMIN';
  const ns = `mrl-${process.pid}-probe`;
  const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
  const first = ip('netns', 'add', ns);
  if (first.error) return `no \`ip\` (iproute2): ${first.error.message}`;
  if (first.status !== 0) return `\`ip netns add\` failed: ${first.stderr.trim()}`;
  try {
    const steps: string[][] = [
      ['ip', '-n', ns, 'link', 'add', 'br0', 'type', 'bridge'],
      ['ip', '-n', ns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb'],
      ['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'va', 'root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '400ms'],
    ];
    for (const [cmd, ...args] of steps) {
      const r = spawnSync(cmd!, args, { encoding: 'utf8' });
      if (r.status !== 0) return `\`${[cmd, ...args].join(' ')}\` failed: ${r.error?.message ?? r.stderr.trim()}`;
    }
    return undefined;
  } finally {
    ip('netns', 'del', ns);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes what a run that died without cleaning up left (names carry its pid; live runs' are kept). */
export async function sweepLeftovers(): Promise<void> {
  const listed = (await sh('ip', 'netns', 'list')).split('\n').map((l) => l.split(' ')[0]!);
  const configured = existsSync('/etc/netns') ? readdirSync('/etc/netns') : [];
  for (const ns of new Set([...listed, ...configured])) {
    const m = /^mrl-(\d+)-/.exec(ns);
    if (m && !alive(Number(m[1]))) await removeNamespace(ns);
  }
  for (const line of (await sh('ip', '-o', 'link', 'show')).split('\n')) {
    const m = /^\d+: (mrl(\d+))[@:]/.exec(line);
    if (m && !alive(Number(m[2]))) await quiet(sh('ip', 'link', 'del', m[1]!));
  }
}

/** Kills whatever still runs in `ns`, then deletes it and its /etc/netns files. */
async function removeNamespace(ns: string): Promise<void> {
  const pids = await sh('ip', 'netns', 'pids', ns).catch(() => '');
  for (const pid of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await quiet(sh('ip', 'netns', 'del', ns));
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

/** One host of the mesh. */
export interface Host {
  ns: string;
  address: string;
  /** Its port on the switch: the far end of its link. */
  port: string;
}

export interface Network {
  switchNs: string;
  hosts: Record<HostName, Host>;
  destroy(): Promise<void>;
}

/** A /24 of 198.18.0.0/15 that no address of this host's namespace is in, picked from the pid. */
async function freePrefix(): Promise<string> {
  const used = await sh('ip', '-o', '-4', 'addr', 'show');
  for (let i = 0; i < 512; i++) {
    const n = (process.pid + i) % 512;
    const prefix = `198.${18 + (n >> 8)}.${n & 255}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new Error('every /24 of 198.18.0.0/15 is in use here');
}

/** Makes the switch, the three hosts and the test's own link; on any failure removes what it made. */
async function createNetwork(): Promise<Network> {
  const id = process.pid;
  const prefix = await freePrefix();
  const switchNs = `mrl-${id}-switch`;
  const hostLink = `mrl${id}`;
  const hosts: Record<HostName, Host> = {
    cascade: { ns: `mrl-${id}-cascade`, address: `${prefix}.1`, port: 'cascade' },
    enc1: { ns: `mrl-${id}-enc1`, address: `${prefix}.2`, port: 'enc1' },
    enc2: { ns: `mrl-${id}-enc2`, address: `${prefix}.3`, port: 'enc2' },
  };
  const destroy = async () => {
    for (const h of Object.values(hosts)) await removeNamespace(h.ns);
    await removeNamespace(switchNs);
    // A namespace's devices go asynchronously; the test's end of its link must not outlive the run.
    await quiet(sh('ip', 'link', 'del', hostLink));
  };
  try {
    const sw = (...args: string[]) => sh('ip', '-n', switchNs, ...args);
    await sh('ip', 'netns', 'add', switchNs);
    await sw('link', 'add', 'br0', 'type', 'bridge');
    await sw('link', 'set', 'br0', 'up');
    for (const h of Object.values(hosts)) {
      await sh('ip', 'netns', 'add', h.ns);
      await sh('ip', '-n', h.ns, 'link', 'set', 'lo', 'up');
      await sw('link', 'add', h.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
      await sw('link', 'set', h.port, 'master', 'br0', 'up');
      await sh('ip', '-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0');
      await sh('ip', '-n', h.ns, 'link', 'set', 'eth0', 'up');
    }
    await sh('ip', 'link', 'add', hostLink, 'type', 'veth', 'peer', 'name', 'test', 'netns', switchNs);
    await sw('link', 'set', 'test', 'master', 'br0', 'up');
    await sh('ip', 'addr', 'add', `${prefix}.254/24`, 'dev', hostLink);
    await sh('ip', 'link', 'set', hostLink, 'up');
    // `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts for what it runs.
    mkdirSync(`/etc/netns/${hosts.cascade.ns}`, { recursive: true });
    writeFileSync(`/etc/netns/${hosts.cascade.ns}/hosts`, REPLICAS.map((r) => `${hosts[r].address} ${ENCODERS_NAME}\n`).join(''));
    return { switchNs, hosts, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** Runs a service in `host`'s namespace, on its address; resolves once it serves. */
const spawnIn = (host: Host, service: ServiceName, env: Env): Promise<ServiceProcess> =>
  spawnService(service, env, { host: host.address, prefix: ['ip', 'netns', 'exec', host.ns] });

const ENCODER_PORTS: Env = { MRL_ENCODER_PORT: String(PORTS.encoder.grpc), MRL_ENCODER_METRICS_PORT: String(PORTS.encoder.metrics) };

/** The cascade and two encoder replicas, each on its own host, with the cascade's default breaker. */
export interface NetnsMesh {
  net: Network;
  cascade: ServiceProcess;
  encoders: Record<Replica, ServiceProcess>;
  /** One Classify call from the test's side of the switch, with the next of 16 test-slice PNGs. */
  send(deadline: Date): Promise<unknown>;
  kill(replica: Replica): Promise<void>;
  /** Starts the replica again on its address (after `kill`). */
  restart(replica: Replica): Promise<void>;
  /** A host's /metrics; fails after `timeoutMs`. */
  metrics(host: HostName, timeoutMs?: number): Promise<Map<string, number>>;
  destroy(): Promise<void>;
}

/**
 * Makes the network, starts both replicas and the cascade, and warms them up: resolves once a
 * second of `timing`'s load is all answered OK (compiled code, the model and the channels warm).
 */
export async function startNetnsMesh(timing: FaultTiming = TIMING): Promise<NetnsMesh> {
  const net = await createNetwork();
  const { hosts } = net;
  try {
    const bundle = await loadBundle();
    const slice = await loadTestSlice(bundle);
    const images = await Promise.all(Array.from({ length: 16 }, (_, i) => slicePng(slice, i)));
    const [enc1, enc2] = await Promise.all(REPLICAS.map((r) => spawnIn(hosts[r], 'encoder', ENCODER_PORTS)));
    const encoders: Record<Replica, ServiceProcess> = { enc1: enc1!, enc2: enc2! };
    const cascade = await spawnIn(hosts.cascade, 'cascade', {
      MRL_CASCADE_PORT: String(PORTS.cascade.grpc),
      MRL_CASCADE_METRICS_PORT: String(PORTS.cascade.metrics),
      MRL_ENCODER_TARGET: `dns:///${ENCODERS_NAME}:${PORTS.encoder.grpc}`,
    });
    const client = classifierClient(`${hosts.cascade.address}:${PORTS.cascade.grpc}`);
    let next = 0;
    const mesh: NetnsMesh = {
      net,
      cascade,
      encoders,
      send: (deadline) => classify(client, { image: images[next++ % images.length] }, deadline.getTime() - Date.now()),
      kill: async (replica) => void (await encoders[replica].kill()),
      restart: async (replica) => {
        encoders[replica] = await spawnIn(hosts[replica], 'encoder', ENCODER_PORTS);
      },
      metrics: async (host, timeoutMs = 2000) => {
        const port = host === 'cascade' ? PORTS.cascade.metrics : PORTS.encoder.metrics;
        const res = await fetch(`http://${hosts[host].address}:${port}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) throw new Error(`${host} /metrics: HTTP ${res.status}`);
        return parseExposition(await res.text());
      },
      destroy: async () => {
        client.close();
        await net.destroy();
      },
    };
    for (let tries = 1; ; tries++) {
      const load = openLoop(mesh.send, timing.perSecond, timing.deadlineMs);
      await sleep(1000);
      const counts = tally(await load.stop());
      if (Object.keys(counts).every((code) => code === 'OK')) return mesh;
      if (tries === 10) throw new Error(`the mesh did not answer a second of load all OK in 10 tries (last: ${JSON.stringify(counts)})`);
    }
  } catch (err) {
    await net.destroy();
    throw err;
  }
}

/** Calls sent at a fixed rate whatever the answers (an open loop), so a hung replica cannot slow the offered load. */
function openLoop(call: (deadline: Date) => Promise<unknown>, perSecond: number, deadlineMs: number) {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const startedAt = Date.now();
  let sent = 0;
  const timer = setInterval(() => {
    for (const due = Math.floor(((Date.now() - startedAt) * perSecond) / 1000); sent < due; sent++) {
      const p = outcome(call, deadlineMs).then((o) => void outcomes.push(o));
      pending.add(p);
      void p.then(() => pending.delete(p));
    }
  }, 5);
  return {
    outcomes,
    stop: async () => {
      clearInterval(timer);
      await Promise.all(pending);
      return outcomes;
    },
  };
}

/** A fault on one replica's host or link, and what undoes it. */
export interface Fault {
  name: string;
  replica: Replica;
  inject(mesh: NetnsMesh): Promise<void>;
  heal(mesh: NetnsMesh): Promise<void>;
}

const signal = async (mesh: NetnsMesh, replica: Replica, sig: NodeJS.Signals) => void process.kill(mesh.encoders[replica].pid, sig);
const link = async (mesh: NetnsMesh, replica: Replica, state: 'up' | 'down') =>
  void (await sh('ip', '-n', mesh.net.switchNs, 'link', 'set', mesh.net.hosts[replica].port, state));
/** `tc qdisc …` on both ends of the replica's link, so requests and embeddings both cross it slowly. */
async function qdisc(mesh: NetnsMesh, replica: Replica, args: (dev: string) => string[]): Promise<void> {
  const ends = [
    [mesh.net.switchNs, mesh.net.hosts[replica].port],
    [mesh.net.hosts[replica].ns, 'eth0'],
  ];
  await Promise.all(ends.map(([ns, dev]) => sh('ip', 'netns', 'exec', ns!, 'tc', 'qdisc', ...args(dev!))));
}

/** The fault matrix, in the order it runs; each fault leaves both replicas healthy. */
export const FAULTS: Fault[] = [
  { name: 'kill -9', replica: 'enc1', inject: (m) => m.kill('enc1'), heal: (m) => m.restart('enc1') },
  { name: 'SIGSTOP', replica: 'enc2', inject: (m) => signal(m, 'enc2', 'SIGSTOP'), heal: (m) => signal(m, 'enc2', 'SIGCONT') },
  { name: 'partition', replica: 'enc1', inject: (m) => link(m, 'enc1', 'down'), heal: (m) => link(m, 'enc1', 'up') },
  {
    name: 'slow link',
    replica: 'enc2',
    inject: (m) => qdisc(m, 'enc2', (dev) => ['add', 'dev', dev, 'root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '400ms']),
    heal: (m) => qdisc(m, 'enc2', (dev) => ['del', 'dev', dev, 'root']),
  },
];

/** Phase lengths and load; defaults keep the four faults near a minute in all. */
export interface FaultTiming {
  /** Healthy load before the fault, ms (default 2000). */
  baselineMs: number;
  /** How long the fault lasts, ms (default 6000). */
  faultMs: number;
  /** The part of the fault a mesh may spend moving traffic off the replica, ms (default 3000); `faultMs` less this less `deadlineMs` is judged. */
  settleMs: number;
  /** After both replicas serve again, how long recovery is measured, ms (default 2000). */
  recoveryMs: number;
  /** Longest wait after the heal for both replicas to get calls, ms (default 20000). */
  rejoinTimeoutMs: number;
  /** Classify calls per second, one image each (default 200). */
  perSecond: number;
  /** Each call's deadline, ms (default 1000). */
  deadlineMs: number;
}

export const TIMING: FaultTiming = {
  baselineMs: 2000,
  faultMs: 6000,
  settleMs: 3000,
  recoveryMs: 2000,
  rejoinTimeoutMs: 20_000,
  perSecond: 200,
  deadlineMs: 1000,
};

/** Codes the README's failure table documents for an encoder that fails, hangs or is slow. */
export const DOCUMENTED_CODES = ['OK', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED'];
/** Scheduling slack on a loaded 2-core machine: a call must end by its deadline plus this, ms. */
const LATE_MARGIN_MS = 750;
/** Inputs a replica must answer after the heal to count as serving again. */
const REJOIN_INPUTS = 10;
/** Width of the bins failover is judged in, ms. */
const BIN_MS = 500;

export interface PhaseReport {
  calls: number;
  /** Calls by the gRPC code they ended with. */
  counts: Record<string, number>;
  /** Share of calls answered OK (NaN: no calls). */
  okShare: number;
  /** Call latency percentiles, whatever the answer, ms. */
  p50Ms: number;
  p99Ms: number;
}

export type Phase = 'baseline' | 'fault' | 'settled' | 'healing' | 'recovery';

export interface FaultReport {
  fault: string;
  replica: Replica;
  /**
   * Calls: answered before the fault; the fault's (any it could touch: ended after it began, sent
   * before the heal); those sent in its last part, after `settleMs` and a deadline or more before
   * the heal (so it cannot answer them); sent from the heal until both replicas got calls again;
   * sent in the recovery window after that.
   */
  phases: Record<Phase, PhaseReport>;
  /**
   * ms after the fault began from which every 500 ms of calls was ≥ 90% OK, up to a deadline
   * before the heal; undefined: not even for the last second of that.
   */
  failoverMs?: number;
  /** How long the heal itself took (a restart's start-up), ms. */
  healMs: number;
  /** ms after the heal began until both replicas had answered inputs again; undefined: not within `rejoinTimeoutMs`. */
  rejoinMs?: number;
  /** Inputs each replica answered OK in the baseline, the fault and the recovery window (NaN: restarted in between). */
  replicaInputs: Record<'baseline' | 'fault' | 'recovery', Record<Replica, number>>;
  /**
   * The cascade's breaker over the run: times it opened, encoder calls it counted as failed and
   * as answered, calls it refused, and the highest state seen (0 closed, 1 half-open, 2 open).
   */
  breaker: { opens: number; failures: number; successes: number; rejects: number; maxState: number };
  /** Calls that ended later than their deadline (plus scheduling slack). */
  late: number;
  /** The first message each non-OK code came with. */
  messages: Record<string, string>;
}

const OK_INPUTS = 'mrl_encoder_requests_total{code="OK"}';

/** Each replica's count of inputs answered OK, with the pid it came from (a restart starts again from 0). */
type InputCounts = Record<Replica, { pid: number; inputs: number }>;

const replicaInputs = async (mesh: NetnsMesh): Promise<InputCounts> => {
  const [a, b] = await Promise.all(
    REPLICAS.map(async (r) => ({ pid: mesh.encoders[r].pid, inputs: (await mesh.metrics(r)).get(OK_INPUTS) ?? 0 })),
  );
  return { enc1: a!, enc2: b! };
};
const minus = (x: InputCounts, y: InputCounts): Record<Replica, number> => {
  const one = (r: Replica) => (x[r].pid === y[r].pid ? x[r].inputs - y[r].inputs : NaN);
  return { enc1: one('enc1'), enc2: one('enc2') };
};

function phase(outcomes: Outcome[]): PhaseReport {
  const ok = outcomes.filter((o) => o.code === status.OK).length;
  const latency = outcomes.map((o) => o.endedAt - o.startedAt);
  return {
    calls: outcomes.length,
    counts: tally(outcomes),
    okShare: ok / outcomes.length,
    p50Ms: percentile(latency, 50),
    p99Ms: percentile(latency, 99),
  };
}

/**
 * From when, after `from`, every bin of calls sent up to `to` was at least 90% OK; undefined if
 * that tail is under a second (a hung replica's calls time out in waves, leaving good bins between).
 */
function failoverMs(outcomes: Outcome[], from: number, to: number): number | undefined {
  // Whole bins only: a last sliver would be empty, and look healthy.
  const bins = Array.from({ length: Math.floor((to - from) / BIN_MS) }, () => ({ ok: 0, all: 0 }));
  for (const o of outcomes) {
    const bin = bins[Math.floor((o.startedAt - from) / BIN_MS)];
    if (!bin || o.startedAt < from) continue;
    bin.all++;
    if (o.code === status.OK) bin.ok++;
  }
  let k = bins.length;
  while (k > 0 && bins[k - 1]!.ok >= 0.9 * bins[k - 1]!.all) k--;
  return (bins.length - k) * BIN_MS < 1000 ? undefined : k * BIN_MS;
}

/** Polls the cascade's breaker gauge until stopped; resolves to the highest state it saw. */
function watchBreaker(mesh: NetnsMesh) {
  let max = 0;
  let stopped = false;
  const polling = (async () => {
    while (!stopped) {
      const m = await mesh.metrics('cascade').catch(() => undefined);
      max = Math.max(max, m?.get('mrl_cascade_breaker_state') ?? 0);
      await sleep(200);
    }
  })();
  return async () => {
    stopped = true;
    await polling;
    return max;
  };
}

/**
 * Runs `fault` under a steady Classify load: a healthy baseline, the fault, its heal, then waits
 * for both replicas to get calls and measures a recovery window. Heals even when injecting fails.
 */
export async function runFault(mesh: NetnsMesh, fault: Fault, timing: FaultTiming = TIMING): Promise<FaultReport> {
  const cascadeBefore = await mesh.metrics('cascade');
  const startInputs = await replicaInputs(mesh);
  const load = openLoop(mesh.send, timing.perSecond, timing.deadlineMs);
  const breakerMax = watchBreaker(mesh);
  try {
    return await measureFault(mesh, fault, timing, { cascadeBefore, startInputs, load, breakerMax });
  } catch (err) {
    // measureFault stops both once it has measured; a failed fault must not leave its load running.
    await load.stop();
    await breakerMax();
    throw err;
  }
}

async function measureFault(
  mesh: NetnsMesh,
  fault: Fault,
  timing: FaultTiming,
  { cascadeBefore, startInputs, load, breakerMax }: { cascadeBefore: Map<string, number>; startInputs: InputCounts; load: ReturnType<typeof openLoop>; breakerMax: () => Promise<number> },
): Promise<FaultReport> {
  await sleep(timing.baselineMs);
  const injectionInputs = await replicaInputs(mesh);
  const baselineInputs = minus(injectionInputs, startInputs);
  const injectedAt = Date.now();
  let healedAt: number;
  try {
    await fault.inject(mesh);
    await sleep(injectedAt + timing.faultMs - Date.now());
  } finally {
    healedAt = Date.now();
    await fault.heal(mesh);
  }
  const healMs = Date.now() - healedAt;
  const sinceHeal = await replicaInputs(mesh);
  const faultInputs = minus(sinceHeal, injectionInputs);
  let rejoinedAt: number | undefined;
  while (Date.now() - healedAt < timing.rejoinTimeoutMs) {
    const grown = minus(await replicaInputs(mesh), sinceHeal);
    if (grown.enc1 >= REJOIN_INPUTS && grown.enc2 >= REJOIN_INPUTS) {
      rejoinedAt = Date.now();
      break;
    }
    await sleep(200);
  }
  const recoveryFrom = Date.now();
  const recoveryStart = await replicaInputs(mesh);
  await sleep(timing.recoveryMs);
  const recoveryInputs = minus(await replicaInputs(mesh), recoveryStart);
  const outcomes = await load.stop();
  const maxState = await breakerMax();
  const cascadeAfter = await mesh.metrics('cascade');
  const breakerDelta = (event: string) => delta(cascadeBefore, cascadeAfter, `mrl_cascade_breaker_events_total{event="${event}"}`);
  const within = (keep: (o: Outcome) => boolean) => phase(outcomes.filter(keep));
  // Calls sent later could be answered thanks to the heal.
  const faultOnly = healedAt - timing.deadlineMs;
  return {
    fault: fault.name,
    replica: fault.replica,
    phases: {
      baseline: within((o) => o.endedAt < injectedAt),
      fault: within((o) => o.endedAt >= injectedAt && o.startedAt < healedAt),
      settled: within((o) => o.startedAt >= injectedAt + timing.settleMs && o.startedAt < faultOnly),
      healing: within((o) => o.startedAt >= healedAt && o.startedAt < recoveryFrom),
      recovery: within((o) => o.startedAt >= recoveryFrom),
    },
    failoverMs: failoverMs(outcomes, injectedAt, faultOnly),
    healMs,
    rejoinMs: rejoinedAt === undefined ? undefined : rejoinedAt - healedAt,
    replicaInputs: { baseline: baselineInputs, fault: faultInputs, recovery: recoveryInputs },
    breaker: {
      opens: breakerDelta('open'),
      failures: breakerDelta('failure'),
      successes: breakerDelta('success'),
      rejects: breakerDelta('reject'),
      maxState,
    },
    late: late(outcomes, LATE_MARGIN_MS).length,
    messages: Object.fromEntries(outcomes.filter((o) => o.code !== status.OK).map((o) => [status[o.code]!, o.details]).reverse()),
  };
}

const pct = (x: number) => (Number.isNaN(x) ? '—' : `${(100 * x).toFixed(1)}%`);
const count = (x: number) => (Number.isNaN(x) ? '—' : String(x));
const ms = (x: number | undefined) => (x === undefined ? 'never' : `${(x / 1000).toFixed(1)} s`);
const others = (counts: Record<string, number>) =>
  Object.entries(counts)
    .filter(([code]) => code !== 'OK')
    .map(([code, n]) => `${code} ${n}`)
    .join(', ') || '—';

/** The reports as a Markdown table: per fault and phase, OK and the other answers by gRPC code, and the times to recover. */
export function faultTable(reports: FaultReport[], timing: FaultTiming = TIMING): string {
  const label: Record<Phase, string> = {
    baseline: 'baseline',
    fault: 'fault',
    settled: `fault, sent ${timing.settleMs / 1000}–${(timing.faultMs - timing.deadlineMs) / 1000} s in`,
    healing: 'heal until both serve',
    recovery: 'recovery',
  };
  const rows = reports.flatMap((r) =>
    (Object.keys(label) as Phase[]).map((p) => {
      const s = r.phases[p];
      const recover =
        p === 'fault'
          ? `failover ${ms(r.failoverMs)}`
          : p === 'healing'
            ? `both serve after ${ms(r.rejoinMs)}${r.healMs > 100 ? ` (restart ${ms(r.healMs)})` : ''}`
            : '';
      const b = r.breaker;
      const breaker =
        p === 'recovery'
          ? `opened ${b.opens}×, ${b.failures} of ${b.failures + b.successes} calls failed, refused ${b.rejects}, max state ${b.maxState}; late ${r.late}`
          : '';
      const latency = s.calls ? `${s.p50Ms} / ${s.p99Ms}` : '—';
      const split = p === 'baseline' || p === 'fault' || p === 'recovery' ? REPLICAS.map((x) => count(r.replicaInputs[p][x])).join(' / ') : '';
      const ok = `${s.counts.OK ?? 0} (${pct(s.okShare)})`;
      return `| ${r.fault} (${r.replica}) | ${label[p]} | ${s.calls} | ${ok} | ${others(s.counts)} | ${latency} | ${split} | ${recover} | ${breaker} |`;
    }),
  );
  return [
    `Classify at ${timing.perSecond}/s with ${timing.deadlineMs} ms deadlines; each fault lasts ${timing.faultMs / 1000} s. Calls: baseline, answered ` +
      `before the fault; fault, every call it could touch; then those sent in its last part, which the heal cannot answer; ` +
      `then sent from the heal until both replicas serve; recovery, the ${timing.recoveryMs / 1000} s after that.`,
    '',
    '| fault | phase | calls | OK | other answers | p50 / p99 ms | inputs answered by enc1 / enc2 | time to recover | breaker, late calls |',
    '| --- | --- | ---: | ---: | --- | ---: | ---: | --- | --- |',
    ...rows,
    '',
    ...reports.flatMap((r) => Object.entries(r.messages).map(([code, message]) => `- ${r.fault}: ${code} \`${message}\``)),
  ].join('\n');
}
