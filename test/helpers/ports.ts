import { createServer, type Server } from 'node:net';

/** `count` distinct free loopback ports (all held open together, then released). */
export async function freePorts(count: number): Promise<number[]> {
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

/** Ports of a loopback mesh that `mrl start` runs. */
export interface StartPorts {
  encoder: number;
  cascade: number;
  encoderMetrics: number;
  cascadeMetrics: number;
}

/**
 * The environment for `mrl start` of both services on free loopback ports: this process's,
 * without its MRL_ settings and whatever `drop` names, plus `extra`.
 */
export async function loopbackStartEnv(extra: Record<string, string> = {}, drop: string[] = []): Promise<{ env: NodeJS.ProcessEnv; ports: StartPorts }> {
  const [encoder, cascade, encoderMetrics, cascadeMetrics] = (await freePorts(4)) as [number, number, number, number];
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MRL_') && !drop.includes(k))),
    MRL_ENCODER_HOST: '127.0.0.1',
    MRL_CASCADE_HOST: '127.0.0.1',
    MRL_ENCODER_PORT: String(encoder),
    MRL_CASCADE_PORT: String(cascade),
    MRL_ENCODER_METRICS_PORT: String(encoderMetrics),
    MRL_CASCADE_METRICS_PORT: String(cascadeMetrics),
    MRL_ENCODER_TARGET: `127.0.0.1:${encoder}`,
    MRL_INTRA_OP_THREADS: '1',
    ...extra,
  };
  return { env, ports: { encoder, cascade, encoderMetrics, cascadeMetrics } };
}
