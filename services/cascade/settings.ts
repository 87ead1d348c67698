import { type SettingsTable, bool, filePath, fraction, grpcTarget, hostName, int, modelName, oneOf, readableFile } from '../common/config.js';
import { listenSettings, logLevel, maxConcurrentStreams, maxImagePixels, maxMessageBytes, modelDir, serverTlsSettings, shutdownGraceMs } from '../common/settings.js';
import type { ClientTlsSettings } from '../common/tls.js';

/** The encoder channel's TLS settings; `clientTls` (tls.ts) checks that they go together. */
export const encoderTlsSettings = {
  ca: {
    name: 'MRL_ENCODER_TLS_CA_FILE',
    type: readableFile,
    defaultDoc: '(plaintext)',
    doc: "PEM CA the encoder's certificate chains to: the encoder channel uses TLS",
  },
  cert: {
    name: 'MRL_ENCODER_TLS_CERT_FILE',
    type: readableFile,
    defaultDoc: '(none)',
    doc: "the cascade's PEM client certificate, for an encoder with `MRL_TLS_CLIENT_CA_FILE`; with `MRL_ENCODER_TLS_KEY_FILE`",
  },
  key: { name: 'MRL_ENCODER_TLS_KEY_FILE', type: readableFile, defaultDoc: '(none)', doc: "PEM private key of the cascade's client certificate" },
  serverName: {
    name: 'MRL_ENCODER_TLS_SERVER_NAME',
    type: hostName,
    defaultDoc: "(the target's host)",
    doc: "the name the encoder's certificate carries",
  },
} satisfies ClientTlsSettings;

/**
 * Every setting the cascade reads, keyed by the `CascadeConfig` field it becomes; the
 * `encoderTls*`, `encoder{Batch,…}`, `shadow*` and `breaker*` ones are grouped by `cascadeConfig`.
 */
export const cascadeSettings = {
  modelDir,
  ...listenSettings('CASCADE', { grpc: 50051, metrics: 9464 }),
  ...serverTlsSettings,
  encoderTarget: {
    name: 'MRL_ENCODER_TARGET',
    type: grpcTarget,
    default: 'localhost:50052',
    doc: 'encoder address; `dns:///name:port` balances round robin',
  },
  encoderProtocol: {
    name: 'MRL_ENCODER_PROTOCOL',
    type: oneOf(['mrl', 'kserve-v2'] as const),
    default: 'mrl',
    doc: "how the cascade talks to the encoder: `mrl` (`mrl.v1.Encoder`: it sends images as they came) or `kserve-v2` (the Open Inference Protocol, to Triton, KServe or our encoder: it preprocesses images itself with the bundle's pipeline and sends FP32 tensors)",
  },
  encoderModel: {
    name: 'MRL_ENCODER_MODEL',
    type: modelName,
    defaultDoc: "(the bundle's `name`)",
    doc: 'with `kserve-v2`: the model name on the server',
  },
  encoderModelVersion: {
    name: 'MRL_ENCODER_MODEL_VERSION',
    type: modelName,
    defaultDoc: "(the server's choice)",
    doc: 'with `kserve-v2`: the model version on the server',
  },
  encoderTlsCa: encoderTlsSettings.ca,
  encoderTlsCert: encoderTlsSettings.cert,
  encoderTlsKey: encoderTlsSettings.key,
  encoderTlsServerName: encoderTlsSettings.serverName,
  encoderTimeoutMs: {
    name: 'MRL_ENCODER_TIMEOUT_MS',
    type: int(1, 600_000),
    default: '5000',
    unit: 'ms',
    doc: 'encoder deadline when the caller sets none',
  },
  encoderKeepaliveMs: {
    name: 'MRL_ENCODER_KEEPALIVE_MS',
    type: int(100, 3_600_000),
    default: '2000',
    unit: 'ms',
    doc: 'how often the cascade pings each encoder connection while calls are in flight; one unanswered within 1 s closes it, so a hung or cut-off replica stops getting calls (raise it for servers that refuse frequent pings)',
  },
  encoderBatch: {
    name: 'MRL_ENCODER_BATCH',
    type: int(1, 4096),
    default: '64',
    unit: 'inputs',
    doc: "most inputs per shared `EncodeBatch` call (keep it at most the encoder's `MRL_MAX_QUEUE`; `1` sends each alone)",
  },
  encoderBatchDelayMs: {
    name: 'MRL_ENCODER_BATCH_DELAY_MS',
    type: int(0, 1000),
    default: '0',
    unit: 'ms',
    doc: 'longest an input waits for others to share its call (`0`: only requests arriving together or while calls are in flight)',
  },
  encoderCallsInFlight: { name: 'MRL_ENCODER_CALLS_IN_FLIGHT', type: int(1, 1024), default: '2', unit: 'calls', doc: 'most `EncodeBatch` calls at once, per queue' },
  encoderQueue: {
    name: 'MRL_ENCODER_QUEUE',
    type: int(1, 1_000_000),
    default: '4096',
    unit: 'inputs',
    doc: 'most requests waiting, per queue, before requests get `RESOURCE_EXHAUSTED` (a run of packed images counts as one); below it, admission control refuses those whose expected wait passes their deadline',
  },
  thresholdsFile: {
    name: 'MRL_THRESHOLDS_FILE',
    type: filePath,
    defaultDoc: "(bundle's)",
    doc: "thresholds override, reloaded on change; checked against the bundle's model and nesting at start",
  },
  thresholdsPollMs: { name: 'MRL_THRESHOLDS_POLL_MS', type: int(10, 3_600_000), default: '1000', unit: 'ms', doc: 'how often that file is checked' },
  shadowRate: {
    name: 'MRL_SHADOW_RATE',
    type: fraction,
    default: '0.01',
    doc: "share of cascade-policy requests without a `max_dimension` cap that also get the full size's class, computed after the response is sent, for `mrl_cascade_shadow_total{dimension, agreed}` (`0` turns it off)",
  },
  shadowRecalibrate: {
    name: 'MRL_SHADOW_RECALIBRATE',
    type: bool,
    default: 'false',
    doc: 're-certify the thresholds on the most recent shadow samples and serve new ones only when certified; a thresholds file that changes wins over them',
  },
  shadowReservoir: {
    name: 'MRL_SHADOW_RESERVOIR',
    type: int(100, 1_000_000),
    default: '5000',
    unit: 'samples',
    doc: 'most recent shadow samples kept for re-certifying',
  },
  shadowRecalibrateMs: {
    name: 'MRL_SHADOW_RECALIBRATE_MS',
    type: int(1000, 86_400_000),
    default: '600000',
    unit: 'ms',
    doc: "how often it re-certifies at least; also at once when the served thresholds' disagreement on the samples is above the certificate's ε",
  },
  breakerErrorPercent: {
    name: 'MRL_BREAKER_ERROR_PERCENT',
    type: int(1, 100),
    default: '50',
    unit: '%',
    doc: 'the encoder circuit breaker opens when more than this share of the encoder calls counted in its window failed (only the encoder\'s failures count: not bad input, backpressure or callers that gave up)',
  },
  breakerVolume: {
    name: 'MRL_BREAKER_VOLUME',
    type: int(1, 1_000_000),
    default: '5',
    unit: 'calls',
    doc: 'encoder calls counted in the window before the breaker may open',
  },
  breakerResetMs: {
    name: 'MRL_BREAKER_RESET_MS',
    type: int(10, 3_600_000),
    default: '5000',
    unit: 'ms',
    doc: 'how long the open breaker waits before letting one probe call through',
  },
  breakerWindowMs: {
    name: 'MRL_BREAKER_WINDOW_MS',
    type: int(100, 3_600_000),
    default: '10000',
    unit: 'ms',
    doc: "the breaker's rolling window of counted calls",
  },
  breakerMinTimeoutMs: {
    name: 'MRL_BREAKER_MIN_TIMEOUT_MS',
    type: int(0, 3_600_000),
    default: '200',
    unit: 'ms',
    doc: "every encoder call gets at least this long, whatever its callers' deadlines: one the encoder has not answered by then counts against it, and a caller's short deadline never does",
  },
  maxMessageBytes,
  maxConcurrentStreams: maxConcurrentStreams(32, 'each call in flight costs the cascade about 35 KB, and 32 calls a connection already carry thousands a second'),
  maxImagePixels,
  maxBatchRequests: {
    name: 'MRL_MAX_BATCH_REQUESTS',
    type: int(1, 1_000_000),
    default: '1024',
    unit: 'requests',
    doc: 'most requests in one `ClassifyBatch` call',
  },
  shutdownGraceMs,
  logLevel,
} satisfies SettingsTable;
