import type * as grpc from '@grpc/grpc-js';
import type { Env } from '../services/common/config.js';
import { healthCheck } from './health.js';
import { type Exit, type NodeProcess, spawnNode } from './processes.js';

const MAIN = { encoder: 'services/encoder/main.ts', cascade: 'services/cascade/main.ts' } as const;
export type ServiceName = keyof typeof MAIN;

/**
 * onnxruntime's intra-op threads in every encoder started here: two cores are shared by
 * everything a test or benchmark starts, and a second thread keeps waiting for whichever core is
 * busy (the bulk path and Classify both measured faster with one).
 */
export const INTRA_OP_THREADS = '1';

/** A service running as its own process, as `npm start` and a container run it. */
export interface ServiceProcess extends NodeProcess {
  name: ServiceName;
  /** The address it listens on. */
  host: string;
  port: number;
  metricsPort: number;
  /** The plaintext health-only port, when the service was given one. */
  healthPort?: number;
}

export interface ServiceOptions {
  /** The address it listens on and is checked at (default 127.0.0.1). */
  host?: string;
  /** A command that runs it, such as `['ip', 'netns', 'exec', NS]` (default none: node itself). */
  prefix?: string[];
  /** For the health check on its gRPC port, where it has no health port (default plaintext). */
  credentials?: grpc.ChannelCredentials;
  /** How long it may take to serve, ms (default 45,000). */
  timeoutMs?: number;
  /** Encoder only: ms added to every batch run, to simulate a slow model (default none). */
  slowBatchMs?: number;
}

/** Runs `services/<name>/main.ts` (or the slow encoder) on `host`, on free ports unless `env` names them. */
function launch(name: ServiceName, env: Env, options: ServiceOptions): NodeProcess {
  if (options.slowBatchMs !== undefined && name !== 'encoder') throw new Error('only the encoder has slow batches');
  const host = options.host ?? '127.0.0.1';
  const defaults: Env = {
    MRL_ENCODER_HOST: host,
    MRL_CASCADE_HOST: host,
    MRL_ENCODER_PORT: '0',
    MRL_ENCODER_METRICS_PORT: '0',
    MRL_CASCADE_PORT: '0',
    MRL_CASCADE_METRICS_PORT: '0',
    MRL_INTRA_OP_THREADS: INTRA_OP_THREADS,
  };
  const slow = options.slowBatchMs !== undefined;
  return spawnNode(slow ? 'harness/slowEncoderMain.ts' : MAIN[name], {
    args: slow ? [String(options.slowBatchMs)] : [],
    env: { ...defaults, ...env },
    prefix: options.prefix,
  });
}

/**
 * Spawns a service and resolves once it is serving: its "serving" log line gives the ports it
 * bound, and grpc.health.v1 then answers SERVING (on the plaintext health port when it has one,
 * else on its gRPC port with `credentials`). Rejects with its output, SIGKILLing it, if it exits
 * first or is not serving within `timeoutMs`.
 */
export async function spawnService(name: ServiceName, env: Env = {}, options: ServiceOptions = {}): Promise<ServiceProcess> {
  const until = Date.now() + (options.timeoutMs ?? 45_000);
  const proc = launch(name, env, options);
  const line = await proc.jsonLine('serving', (l) => l.msg === `${name} serving`, options.timeoutMs);
  const service: ServiceProcess = {
    ...proc,
    name,
    host: options.host ?? '127.0.0.1',
    port: line.grpc_port as number,
    metricsPort: line.metrics_port as number,
    healthPort: line.health_port as number | undefined,
  };
  const health = () =>
    service.healthPort
      ? healthCheck(service.healthPort, '', undefined, service.host)
      : healthCheck(service.port, '', options.credentials, service.host);
  // Health can lag the log line: a cascade of an Open Inference Protocol server serves once it has checked the server's model.
  for (;;) {
    const status = await health().catch((err: Error) => err.message);
    if (status === 'SERVING') return service;
    if (service.exited() || Date.now() > until) {
      await service.kill();
      throw new Error(`${name} logged that it serves, but its health is ${status}:\n${service.output.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a service that is expected to refuse to start; resolves with its exit and output. */
export async function runToExit(name: ServiceName, env: Env, timeoutMs = 30_000): Promise<Exit & { output: string }> {
  const proc = launch(name, env, {});
  const timer = setTimeout(() => void proc.kill(), timeoutMs);
  const e = await proc.exit;
  clearTimeout(timer);
  return { ...e, output: proc.output.join('\n') };
}
