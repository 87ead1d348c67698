import { DEFAULT_MODEL_DIR } from '../common/bundle.js';
import { ConfigError, type Env, distinctPorts, envReader, isHost } from '../common/config.js';
import type { LogLevel } from '../common/logger.js';
import { type ServerTls, serverTlsSettings } from '../common/tls.js';
import type { ExecutionProvider } from './session.js';

export interface EncoderConfig {
  /** MRL_MODEL_DIR: the model bundle folder (default: the bundled Fashion-MNIST model). */
  modelDir: string;
  /** MRL_ENCODER_HOST: address both ports bind (default 0.0.0.0). */
  host: string;
  /** MRL_ENCODER_PORT: gRPC port (default 50052). */
  port: number;
  /** MRL_ENCODER_METRICS_PORT: Prometheus /metrics port (default 9465). */
  metricsPort: number;
  /**
   * MRL_ENCODER_HEALTH_PORT: a plaintext port serving only grpc.health.v1, for probes that cannot
   * speak TLS (default: none; the gRPC port serves health too).
   */
  healthPort?: number;
  /**
   * MRL_TLS_CERT_FILE, MRL_TLS_KEY_FILE: PEM certificate chain and key; set, the gRPC port speaks
   * TLS. MRL_TLS_CLIENT_CA_FILE: PEM CA; set, clients must present a certificate it signed
   * (mutual TLS). Default: plaintext.
   */
  tls?: ServerTls;
  /** MRL_EXECUTION_PROVIDERS: comma-separated preference, `cuda` and/or `cpu` (default `cpu`). */
  executionProviders: ExecutionProvider[];
  /** MRL_INTRA_OP_THREADS: onnxruntime threads, 0 = its default (default 0). */
  intraOpThreads: number;
  /** MRL_MAX_BATCH: images per encoder run (default 64). */
  maxBatch: number;
  /**
   * MRL_MAX_BATCH_DELAY_MS: longest wait for a batch to fill, ms (default 0: run what has
   * arrived; later calls gather while it runs, so batches still fill under load).
   */
  maxBatchDelayMs: number;
  /** MRL_MAX_QUEUE: images waiting before RESOURCE_EXHAUSTED (default 1024). */
  maxQueue: number;
  /** MRL_MAX_IMAGE_PIXELS: larger images are refused undecoded (default 4194304 = 2048²). */
  maxImagePixels: number;
  /** MRL_MAX_MESSAGE_BYTES: largest request accepted (default 4194304). */
  maxMessageBytes: number;
  /**
   * MRL_MAX_CONNECTION_AGE_MS: a client connection is closed (GOAWAY) after this long, ms;
   * 0 = never (default 0). Clients that balance over DNS (a headless Service) reconnect and
   * re-resolve, so pods added by a scale-up get traffic within this age. Calls in flight
   * when it expires get MRL_SHUTDOWN_GRACE_MS to finish.
   */
  maxConnectionAgeMs: number;
  /** MRL_SHUTDOWN_GRACE_MS: how long in-flight calls may finish after SIGTERM (default 10000). */
  shutdownGraceMs: number;
  /**
   * MRL_FAULT_DELAY_MS: test-only fault injection, ms added to every batch run to simulate a slow
   * model (default 0; leave it 0 in production).
   */
  faultDelayMs: number;
  /** MRL_LOG_LEVEL: debug, info, warn or error (default info). */
  logLevel: LogLevel;
}

export function encoderConfig(env: Env): EncoderConfig {
  const r = envReader(env);
  const providers = r.string('MRL_EXECUTION_PROVIDERS', 'cpu').split(',').map((p) => p.trim());
  const unknown = providers.filter((p) => p !== 'cuda' && p !== 'cpu');
  if (unknown.length > 0 || providers.length === 0)
    throw new ConfigError(`MRL_EXECUTION_PROVIDERS=${JSON.stringify(providers.join(','))}: must list cuda and/or cpu`);
  const config: EncoderConfig = {
    modelDir: r.dir('MRL_MODEL_DIR', DEFAULT_MODEL_DIR),
    host: r.checked('MRL_ENCODER_HOST', '0.0.0.0', isHost, 'an IP address or a host name'),
    port: r.int('MRL_ENCODER_PORT', 50052, 0, 65535),
    metricsPort: r.int('MRL_ENCODER_METRICS_PORT', 9465, 0, 65535),
    healthPort: r.optionalInt('MRL_ENCODER_HEALTH_PORT', 0, 65535),
    tls: serverTlsSettings(r),
    executionProviders: providers as ExecutionProvider[],
    intraOpThreads: r.int('MRL_INTRA_OP_THREADS', 0, 0, 256),
    maxBatch: r.int('MRL_MAX_BATCH', 64, 1, 4096),
    maxBatchDelayMs: r.int('MRL_MAX_BATCH_DELAY_MS', 0, 0, 1000),
    maxQueue: r.int('MRL_MAX_QUEUE', 1024, 1, 1_000_000),
    maxImagePixels: r.int('MRL_MAX_IMAGE_PIXELS', 2048 * 2048, 1, 1 << 28),
    maxMessageBytes: r.int('MRL_MAX_MESSAGE_BYTES', 4 * 1024 * 1024, 1024, 1 << 30),
    maxConnectionAgeMs: r.int('MRL_MAX_CONNECTION_AGE_MS', 0, 0, 86_400_000),
    shutdownGraceMs: r.int('MRL_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    faultDelayMs: r.int('MRL_FAULT_DELAY_MS', 0, 0, 600_000),
    logLevel: r.logLevel(),
  };
  distinctPorts({ MRL_ENCODER_PORT: config.port, MRL_ENCODER_METRICS_PORT: config.metricsPort, MRL_ENCODER_HEALTH_PORT: config.healthPort });
  return config;
}
