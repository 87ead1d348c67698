import { DEFAULT_MODEL_DIR } from '../../matryoshka/bundle.js';
import { type Setting, distinctPorts, existingFolder, host, int, oneOf, readableFile } from './config.js';
import { LOG_LEVELS } from './logger.js';

/** Settings both services read, one entry each, so the README lists them once as "both". */
export const modelDir = {
  name: 'MRL_MODEL_DIR',
  type: existingFolder,
  default: DEFAULT_MODEL_DIR,
  defaultDoc: '`models/fashion-mnist-mrl`',
  doc: 'model bundle folder',
} satisfies Setting;

export const maxMessageBytes = {
  name: 'MRL_MAX_MESSAGE_BYTES',
  type: int(1024, 1 << 30),
  default: String(4 * 1024 * 1024),
  unit: 'bytes',
  doc: "largest message accepted (the cascade's: requests and encoder responses; its `EncodeBatch` calls stay under it)",
} satisfies Setting;

/**
 * Most calls in flight on one client connection, HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`; each
 * service picks its default, and says why in `why`.
 */
export const maxConcurrentStreams = (byDefault: number, why: string) =>
  ({
    name: 'MRL_MAX_CONCURRENT_STREAMS',
    type: int(1, 1_000_000),
    default: String(byDefault),
    unit: 'calls',
    doc: `most calls in flight on one client connection (HTTP/2's \`SETTINGS_MAX_CONCURRENT_STREAMS\`); a client's further calls wait on its side (grpc-js, grpc-go and h2load all do), costing the server nothing; ${why}`,
  }) satisfies Setting;

export const maxImagePixels = {
  name: 'MRL_MAX_IMAGE_PIXELS',
  type: int(1, 1 << 28),
  default: String(2048 * 2048),
  unit: 'pixels',
  doc: 'larger images are refused undecoded (the cascade decodes images itself only with `MRL_ENCODER_PROTOCOL=kserve-v2`)',
} satisfies Setting;

export const shutdownGraceMs = {
  name: 'MRL_SHUTDOWN_GRACE_MS',
  type: int(0, 600_000),
  default: '10000',
  unit: 'ms',
  doc: 'after SIGTERM: NOT_SERVING, in-flight calls finish within this',
} satisfies Setting;

export const logLevel = {
  name: 'MRL_LOG_LEVEL',
  type: oneOf(LOG_LEVELS),
  default: 'info',
  doc: 'logs are JSON lines',
} satisfies Setting;

/** A server's TLS files; `serverTls` (tls.ts) checks that they go together. */
export const serverTlsSettings = {
  tlsCertFile: {
    name: 'MRL_TLS_CERT_FILE',
    type: readableFile,
    defaultDoc: '(plaintext)',
    doc: 'PEM certificate chain: with `MRL_TLS_KEY_FILE`, the gRPC port speaks TLS',
  },
  tlsKeyFile: {
    name: 'MRL_TLS_KEY_FILE',
    type: readableFile,
    defaultDoc: '(plaintext)',
    doc: "PEM private key of `MRL_TLS_CERT_FILE`'s certificate",
  },
  tlsClientCaFile: {
    name: 'MRL_TLS_CLIENT_CA_FILE',
    type: readableFile,
    defaultDoc: '(none)',
    doc: 'PEM CA: every client must present a certificate it signed (mutual TLS)',
  },
} satisfies Record<string, Setting>;

/** Where a service listens: its bind address and ports, named `MRL_<SERVICE>_*`. */
export function listenSettings(service: 'CASCADE' | 'ENCODER', ports: { grpc: number; metrics: number }) {
  return {
    host: { name: `MRL_${service}_HOST`, type: host, default: '0.0.0.0', doc: 'bind address (gRPC and metrics)' },
    port: { name: `MRL_${service}_PORT`, type: int(0, 65535), default: String(ports.grpc), doc: 'gRPC port (`0`: a free one)' },
    metricsPort: { name: `MRL_${service}_METRICS_PORT`, type: int(0, 65535), default: String(ports.metrics), doc: '`/metrics` port' },
    healthPort: {
      name: `MRL_${service}_HEALTH_PORT`,
      type: int(0, 65535),
      defaultDoc: '(none)',
      doc: 'an extra plaintext port serving only `grpc.health.v1`, for probes when the gRPC port speaks TLS',
    },
  } satisfies Record<string, Setting>;
}

/** Refuses two of a service's ports that are the same (`0`, a free port each, may repeat). */
export function checkListenPorts(
  settings: ReturnType<typeof listenSettings>,
  values: { port: number; metricsPort: number; healthPort?: number },
): void {
  distinctPorts({ [settings.port.name]: values.port, [settings.metricsPort.name]: values.metricsPort, [settings.healthPort.name]: values.healthPort });
}
