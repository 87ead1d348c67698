import { readBundle, requireHeads } from '../../matryoshka/bundle.js';
import { ConfigError } from '../common/config.js';
import { startGrpcServer } from '../common/grpcServer.js';
import { parseTolerantService } from '../common/unary.js';
import type { Logger } from '../common/logger.js';
import { startMetricsServer } from '../common/metricsServer.js';
import { loadMrlProtos } from '../common/protos.js';
import { serverCredentials } from '../common/tls.js';
import { Cascade } from '../../matryoshka/cascade.js';
import { ORT_HEADS_MIN_MACS, ortHeadKernel } from '../../matryoshka/ortHeads.js';
import { HeadRunner } from './headRunner.js';
import type { CascadeConfig } from './config.js';
import { EncoderThread } from './encoderThread.js';
import { type CascadeMetrics, createCascadeMetrics } from './metrics.js';
import { createClassifierService } from './service.js';
import { fewestInputs } from '../../matryoshka/certify.js';
import { startRecertification } from './recertification.js';
import { ShadowSampler } from './shadow.js';
import { type ExitSettings, ThresholdStore } from './thresholds.js';

export interface RunningCascade {
  port: number;
  metricsPort: number;
  /** The plaintext health-only port, when MRL_CASCADE_HEALTH_PORT is set. */
  healthPort?: number;
  metrics: CascadeMetrics;
  thresholds: ThresholdStore;
  /** Graceful stop: NOT_SERVING, finish in-flight calls, close the encoder channel. */
  shutdown(): Promise<void>;
}

/**
 * Loads the bundle's heads and thresholds, then serves mrl.v1.Classifier, health, reflection and
 * /metrics. An embeddings-only bundle gets no encoder gateway: it classifies `embedding` requests only.
 */
export async function startCascade(config: CascadeConfig, logger: Logger): Promise<RunningCascade> {
  const bundle = requireHeads(await readBundle(config.modelDir));
  const metrics = createCascadeMetrics(bundle.nesting);
  const showSettings = (settings: ExitSettings) => {
    settings.thresholds.forEach((v, i) => metrics.threshold.set({ dimension: String(bundle.nesting[i]) }, v));
    metrics.certificateEpsilon.reset();
    metrics.certificateDelta.reset();
    if (settings.certificate) {
      metrics.certificateEpsilon.set({ risk: settings.certificate.risk }, settings.certificate.epsilon);
      metrics.certificateDelta.set({ risk: settings.certificate.risk }, settings.certificate.delta);
    }
  };
  let thresholds: ThresholdStore;
  try {
    thresholds = new ThresholdStore(
      bundle,
      {
        path: config.thresholdsFile,
        pollMs: config.thresholdsPollMs,
        onChange: (result, settings) => {
          metrics.thresholdReloads.inc({ result });
          showSettings(settings);
        },
      },
      logger,
    );
  } catch (err) {
    // Only an override file can fail here; name the setting that points at it.
    throw new ConfigError(`MRL_THRESHOLDS_FILE: ${(err as Error).message}`);
  }
  // Checked before anything listens: re-certification needs samples, and terms to certify at.
  const terms = thresholds.current.certificate;
  const refuse = (why: string) => {
    thresholds.close();
    throw new ConfigError(`MRL_SHADOW_RECALIBRATE: ${why}`);
  };
  if (config.shadow.recalibrate && (terms?.risk !== 'disagreement' || config.shadow.rate === 0))
    refuse(
      'needs MRL_SHADOW_RATE above 0 and thresholds certified for the disagreement risk ' +
        '(calibration.certificate in model.json or the thresholds file, from `mrl calibrate`)',
    );
  if (config.shadow.recalibrate && terms && config.shadow.reservoir < fewestInputs(terms))
    refuse(
      `MRL_SHADOW_RESERVOIR=${config.shadow.reservoir} holds too few samples to certify disagreement <= ${terms.epsilon} ` +
        `with delta ${terms.delta}: it needs at least ${fewestInputs(terms)}`,
    );
  showSettings(thresholds.current);
  // With a V2 server the cascade serves only while the server's model fits its heads; with no encoder, at once.
  const checked = bundle.input !== undefined && config.encoder.protocol === 'kserve-v2';
  let fits = !checked;
  let serving: ((ok: boolean) => void) | undefined;
  // An embeddings-only bundle has nothing to encode with: no gateway thread, and the service refuses images and tensors.
  const encoder = bundle.input === undefined ? undefined : await EncoderThread.start(
    {
      gateway: { target: config.encoderTarget, breaker: config.breaker, queues: config.queues, embeddingDim: bundle.embeddingDim },
      channel: { target: config.encoderTarget, tls: config.encoderTls, maxMessageBytes: config.maxMessageBytes, keepaliveMs: config.encoderKeepaliveMs },
      modelDir: config.modelDir,
      protocol: checked
        ? { kind: 'kserve-v2', model: config.encoder.model, version: config.encoder.version, maxImagePixels: config.maxImagePixels }
        : { kind: 'mrl' },
    },
    logger,
    (unfit) => {
      fits = unfit === undefined;
      if (unfit) logger.warn('encoder does not fit: NOT_SERVING until it does', { why: unfit });
      else logger.info('encoder fits the bundle: SERVING', { target: config.encoderTarget });
      serving?.(fits);
    },
  );
  const metricsServer = await startMetricsServer(metrics.registry, config.host, config.metricsPort, encoder && (() => encoder.metricsText()));
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
  // Large heads run as matrix products on onnxruntime; small ones cost less in JavaScript.
  const ortHeads = bundle.labels.length * bundle.embeddingDim >= ORT_HEADS_MIN_MACS ? ortHeadKernel(cascade) : undefined;
  const heads = new HeadRunner(cascade, ortHeads ?? cascade.js);
  const shadow = new ShadowSampler(heads, metrics, { rate: config.shadow.rate, reservoir: config.shadow.recalibrate ? config.shadow.reservoir : 0 });
  const recertification = config.shadow.recalibrate
    ? startRecertification(shadow, thresholds, { intervalMs: config.shadow.intervalMs, checkMs: 1000 }, metrics, logger)
    : undefined;
  const { definition, proto } = loadMrlProtos();
  const grpcServer = await startGrpcServer({
    serviceNames: ['mrl.v1.Classifier'],
    packageDefinition: definition,
    register: (server) =>
      server.addService(
        parseTolerantService(proto.mrl.v1.Classifier.service),
        createClassifierService({
          bundle,
          cascade,
          heads,
          thresholds,
          shadow,
          encoder,
          metrics,
          logger,
          defaultTimeoutMs: config.encoderTimeoutMs,
          maxBatchRequests: config.maxBatchRequests,
        }),
      ),
    host: config.host,
    port: config.port,
    credentials: serverCredentials(config.tls),
    healthPort: config.healthPort,
    channelOptions: { 'grpc.max_receive_message_length': config.maxMessageBytes, 'grpc.max_concurrent_streams': config.maxConcurrentStreams },
    logger,
  });
  serving = (ok) => grpcServer.setServing(ok);
  serving(fits);
  logger.info('cascade serving', {
    grpc_port: grpcServer.port,
    metrics_port: metricsServer.port,
    health_port: grpcServer.healthPort,
    tls: config.tls ? (config.tls.clientCa ? 'mutual' : 'server') : 'off',
    encoder_tls: config.encoderTls ? (config.encoderTls.cert ? 'mutual' : 'server') : 'off',
    model: bundle.id,
    heads: bundle.headKind,
    normalization: bundle.normalization,
    ...(encoder ? { encoder: config.encoderTarget, encoder_protocol: config.encoder.protocol } : { encoder: 'none (an embeddings-only bundle)' }),
  });
  return {
    port: grpcServer.port,
    metricsPort: metricsServer.port,
    healthPort: grpcServer.healthPort,
    metrics,
    thresholds,
    shutdown: async () => {
      serving = undefined;
      await grpcServer.shutdown(config.shutdownGraceMs);
      await recertification?.stop();
      thresholds.close();
      await encoder?.close();
      await metricsServer.close();
      await ortHeads?.release();
    },
  };
}
