import { type Env, readSettings } from '../common/config.js';
import type { LogLevel } from '../common/logger.js';
import { checkListenPorts } from '../common/settings.js';
import { type ServerTls, serverTls } from '../common/tls.js';
import type { ExecutionProvider } from './session.js';
import { encoderSettings } from './settings.js';

/**
 * The encoder's settings, read once at start-up. Each field's variable, default, unit and meaning
 * are in `encoderSettings` under the same key.
 */
export interface EncoderConfig {
  modelDir: string;
  /** Binds the gRPC and metrics ports. */
  host: string;
  port: number;
  metricsPort: number;
  /** Set: a plaintext port serving only grpc.health.v1 (unset: the gRPC port serves health too). */
  healthPort?: number;
  /** From the `MRL_TLS_*` files; unset: plaintext. */
  tls?: ServerTls;
  executionProviders: ExecutionProvider[];
  intraOpThreads: number;
  maxBatch: number;
  maxBatchDelayMs: number;
  maxQueue: number;
  maxImagePixels: number;
  maxMessageBytes: number;
  maxConcurrentStreams: number;
  maxConnectionAgeMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

/** Reads and checks the encoder's settings from `env`; a bad one throws a ConfigError naming it. */
export function encoderConfig(env: Env): EncoderConfig {
  const { tlsCertFile, tlsKeyFile, tlsClientCaFile, ...settings } = readSettings(encoderSettings, env);
  const config: EncoderConfig = { ...settings, tls: serverTls({ tlsCertFile, tlsKeyFile, tlsClientCaFile }) };
  checkListenPorts(encoderSettings, config);
  return config;
}
