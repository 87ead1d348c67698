import { loadBundle } from '../../matryoshka/bundle.js';
import { startGrpcServer } from '../common/grpcServer.js';
import { parseTolerantService } from '../common/unary.js';
import type { Logger } from '../common/logger.js';
import { startMetricsServer } from '../common/metricsServer.js';
import { loadInferenceProtos, loadMrlProtos } from '../common/protos.js';
import { serverCredentials } from '../common/tls.js';
import { Batcher } from '../common/batcher.js';
import type { EncoderConfig } from './config.js';
import { createEncoderMetrics } from './metrics.js';
import { createInferenceService } from './inferenceService.js';
import { createEncoderService } from './service.js';
import { EncoderSession } from './session.js';

export interface RunningEncoder {
  port: number;
  metricsPort: number;
  /** The plaintext health-only port, when MRL_ENCODER_HEALTH_PORT is set. */
  healthPort?: number;
  metrics: ReturnType<typeof createEncoderMetrics>;
  /** Graceful stop: NOT_SERVING, finish in-flight calls, release the model. */
  shutdown(): Promise<void>;
}

/** In-process hooks that no setting reaches: production passes none. */
export interface EncoderHooks {
  /** Awaited before each batch runs the model, inside its timing (tests simulate a slow model with it; default: none). */
  beforeBatch?: () => Promise<void>;
}

/**
 * Loads the bundle and the ONNX session, then serves mrl.v1.Encoder and inference.GRPCInferenceService
 * (the Open Inference Protocol) on one port, health, reflection and /metrics.
 */
export async function startEncoder(config: EncoderConfig, logger: Logger, hooks: EncoderHooks = {}): Promise<RunningEncoder> {
  const bundle = await loadBundle(config.modelDir);
  const metrics = createEncoderMetrics();
  const metricsServer = await startMetricsServer(metrics.registry, config.host, config.metricsPort);
  const session = await EncoderSession.create(bundle, config, logger);
  metrics.info.set({ model: bundle.id, execution_provider: session.provider }, 1);
  const batcher = new Batcher<Float32Array, Float32Array>(
    { maxBatch: config.maxBatch, maxDelayMs: config.maxBatchDelayMs, maxQueue: config.maxQueue, name: 'encoder queue' },
    async (images) => {
      const end = metrics.inferenceSeconds.startTimer();
      try {
        await hooks.beforeBatch?.();
        return await session.encode(images);
      } finally {
        end();
      }
    },
    {
      batch: (size, waits) => {
        metrics.batchSize.observe(size);
        for (const w of waits) metrics.queueWait.observe(w);
      },
      depth: (n) => metrics.queueDepth.set(n),
    },
  );
  const mrl = loadMrlProtos();
  const inference = loadInferenceProtos();
  // What health reports, kept here for the inference protocol's own health calls.
  let serving = false;
  const grpcServer = await startGrpcServer({
    serviceNames: ['mrl.v1.Encoder', 'inference.GRPCInferenceService'],
    packageDefinition: { ...mrl.definition, ...inference.definition },
    register: (server) => {
      // A call of more images than the queue holds could never be admitted whole.
      server.addService(
        parseTolerantService(mrl.proto.mrl.v1.Encoder.service),
        createEncoderService({ bundle, batcher, metrics, logger, maxImagePixels: config.maxImagePixels, maxBatchInputs: config.maxQueue }),
      );
      server.addService(
        parseTolerantService(inference.proto.inference.GRPCInferenceService.service),
        createInferenceService({ bundle, batcher, metrics, logger, maxBatchInputs: config.maxQueue, serving: () => serving }),
      );
    },
    host: config.host,
    port: config.port,
    credentials: serverCredentials(config.tls),
    healthPort: config.healthPort,
    channelOptions: {
      'grpc.max_receive_message_length': config.maxMessageBytes,
      'grpc.max_concurrent_streams': config.maxConcurrentStreams,
      // grpc-js takes 0 as "close at once", so "never" is leaving the option out.
      ...(config.maxConnectionAgeMs > 0
        ? { 'grpc.max_connection_age_ms': config.maxConnectionAgeMs, 'grpc.max_connection_age_grace_ms': config.shutdownGraceMs }
        : {}),
    },
    logger,
  });
  const setServing = (value: boolean) => {
    serving = value;
    grpcServer.setServing(value);
  };
  setServing(true);
  // Without its model the encoder can only fail: health says so, and orchestrators replace it.
  session.onDeath(() => setServing(false));
  logger.info('encoder serving', {
    grpc_port: grpcServer.port,
    metrics_port: metricsServer.port,
    health_port: grpcServer.healthPort,
    tls: config.tls ? (config.tls.clientCa ? 'mutual' : 'server') : 'off',
    model: bundle.id,
  });
  return {
    port: grpcServer.port,
    metricsPort: metricsServer.port,
    healthPort: grpcServer.healthPort,
    metrics,
    shutdown: async () => {
      serving = false;
      await grpcServer.shutdown(config.shutdownGraceMs);
      await metricsServer.close();
      await session.dispose();
    },
  };
}
