import { type Env, readSettings } from '../common/config.js';
import type { LogLevel } from '../common/logger.js';
import { checkListenPorts } from '../common/settings.js';
import { type ClientTls, type ServerTls, clientTls, serverTls } from '../common/tls.js';
import type { BreakerOptions, QueueOptions } from './encoderGateway.js';
import { cascadeSettings, encoderTlsSettings } from './settings.js';

/**
 * The cascade's settings, read once at start-up. Each field's variable, default, unit and meaning
 * are in `cascadeSettings`, under the same key or, for a group, the keys named on it.
 */
export interface CascadeConfig {
  modelDir: string;
  /** Binds the gRPC and metrics ports. */
  host: string;
  port: number;
  metricsPort: number;
  /** Set: a plaintext port serving only grpc.health.v1 (unset: the gRPC port serves health too). */
  healthPort?: number;
  /** From the `MRL_TLS_*` files; unset: plaintext. */
  tls?: ServerTls;
  encoderTarget: string;
  /** `encoderProtocol`, `encoderModel` (default: the bundle's name, filled in by the gateway thread), `encoderModelVersion` (empty: the server's choice). */
  encoder: { protocol: 'mrl' | 'kserve-v2'; model?: string; version: string };
  maxImagePixels: number;
  /** From `encoderTlsCa`, `encoderTlsCert`, `encoderTlsKey`, `encoderTlsServerName`; unset: plaintext. */
  encoderTls?: ClientTls;
  encoderTimeoutMs: number;
  encoderKeepaliveMs: number;
  /**
   * How concurrent requests share EncodeBatch calls: `encoderBatch`, `encoderBatchDelayMs`,
   * `encoderCallsInFlight`, `encoderQueue`; a call's request stays under `maxMessageBytes`.
   */
  queues: QueueOptions;
  /** Checked against the bundle's model and nesting when the cascade starts (startCascade). */
  thresholdsFile?: string;
  thresholdsPollMs: number;
  /** `breakerErrorPercent`, `breakerVolume`, `breakerResetMs`, `breakerWindowMs`, `breakerMinTimeoutMs`. */
  breaker: BreakerOptions;
  /** Shadow agreement: `shadowRate`, `shadowRecalibrate`, `shadowReservoir`, `shadowRecalibrateMs`. */
  shadow: { rate: number; recalibrate: boolean; reservoir: number; intervalMs: number };
  maxMessageBytes: number;
  maxConcurrentStreams: number;
  maxBatchRequests: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

/** Reads and checks the cascade's settings from `env`; a bad one throws a ConfigError naming it. */
export function cascadeConfig(env: Env): CascadeConfig {
  const s = readSettings(cascadeSettings, env);
  const config: CascadeConfig = {
    modelDir: s.modelDir,
    host: s.host,
    port: s.port,
    metricsPort: s.metricsPort,
    healthPort: s.healthPort,
    tls: serverTls(s),
    encoderTarget: s.encoderTarget,
    encoder: { protocol: s.encoderProtocol, model: s.encoderModel, version: s.encoderModelVersion ?? '' },
    maxImagePixels: s.maxImagePixels,
    encoderTls: clientTls(encoderTlsSettings, { ca: s.encoderTlsCa, cert: s.encoderTlsCert, key: s.encoderTlsKey, serverName: s.encoderTlsServerName }),
    encoderTimeoutMs: s.encoderTimeoutMs,
    encoderKeepaliveMs: s.encoderKeepaliveMs,
    queues: {
      maxBatch: s.encoderBatch,
      maxDelayMs: s.encoderBatchDelayMs,
      maxInFlight: s.encoderCallsInFlight,
      maxQueue: s.encoderQueue,
      maxBatchBytes: s.maxMessageBytes,
    },
    thresholdsFile: s.thresholdsFile,
    thresholdsPollMs: s.thresholdsPollMs,
    shadow: { rate: s.shadowRate, recalibrate: s.shadowRecalibrate, reservoir: s.shadowReservoir, intervalMs: s.shadowRecalibrateMs },
    breaker: {
      errorThresholdPercentage: s.breakerErrorPercent,
      volumeThreshold: s.breakerVolume,
      resetTimeoutMs: s.breakerResetMs,
      rollingWindowMs: s.breakerWindowMs,
      minTimeoutMs: s.breakerMinTimeoutMs,
    },
    maxMessageBytes: s.maxMessageBytes,
    maxConcurrentStreams: s.maxConcurrentStreams,
    maxBatchRequests: s.maxBatchRequests,
    shutdownGraceMs: s.shutdownGraceMs,
    logLevel: s.logLevel,
  };
  checkListenPorts(cascadeSettings, config);
  return config;
}
