import { loadBundle } from '../common/bundle.js';
import { startGrpcServer } from '../common/grpcServer.js';
import type { Logger } from '../common/logger.js';
import { startMetricsServer } from '../common/metricsServer.js';
import { loadMrlProtos } from '../common/protos.js';
import { Cascade } from './cascade.js';
import type { CascadeConfig } from './config.js';
import { createEncoderClient } from './encoderClient.js';
import { type CascadeMetrics, createCascadeMetrics } from './metrics.js';
import { createClassifierService } from './service.js';
import { ThresholdStore } from './thresholds.js';

export interface RunningCascade {
  port: number;
  metricsPort: number;
  metrics: CascadeMetrics;
  thresholds: ThresholdStore;
  /** Graceful stop: NOT_SERVING, finish in-flight calls, close the encoder channel. */
  shutdown(): Promise<void>;
}

/** Loads the bundle's heads and thresholds, then serves mrl.v1.Classifier, health, reflection and /metrics. */
export async function startCascade(config: CascadeConfig, logger: Logger): Promise<RunningCascade> {
  const bundle = await loadBundle(config.modelDir);
  const metrics = createCascadeMetrics(bundle.nesting);
  const showThresholds = (t: readonly number[]) => t.forEach((v, i) => metrics.threshold.set({ dimension: String(bundle.nesting[i]) }, v));
  const thresholds = new ThresholdStore(
    bundle,
    {
      path: config.thresholdsFile,
      pollMs: config.thresholdsPollMs,
      onReload: (ok, t) => {
        metrics.thresholdReloads.inc({ result: ok ? 'ok' : 'error' });
        showThresholds(t);
      },
    },
    logger,
  );
  showThresholds(thresholds.current);
  const metricsServer = await startMetricsServer(metrics.registry, config.host, config.metricsPort);
  const encoder = createEncoderClient(
    { target: config.encoderTarget, maxMessageBytes: config.maxMessageBytes, breaker: config.breaker },
    metrics,
    logger,
  );
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  const { definition, proto } = loadMrlProtos();
  const grpcServer = await startGrpcServer({
    serviceNames: ['mrl.v1.Classifier'],
    packageDefinition: definition,
    register: (server) =>
      server.addService(
        proto.mrl.v1.Classifier.service,
        createClassifierService({ bundle, cascade, thresholds, encoder, metrics, logger, defaultTimeoutMs: config.encoderTimeoutMs }),
      ),
    host: config.host,
    port: config.port,
    channelOptions: { 'grpc.max_receive_message_length': config.maxMessageBytes },
    logger,
  });
  grpcServer.setServing(true);
  logger.info('cascade serving', {
    grpc_port: grpcServer.port,
    metrics_port: metricsServer.port,
    model: bundle.id,
    heads: bundle.headKind,
    encoder: config.encoderTarget,
  });
  return {
    port: grpcServer.port,
    metricsPort: metricsServer.port,
    metrics,
    thresholds,
    shutdown: async () => {
      await grpcServer.shutdown(config.shutdownGraceMs);
      thresholds.close();
      encoder.close();
      await metricsServer.close();
    },
  };
}
