import { classifierClient, encoderClient } from '../cli/clients.js';
import { cascadeConfig } from '../services/cascade/config.js';
import { type RunningCascade, startCascade } from '../services/cascade/server.js';
import type { Env } from '../services/common/config.js';
import { silentLogger } from '../services/common/logger.js';
import { encoderConfig } from '../services/encoder/config.js';
import { type RunningEncoder, startEncoder } from '../services/encoder/server.js';
import { type ServiceProcess, spawnService } from './services.js';
import { slowBatches } from './slowEncoder.js';

export interface TestMesh {
  encoder: RunningEncoder;
  cascade: RunningCascade;
  classifier: ReturnType<typeof classifierClient>;
  encoderClient: ReturnType<typeof encoderClient>;
  stop(): Promise<void>;
}

/** Test-only ways to start a mesh, none of them a setting. */
export interface MeshOptions {
  /** ms every encoder batch takes before the model runs, to simulate a slow model (default 0). */
  slowBatchMs?: number;
}

/** The real encoder and cascade, in this process, on free loopback ports, with the default model. */
export async function startMesh(env: Env = {}, options: MeshOptions = {}): Promise<TestMesh> {
  const loopback = { MRL_ENCODER_HOST: '127.0.0.1', MRL_CASCADE_HOST: '127.0.0.1' };
  const ports = { MRL_ENCODER_PORT: '0', MRL_ENCODER_METRICS_PORT: '0', MRL_CASCADE_PORT: '0', MRL_CASCADE_METRICS_PORT: '0' };
  const encoder = await startEncoder(encoderConfig({ ...loopback, ...ports, ...env }), silentLogger, slowBatches(options.slowBatchMs));
  const cascade = await startCascade(cascadeConfig({ ...loopback, ...ports, MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, ...env }), silentLogger).catch(
    async (err: unknown) => {
      await encoder.shutdown();
      throw err;
    },
  );
  const classifier = classifierClient(`127.0.0.1:${cascade.port}`);
  const encoderCli = encoderClient(`127.0.0.1:${encoder.port}`);
  return {
    encoder,
    cascade,
    classifier,
    encoderClient: encoderCli,
    stop: async () => {
      classifier.close();
      encoderCli.close();
      await cascade.shutdown();
      await encoder.shutdown();
    },
  };
}

export interface ProcessMesh {
  encoder: ServiceProcess;
  cascade: ServiceProcess;
  /** SIGTERM to both, the cascade first; resolves once both have exited. */
  stop(): Promise<void>;
}

/** The encoder and the cascade as processes of their own on loopback, as `npm start` runs them; `env` goes to both. */
export async function spawnMesh(env: Env = {}): Promise<ProcessMesh> {
  const encoder = await spawnService('encoder', env);
  const cascade = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, ...env }).catch(async (err: unknown) => {
    await encoder.stop();
    throw err;
  });
  return {
    encoder,
    cascade,
    stop: async () => {
      await cascade.stop();
      await encoder.stop();
    },
  };
}
