import { type SettingsTable, int, listOf } from '../common/config.js';
import { listenSettings, logLevel, maxConcurrentStreams, maxImagePixels, maxMessageBytes, modelDir, serverTlsSettings, shutdownGraceMs } from '../common/settings.js';
import type { ExecutionProvider } from './session.js';

/** Every setting the encoder reads, keyed by its `EncoderConfig` field (the TLS files become `tls`). */
export const encoderSettings = {
  modelDir,
  ...listenSettings('ENCODER', { grpc: 50052, metrics: 9465 }),
  ...serverTlsSettings,
  executionProviders: {
    name: 'MRL_EXECUTION_PROVIDERS',
    type: listOf<ExecutionProvider>(['cuda', 'cpu']),
    default: 'cpu',
    doc: '`cuda,cpu` tries CUDA first and falls back to CPU with a log line',
  },
  intraOpThreads: { name: 'MRL_INTRA_OP_THREADS', type: int(0, 256), default: '0', unit: 'threads', doc: "onnxruntime threads; `0`: onnxruntime's choice" },
  maxBatch: { name: 'MRL_MAX_BATCH', type: int(1, 4096), default: '64', unit: 'images', doc: 'dynamic batching: most images per model run' },
  maxBatchDelayMs: {
    name: 'MRL_MAX_BATCH_DELAY_MS',
    type: int(0, 1000),
    default: '0',
    unit: 'ms',
    doc: 'longest wait for a batch to fill (`0`: run what has arrived)',
  },
  maxQueue: {
    name: 'MRL_MAX_QUEUE',
    type: int(1, 1_000_000),
    default: '1024',
    unit: 'images',
    doc: 'images waiting to run before calls get `RESOURCE_EXHAUSTED`; also the most inputs one `EncodeBatch` call may hold',
  },
  maxImagePixels,
  maxMessageBytes,
  maxConcurrentStreams: maxConcurrentStreams(1000, 'the encoder\'s own queue (`MRL_MAX_QUEUE`) bounds its work, and its clients, cascades, keep few calls in flight'),
  maxConnectionAgeMs: {
    name: 'MRL_MAX_CONNECTION_AGE_MS',
    type: int(0, 86_400_000),
    default: '0',
    unit: 'ms',
    doc: 'close client connections (GOAWAY) after this age, so clients re-resolve `dns:///` targets and new pods get traffic; calls in flight then get `MRL_SHUTDOWN_GRACE_MS`; `0`: never',
  },
  shutdownGraceMs,
  logLevel,
} satisfies SettingsTable;
