import { spawnService } from '../test/helpers/processes.js';

/**
 * onnxruntime's threads in the mesh's encoder: one, as on 2 cores shared with gRPC and the client
 * a second intra-op thread keeps waiting for whichever core is busy, and both the bulk path and
 * Classify measured faster with one.
 */
export const MESH_INTRA_OP_THREADS = '1';

/**
 * The mesh as separate processes on loopback; `settings` (MRL_… variables) go to both. `servers`
 * names their processes for a load client's CPU readings.
 */
export async function startMesh(settings: Record<string, string>) {
  const encoder = await spawnService('encoder', { MRL_INTRA_OP_THREADS: MESH_INTRA_OP_THREADS, ...settings });
  const cascade = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, ...settings });
  return {
    encoder,
    cascade,
    servers: { encoder: encoder.pid, cascade: cascade.pid },
    stop: async () => {
      await cascade.stop();
      await encoder.stop();
    },
  };
}

/** `--set MRL_X=value` arguments as settings for `startMesh`. */
export function parseSettings(args: string[]): Record<string, string> {
  return Object.fromEntries(
    args.map((kv) => {
      const m = /^(MRL_[A-Z0-9_]+)=(.*)$/.exec(kv);
      if (!m) throw new Error(`--set takes MRL_NAME=value, got ${kv}`);
      return [m[1]!, m[2]!];
    }),
  );
}
