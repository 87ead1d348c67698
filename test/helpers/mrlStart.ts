import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { classifierClient, classify } from '../../cli/clients.js';
import type { ClassifierClient } from '../../services/common/generated/mrl/v1/Classifier.js';
import { type Exit, type NodeProcess, spawnNode } from '../../harness/processes.js';
import { INTRA_OP_THREADS } from '../../harness/services.js';
import type { ClassifyRequest } from '../../services/common/generated/mrl/v1/ClassifyRequest.js';
import type { ClassifyResponse__Output } from '../../services/common/generated/mrl/v1/ClassifyResponse.js';

/** `count` distinct free loopback ports (all held open together, then released). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** `mrl start` running in a process of its own, and a client of the cascade it serves. */
export interface MrlStart {
  supervisor: NodeProcess;
  client: ClassifierClient;
  /** The pids of every `<name> started` line the supervisor wrote, in order. */
  pids(name: string): number[];
  /**
   * Classifies `request` until the cascade answers it, for at most `withinMs`: the answer, or
   * undefined if none came in time or the supervisor exited. UNAVAILABLE and DEADLINE_EXCEEDED
   * (the mesh still starting, or an encoder restarting) are tried again; other errors reject.
   */
  answer(request: ClassifyRequest, withinMs: number): Promise<ClassifyResponse__Output | undefined>;
  /** Closes the client, interrupts the supervisor (SIGINT, as Ctrl-C does), and resolves with its exit. */
  stop(): Promise<Exit>;
}

export interface MrlStartOptions {
  /** Settings on top of the loopback ports, such as MRL_MODEL_DIR. */
  env?: Record<string, string>;
  /** After `start`: the services to run (default both). */
  services?: string[];
  /** A compiled package to run instead of the TypeScript source: its folder, whose bin/mrl.js runs without tsx. */
  compiledApp?: string;
}

/** The pids of every `<name> started` line a supervisor wrote, in order. */
const startedPids = (supervisor: NodeProcess, name: string) =>
  supervisor.output.flatMap((l) => {
    const m = new RegExp(`^\\[supervisor\\] .* ${name} started pid=(\\d+)`).exec(l);
    return m ? [Number(m[1])] : [];
  });

/** Every `mrl start` run here, for killStarted. */
const supervisors = new Set<NodeProcess>();

/**
 * Runs `mrl start` (what `npm start` runs) on free loopback ports, from the source through tsx or
 * from a compiled package, with nothing of this process's MRL_ settings (and, compiled, no
 * NODE_OPTIONS, which could bring tsx back).
 */
export async function startMrl(options: MrlStartOptions = {}): Promise<MrlStart> {
  const [encoder, cascade, encoderMetrics, cascadeMetrics] = (await freePorts(4)) as [number, number, number, number];
  const env = {
    MRL_ENCODER_HOST: '127.0.0.1',
    MRL_CASCADE_HOST: '127.0.0.1',
    MRL_ENCODER_PORT: String(encoder),
    MRL_CASCADE_PORT: String(cascade),
    MRL_ENCODER_METRICS_PORT: String(encoderMetrics),
    MRL_CASCADE_METRICS_PORT: String(cascadeMetrics),
    MRL_ENCODER_TARGET: `127.0.0.1:${encoder}`,
    MRL_INTRA_OP_THREADS: INTRA_OP_THREADS,
    ...options.env,
  };
  const args = ['start', ...(options.services ?? [])];
  const app = options.compiledApp;
  const supervisor = app
    ? spawnNode(join(app, 'bin', 'mrl.js'), { args, env, cwd: app, compiled: true, unset: ['NODE_OPTIONS'] })
    : spawnNode('cli/main.ts', { args, env });
  supervisors.add(supervisor);
  const client = classifierClient(`127.0.0.1:${cascade}`);
  const answer: MrlStart['answer'] = async (request, withinMs) => {
    for (const until = Date.now() + withinMs; Date.now() < until && !supervisor.exited(); await new Promise((r) => setTimeout(r, 100))) {
      try {
        return await classify(client, request, 1000);
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== status.UNAVAILABLE && code !== status.DEADLINE_EXCEEDED) throw err;
      }
    }
    return undefined;
  };
  return {
    supervisor,
    client,
    pids: (name) => startedPids(supervisor, name),
    answer,
    stop: () => {
      client.close();
      return supervisor.stop('SIGINT');
    },
  };
}

/** SIGKILLs every `mrl start` and service process started here that is still running (for afterAll: a test that failed halfway may leave them). */
export function killStarted(): void {
  for (const supervisor of supervisors)
    for (const pid of [supervisor.pid, ...startedPids(supervisor, 'encoder'), ...startedPids(supervisor, 'cascade')]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  supervisors.clear();
}
