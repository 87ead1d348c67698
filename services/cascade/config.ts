import { DEFAULT_MODEL_DIR } from '../common/bundle.js';
import { type Env, distinctPorts, envReader, isGrpcTarget, isHost } from '../common/config.js';
import type { LogLevel } from '../common/logger.js';
import { type ClientTls, type ServerTls, clientTlsSettings, serverTlsSettings } from '../common/tls.js';
import type { CoalescingOptions } from './coalescingEncoder.js';
import type { BreakerOptions } from './encoderClient.js';

export interface CascadeConfig {
  /** MRL_MODEL_DIR: the model bundle folder (default: the bundled Fashion-MNIST model). */
  modelDir: string;
  /** MRL_CASCADE_HOST: address both ports bind (default 0.0.0.0). */
  host: string;
  /** MRL_CASCADE_PORT: gRPC port (default 50051). */
  port: number;
  /** MRL_CASCADE_METRICS_PORT: Prometheus /metrics port (default 9464). */
  metricsPort: number;
  /**
   * MRL_CASCADE_HEALTH_PORT: a plaintext port serving only grpc.health.v1, for probes that cannot
   * speak TLS (default: none; the gRPC port serves health too).
   */
  healthPort?: number;
  /**
   * MRL_TLS_CERT_FILE, MRL_TLS_KEY_FILE: PEM certificate chain and key; set, the gRPC port speaks
   * TLS. MRL_TLS_CLIENT_CA_FILE: PEM CA; set, clients must present a certificate it signed
   * (mutual TLS). Default: plaintext.
   */
  tls?: ServerTls;
  /** MRL_ENCODER_TARGET: the encoder, `host:port` or `dns:///name:port` (default localhost:50052). */
  encoderTarget: string;
  /**
   * MRL_ENCODER_TLS_CA_FILE: PEM CA the encoder's certificate must chain to; set, the encoder
   * channel uses TLS (default: plaintext). MRL_ENCODER_TLS_CERT_FILE, MRL_ENCODER_TLS_KEY_FILE:
   * the cascade's client certificate, for an encoder that requires one (mutual TLS).
   * MRL_ENCODER_TLS_SERVER_NAME: the name the encoder's certificate carries, when it is not the
   * target's host (default: the target's host).
   */
  encoderTls?: ClientTls;
  /** MRL_ENCODER_TIMEOUT_MS: encoder deadline when the caller sets none, ms (default 5000). */
  encoderTimeoutMs: number;
  /**
   * How concurrent requests share EncodeBatch calls. MRL_ENCODER_BATCH: most inputs per call
   * (default 64; 1 sends every request alone). MRL_ENCODER_BATCH_DELAY_MS: longest an input waits
   * for others, ms (default 0: only requests that arrive together, or while calls are in flight,
   * share a call). MRL_ENCODER_CALLS_IN_FLIGHT: most calls at once (default 2).
   * MRL_ENCODER_QUEUE: most inputs (a run of packed images counts as one) waiting before requests get RESOURCE_EXHAUSTED (default 4096).
   * A call's request stays under MRL_MAX_MESSAGE_BYTES.
   */
  coalescing: CoalescingOptions;
  /** MRL_THRESHOLDS_FILE: thresholds override, reloaded on change (default: the bundle's thresholds). */
  thresholdsFile?: string;
  /** MRL_THRESHOLDS_POLL_MS: how often the thresholds file is checked, ms (default 1000). */
  thresholdsPollMs: number;
  /**
   * MRL_BREAKER_ERROR_PERCENT, MRL_BREAKER_VOLUME, MRL_BREAKER_RESET_MS, MRL_BREAKER_WINDOW_MS (50, 5, 5000, 10000);
   * MRL_BREAKER_MIN_TIMEOUT_MS (200): a request that times out counts against the encoder only if
   * the encoder had it at least this long.
   */
  breaker: BreakerOptions;
  /**
   * Shadow agreement. MRL_SHADOW_RATE: share of cascade-policy requests without a dimension cap
   * that also get the full size's class, off the response path (default 0.01; 0 turns it off).
   * MRL_SHADOW_RECALIBRATE: re-certify the thresholds on the shadow samples and serve them when
   * certified (default false). MRL_SHADOW_RESERVOIR: most recent samples kept for that (default
   * 5000). MRL_SHADOW_RECALIBRATE_MS: how often it re-certifies at least, ms (default 600000); it
   * also does as soon as the served thresholds' disagreement on the samples is above the bound.
   */
  shadow: { rate: number; recalibrate: boolean; reservoir: number; intervalMs: number };
  /** MRL_MAX_MESSAGE_BYTES: largest request or encoder response accepted (default 4194304). */
  maxMessageBytes: number;
  /** MRL_MAX_BATCH_REQUESTS: most requests in one ClassifyBatch call (default 1024). */
  maxBatchRequests: number;
  /** MRL_SHUTDOWN_GRACE_MS: how long in-flight calls may finish after SIGTERM (default 10000). */
  shutdownGraceMs: number;
  /** MRL_LOG_LEVEL: debug, info, warn or error (default info). */
  logLevel: LogLevel;
}

export function cascadeConfig(env: Env): CascadeConfig {
  const r = envReader(env);
  const maxMessageBytes = r.int('MRL_MAX_MESSAGE_BYTES', 4 * 1024 * 1024, 1024, 1 << 30);
  const config: CascadeConfig = {
    modelDir: r.dir('MRL_MODEL_DIR', DEFAULT_MODEL_DIR),
    host: r.checked('MRL_CASCADE_HOST', '0.0.0.0', isHost, 'an IP address or a host name'),
    port: r.int('MRL_CASCADE_PORT', 50051, 0, 65535),
    metricsPort: r.int('MRL_CASCADE_METRICS_PORT', 9464, 0, 65535),
    healthPort: r.optionalInt('MRL_CASCADE_HEALTH_PORT', 0, 65535),
    tls: serverTlsSettings(r),
    encoderTarget: r.checked('MRL_ENCODER_TARGET', 'localhost:50052', isGrpcTarget, 'host:port, [ipv6]:port or dns:///host:port'),
    encoderTls: clientTlsSettings(r, 'MRL_ENCODER_TLS'),
    encoderTimeoutMs: r.int('MRL_ENCODER_TIMEOUT_MS', 5000, 1, 600_000),
    coalescing: {
      maxBatch: r.int('MRL_ENCODER_BATCH', 64, 1, 4096),
      maxDelayMs: r.int('MRL_ENCODER_BATCH_DELAY_MS', 0, 0, 1000),
      maxInFlight: r.int('MRL_ENCODER_CALLS_IN_FLIGHT', 2, 1, 1024),
      maxQueue: r.int('MRL_ENCODER_QUEUE', 4096, 1, 1_000_000),
      maxBatchBytes: maxMessageBytes,
    },
    // Checked against the bundle's nesting when the cascade starts (startCascade).
    thresholdsFile: r.optionalString('MRL_THRESHOLDS_FILE'),
    thresholdsPollMs: r.int('MRL_THRESHOLDS_POLL_MS', 1000, 10, 3_600_000),
    shadow: {
      rate: r.fraction('MRL_SHADOW_RATE', 0.01),
      recalibrate: r.bool('MRL_SHADOW_RECALIBRATE', false),
      reservoir: r.int('MRL_SHADOW_RESERVOIR', 5000, 100, 1_000_000),
      intervalMs: r.int('MRL_SHADOW_RECALIBRATE_MS', 600_000, 1000, 86_400_000),
    },
    breaker: {
      errorThresholdPercentage: r.int('MRL_BREAKER_ERROR_PERCENT', 50, 1, 100),
      volumeThreshold: r.int('MRL_BREAKER_VOLUME', 5, 1, 1_000_000),
      resetTimeoutMs: r.int('MRL_BREAKER_RESET_MS', 5000, 10, 3_600_000),
      rollingWindowMs: r.int('MRL_BREAKER_WINDOW_MS', 10_000, 100, 3_600_000),
      minTimeoutMs: r.int('MRL_BREAKER_MIN_TIMEOUT_MS', 200, 0, 3_600_000),
    },
    maxMessageBytes,
    maxBatchRequests: r.int('MRL_MAX_BATCH_REQUESTS', 1024, 1, 1_000_000),
    shutdownGraceMs: r.int('MRL_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    logLevel: r.logLevel(),
  };
  distinctPorts({ MRL_CASCADE_PORT: config.port, MRL_CASCADE_METRICS_PORT: config.metricsPort, MRL_CASCADE_HEALTH_PORT: config.healthPort });
  return config;
}
