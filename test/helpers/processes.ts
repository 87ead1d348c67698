import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { Env } from '../../services/common/config.js';
import { healthCheck } from './health.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = { encoder: 'services/encoder/main.ts', cascade: 'services/cascade/main.ts' } as const;
export type ServiceName = keyof typeof MAIN;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A service running as its own process, as `npm start` and a container run it. */
export interface ServiceProcess {
  name: ServiceName;
  child: ChildProcess;
  pid: number;
  port: number;
  metricsPort: number;
  /** The plaintext health-only port, when the service was given one. */
  healthPort?: number;
  /** Every line the process wrote (JSON log lines on stdout, anything on stderr). */
  output: string[];
  /** Resolves when the process exits. */
  exit: Promise<Exit>;
  /** Whether it has exited. */
  exited(): boolean;
  /** SIGTERM, then the exit. */
  stop(): Promise<Exit>;
}

/** Loopback addresses and free ports: each process picks its own and logs them. */
const LOOPBACK: Env = {
  MRL_ENCODER_HOST: '127.0.0.1',
  MRL_CASCADE_HOST: '127.0.0.1',
  MRL_ENCODER_PORT: '0',
  MRL_ENCODER_METRICS_PORT: '0',
  MRL_CASCADE_PORT: '0',
  MRL_CASCADE_METRICS_PORT: '0',
  // Two cores are shared by everything a test starts.
  MRL_INTRA_OP_THREADS: '1',
};

/** The parent's environment without any MRL_ setting, so a developer's own settings cannot leak in. */
function cleanEnv(): Env {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MRL_')));
}

const running = new Set<ChildProcess>();

/**
 * Starts `node --import tsx services/<name>/main.ts` with `env` and collects its output; with
 * `slowBatchMs`, the encoder's test entry that slows every batch by that many ms.
 */
function launch(name: ServiceName, env: Env, slowBatchMs?: number): { child: ChildProcess; output: string[]; exit: Promise<Exit> } {
  if (slowBatchMs !== undefined && name !== 'encoder') throw new Error('only the encoder has slow batches');
  const script = slowBatchMs === undefined ? [MAIN[name]] : ['test/helpers/slowEncoderMain.ts', String(slowBatchMs)];
  const child = spawn(process.execPath, ['--import', 'tsx', ...script], {
    cwd: ROOT,
    env: { ...cleanEnv(), ...LOOPBACK, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const output: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (line) => output.push(line));
  const exit = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, output, exit };
}

const parse = (line: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
};

/**
 * Spawns a service on loopback and resolves once it is serving: its "serving" log line gives the
 * ports it bound, and grpc.health.v1 then answers SERVING (on the plaintext health port when it
 * has one, else on its gRPC port with `credentials`). Rejects with its output if it exits first.
 * `slowBatchMs` (encoder only): ms added to every batch run, to simulate a slow model.
 */
export async function spawnService(
  name: ServiceName,
  env: Env = {},
  options: { credentials?: grpc.ChannelCredentials; timeoutMs?: number; slowBatchMs?: number } = {},
): Promise<ServiceProcess> {
  const { child, output, exit } = launch(name, env, options.slowBatchMs);
  let exited = false;
  void exit.then(() => (exited = true));
  const serving = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in time:\n${output.join('\n')}`)), options.timeoutMs ?? 45_000);
    const check = setInterval(() => {
      const line = output.map(parse).find((l) => l?.msg === `${name} serving`);
      if (line) {
        clearInterval(check);
        clearTimeout(timer);
        resolve(line);
      }
    }, 20);
    void exit.then((e) => {
      clearInterval(check);
      clearTimeout(timer);
      reject(new Error(`${name} exited (${e.signal ?? e.code}) before serving:\n${output.join('\n')}`));
    });
  });
  const line = await serving;
  const proc: ServiceProcess = {
    name,
    child,
    pid: child.pid!,
    port: line.grpc_port as number,
    metricsPort: line.metrics_port as number,
    healthPort: line.health_port as number | undefined,
    output,
    exit,
    exited: () => exited,
    stop: () => {
      if (!exited) child.kill('SIGTERM');
      return exit;
    },
  };
  const status = proc.healthPort
    ? await healthCheck(proc.healthPort, '')
    : await healthCheck(proc.port, '', options.credentials);
  if (status !== 'SERVING') throw new Error(`${name} says serving but its health is ${status}`);
  return proc;
}

/** Runs a service that is expected to refuse to start; resolves with its exit and output. */
export async function runToExit(name: ServiceName, env: Env, timeoutMs = 30_000): Promise<Exit & { output: string }> {
  const { child, output, exit } = launch(name, env);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const e = await exit;
  clearTimeout(timer);
  return { ...e, output: output.join('\n') };
}

/** SIGKILLs every process these helpers started that is still running (for afterAll). */
export async function killAll(): Promise<void> {
  const exits = [...running].map((child) => new Promise((resolve) => child.once('exit', resolve)));
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(exits);
}

export { peakRssBytes, rssBytes } from '../../bench/procStats.js';
