import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import type { EncodeBatchResponse__Output } from '../common/generated/mrl/v1/EncodeBatchResponse.js';
import type { EncodeBatchRequest } from '../common/generated/mrl/v1/EncodeBatchRequest.js';
import type { Logger } from '../common/logger.js';
import { loadMrlProtos } from '../common/protos.js';
import { StatusError } from '../common/statusError.js';
import { BREAKER_STATE, type CascadeMetrics } from './metrics.js';

export interface BreakerOptions {
  /** Failure percentage over the rolling window that opens the breaker (default 50). */
  errorThresholdPercentage: number;
  /** Outcomes (encoder inputs) in the window before the breaker may open (default 5). */
  volumeThreshold: number;
  /** How long the breaker stays open before a half-open probe, ms (default 5000). */
  resetTimeoutMs: number;
  /** Rolling statistics window, ms (default 10000). */
  rollingWindowMs: number;
  /**
   * A request that times out counts as an encoder failure only if the encoder had it at least
   * this long, ms (default 200): a shorter deadline is the caller's own budget, and a few impatient
   * callers must not open the breaker for everyone.
   */
  minTimeoutMs: number;
}

export interface EncoderClientOptions {
  /** `host:port`, or `dns:///name:port` for a headless Service (balanced round robin per call). */
  target: string;
  /** Default: plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** Extra channel options, such as the TLS name override that goes with `credentials`. */
  channelOptions?: grpc.ChannelOptions;
  /** Largest response accepted, bytes. */
  maxMessageBytes: number;
  breaker: BreakerOptions;
  /** The bundle the cascade's heads belong to: an answer from another model or of another size is the encoder failing. */
  expect: { model: string; embeddingDim: number };
}

/** Encoder answers that are the caller's doing, not the encoder's health: they never trip the breaker. */
const CALLER_CODES = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED, grpc.status.CANCELLED]);

/** A timeout that came within the caller's own short budget (under `minTimeoutMs`): it says nothing of the encoder's health. */
export class ShortDeadline extends StatusError {
  constructor() {
    super(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded waiting for the encoder');
  }
}

/** An encoder failure (of a call, or of one input) as the cascade reports it: the encoder's own validation messages pass through. */
function encoderStatus(err: { code: grpc.status; details: string }): StatusError {
  switch (err.code) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.CANCELLED:
      return new StatusError(err.code, err.details);
    case grpc.status.DEADLINE_EXCEEDED:
      return new StatusError(err.code, 'deadline exceeded waiting for the encoder');
    default:
      return new StatusError(grpc.status.UNAVAILABLE, `encoder unavailable: ${err.details || grpc.status[err.code]}`);
  }
}

export interface EncoderClient {
  /**
   * One EncodeBatch call carrying `count` inputs (listed or packed), cancelled if `signal` aborts:
   * per input, its row or its own error. `short`: the call's whole budget is under
   * `minTimeoutMs`, so its timeout (a ShortDeadline) says nothing of the encoder and counts neither way.
   */
  encodeBatch(request: EncodeBatchRequest, count: number, deadline: Date, signal: AbortSignal, short: boolean): Promise<(Float32Array | StatusError)[]>;
  /**
   * The breaker counts inputs, as callers see them, not calls: a call counts once by itself, and
   * this records `inputs` more outcomes for the rest of its inputs: answered, or failed with `error`.
   */
  recordInputs(inputs: number, error?: unknown): void;
  /** See BreakerOptions.minTimeoutMs. */
  readonly minTimeoutMs: number;
  close(): void;
}

/** Splits EncodeBatch's packed float32 rows; failed inputs get their StatusError instead. */
function batchRows(res: EncodeBatchResponse__Output, count: number): (Float32Array | StatusError)[] {
  // Copy into an aligned buffer: the received bytes may start at any offset.
  const all = new Float32Array(new Uint8Array(res.embeddings).buffer);
  const rows: (Float32Array | StatusError)[] = Array.from({ length: count }, (_, i) => all.subarray(i * res.dimension, (i + 1) * res.dimension));
  for (const e of res.errors) rows[e.index] = encoderStatus({ code: e.code, details: e.message });
  return rows;
}

/** An answer the cascade cannot use: from another model, or not `count` rows of the size asked for (`wire` 0: the full size). */
function unusable(res: EncodeBatchResponse__Output, count: number, wire: number, expect: EncoderClientOptions['expect']): StatusError | undefined {
  if (res.model !== expect.model)
    return new StatusError(grpc.status.UNAVAILABLE, `encoder unavailable: it serves ${res.model}, and this cascade's heads are for ${expect.model}`);
  const dimension = wire || expect.embeddingDim;
  if (res.dimension !== dimension || res.embeddings.length !== count * dimension * 4)
    return new StatusError(
      grpc.status.UNAVAILABLE,
      `encoder unavailable: it answered ${res.embeddings.length} bytes in rows of ${res.dimension} for ${count} inputs of dimension ${dimension}`,
    );
  return undefined;
}

/**
 * An answer whose every input failed for the encoder's own reasons (its model stopped, say) is
 * the encoder failing, whatever the call's status: it must count against the breaker.
 */
function encoderFailed(res: EncodeBatchResponse__Output, count: number): StatusError | undefined {
  if (count === 0 || res.errors.length < count || res.errors.some((e) => CALLER_CODES.has(e.code))) return undefined;
  return encoderStatus({ code: res.errors[0]!.code, details: res.errors[0]!.message });
}

export function createEncoderClient(options: EncoderClientOptions, metrics: CascadeMetrics, logger: Logger): EncoderClient {
  const { proto } = loadMrlProtos();
  const client = new proto.mrl.v1.Encoder(options.target, options.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    ...options.channelOptions,
  });
  // Every call passes the breaker: it guards the encoder whichever requests a call carries.
  const breaker: CircuitBreaker = new CircuitBreaker((run: () => Promise<unknown>) => run(), {
    timeout: false, // the gRPC deadline bounds each call
    errorThresholdPercentage: options.breaker.errorThresholdPercentage,
    volumeThreshold: options.breaker.volumeThreshold,
    resetTimeout: options.breaker.resetTimeoutMs,
    rollingCountTimeout: options.breaker.rollingWindowMs,
    // opossum counts a filtered error as a success, and one success closes a half-open breaker: a
    // probe its callers cancelled, or that timed out within their short budget, says nothing of the
    // encoder's health, so half-open it counts as a failure. (Closed, a short call does not pass
    // opossum at all; a ShortDeadline reaches it only from a call whose long-deadline callers all
    // cancelled, and counts as a success, as a cancel does.)
    errorFilter: (err: unknown) => {
      const uninformative = err instanceof ShortDeadline || (err instanceof StatusError && err.code === grpc.status.CANCELLED);
      return err instanceof StatusError && (CALLER_CODES.has(err.code) || uninformative) && !(uninformative && breaker.halfOpen);
    },
  });
  /** Outcomes beside a call's own, only while closed: open, the breaker fails fast; half-open, the next call to end decides. */
  const record = (inputs: number, outcome: () => Promise<unknown>) => {
    for (let i = 0; i < inputs && breaker.closed; i++) breaker.fire(outcome).catch(() => {});
  };
  const state = (s: keyof typeof BREAKER_STATE) => () => {
    metrics.breakerState.set(BREAKER_STATE[s]);
    logger[s === 'closed' ? 'info' : 'warn'](`encoder circuit breaker ${s.replace('_', '-')}`, { target: options.target });
  };
  breaker.on('open', state('open'));
  breaker.on('halfOpen', state('half_open'));
  breaker.on('close', state('closed'));
  for (const event of ['open', 'halfOpen', 'close', 'reject', 'failure', 'success'])
    (breaker as NodeJS.EventEmitter).on(event, () => metrics.breakerEvents.inc({ event }));
  metrics.breakerState.set(BREAKER_STATE.closed);
  return {
    encodeBatch: (request, count, deadline, signal, short) => {
      const send = () =>
        new Promise<EncodeBatchResponse__Output>((resolve, reject) => {
          // Abandoned, the call fails with the signal's reason: DEADLINE_EXCEEDED counts against
          // the breaker as the call's own deadline would have, CANCELLED does not.
          if (signal.aborted) return reject(signal.reason);
          const abandon = () => {
            reject(signal.reason);
            call.cancel();
          };
          const call = client.EncodeBatch(request, { deadline }, (err, res) => {
            signal.removeEventListener('abort', abandon);
            const failed = err
              ? err.code === grpc.status.DEADLINE_EXCEEDED && short
                ? new ShortDeadline()
                : encoderStatus(err)
              : (unusable(res!, count, request.dimension ?? 0, options.expect) ?? encoderFailed(res!, count));
            if (failed) reject(failed);
            else resolve(res!);
          });
          signal.addEventListener('abort', abandon, { once: true });
        });
      // opossum would count a short call's timeout as a success (a filtered error): while the
      // breaker is closed such a call goes around it, and only its other outcomes are recorded.
      const answered =
        short && breaker.closed
          ? send().then(
              (res) => {
                record(1, () => Promise.resolve());
                return res;
              },
              (err: unknown) => {
                if (!(err instanceof ShortDeadline)) record(1, () => Promise.reject(err));
                throw err;
              },
            )
          : (breaker.fire(send) as Promise<EncodeBatchResponse__Output>);
      return answered.then((res) => batchRows(res, count));
    },
    recordInputs: (inputs, error) => record(inputs, () => (error === undefined ? Promise.resolve() : Promise.reject(error))),
    minTimeoutMs: options.breaker.minTimeoutMs,
    close: () => {
      breaker.shutdown();
      client.close();
    },
  };
}
