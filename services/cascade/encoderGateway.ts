import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import { Batcher, QueueFull } from '../common/batcher.js';
import type { EncodeBatchRequest } from '../common/generated/mrl/v1/EncodeBatchRequest.js';
import type { EncodeBatchResponse__Output } from '../common/generated/mrl/v1/EncodeBatchResponse.js';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import type { EncoderClient } from '../common/generated/mrl/v1/Encoder.js';
import type { Tensor } from '../common/generated/mrl/v1/Tensor.js';
import type { Logger } from '../common/logger.js';
import { loadMrlProtos } from '../common/protos.js';
import { StatusError } from '../common/statusError.js';
import { EncoderPace } from './admission.js';
import { EncoderFailure, encoderFailure, notTheEncoders, timedOut, unavailable } from './encoderOutcome.js';
import { BREAKER_STATE, type GatewayMetrics } from './metrics.js';

export interface BreakerOptions {
  /** Failure percentage over the rolling window that opens the breaker. */
  errorThresholdPercentage: number;
  /** Calls in the window before the breaker may open. */
  volumeThreshold: number;
  /** How long the breaker stays open before a half-open probe, ms. */
  resetTimeoutMs: number;
  /** Rolling statistics window, ms. */
  rollingWindowMs: number;
  /**
   * Every encoder call gets at least this long, ms, whatever its callers' deadlines: a healthy
   * encoder answers well within it, so a call it has not answered by then says the encoder is
   * failing, and a caller's short deadline never does.
   */
  minTimeoutMs: number;
}

export interface QueueOptions {
  /** Most inputs in one EncodeBatch call. */
  maxBatch: number;
  /** Longest an input waits for others to join its call, ms; 0 = only those arriving together. */
  maxDelayMs: number;
  /** Most EncodeBatch calls in flight per queue; the next call's inputs gather while they run. */
  maxInFlight: number;
  /** Most jobs waiting; further ones are refused at once with RESOURCE_EXHAUSTED. */
  maxQueue: number;
  /** Largest EncodeBatch request, bytes: the encoder refuses messages over its own limit. */
  maxBatchBytes: number;
}

export interface EncoderGatewayOptions {
  /** `host:port`, `dns:///name:port` (a headless Service) or `ipv4:a:p,b:p`: balanced round robin per call. */
  target: string;
  /** Default: plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** Extra channel options, such as the TLS name override that goes with `credentials`. */
  channelOptions?: grpc.ChannelOptions;
  /** Largest response accepted, bytes. */
  maxMessageBytes: number;
  breaker: BreakerOptions;
  queues: QueueOptions;
  /** The bundle the cascade's heads belong to: an answer from another model or of another size is the encoder failing. */
  expect: { model: string; embeddingDim: number };
}

/** opossum's refusals (of those its settings can raise: no timeout, no capacity) as callers get them. */
const BREAKER_REFUSALS: Record<string, string> = {
  EOPENBREAKER: 'encoder circuit breaker is open after repeated encoder failures; retry later',
  ESHUTDOWN: 'the cascade is shutting down',
};

function breakerRefusal(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code in BREAKER_REFUSALS ? new StatusError(grpc.status.UNAVAILABLE, BREAKER_REFUSALS[code]!) : err;
}

/** Per input of a call, its embedding row or its own error. */
export type Rows = (Float32Array | StatusError)[];

export interface Job {
  /** One input; or `images`, a run of packed images that takes a call of its own. */
  input?: EncodeInput;
  images?: Tensor;
  /** Inputs the job carries: 1 for an input. */
  count: number;
  /** The prefix this job's requests may use. */
  dimension: number;
  /** When its callers stop waiting, ms since the epoch. */
  deadline: number;
}

/** Room for an input's framing in the EncodeBatch message besides its payload. */
export const INPUT_OVERHEAD_BYTES = 32;

/**
 * A job's size in the EncodeBatch message, at most (a shape entry is a varint of up to 5 bytes).
 * Packed images weigh more than any budget: they never share a call with other jobs.
 */
export function jobBytes({ input, images }: Pick<Job, 'input' | 'images'>): number {
  if (images) return Infinity;
  const t = input!.tensor;
  const payload = input!.image ? input!.image.length : (t?.raw?.length ?? 0) + 4 * (t?.values?.length ?? 0) + 5 * (t?.shape?.length ?? 0);
  return payload + INPUT_OVERHEAD_BYTES;
}

/** Splits EncodeBatch's packed float32 rows; failed inputs get their error instead. */
function batchRows(res: EncodeBatchResponse__Output, count: number): Rows {
  // Copy into an aligned buffer: the received bytes may start at any offset.
  const all = new Float32Array(new Uint8Array(res.embeddings).buffer);
  const rows: Rows = Array.from({ length: count }, (_, i) => all.subarray(i * res.dimension, (i + 1) * res.dimension));
  for (const e of res.errors) rows[e.index] = encoderFailure({ code: e.code, details: e.message });
  return rows;
}

/**
 * The encoder's failure an answer shows, if any: it comes from another model, its rows are not
 * `count` rows of the size asked for (`wire` 0: the full size), or every input failed for the
 * encoder's own reasons (its model stopped, say), whatever the call's status.
 */
function answerFailure(res: EncodeBatchResponse__Output, count: number, wire: number, expect: EncoderGatewayOptions['expect']): EncoderFailure | undefined {
  if (res.model !== expect.model) return unavailable(`it serves ${res.model}, and this cascade's heads are for ${expect.model}`);
  const dimension = wire || expect.embeddingDim;
  if (res.dimension !== dimension || res.embeddings.length !== count * dimension * 4)
    return unavailable(`it answered ${res.embeddings.length} bytes in rows of ${res.dimension} for ${count} inputs of dimension ${dimension}`);
  if (count === 0 || res.errors.length < count) return undefined;
  const failures = res.errors.map((e) => encoderFailure({ code: e.code, details: e.message }));
  return failures.every((f) => f.party === 'encoder') ? failures[0] : undefined;
}

/**
 * The cascade's one way to the encoder. It owns the channel, one circuit breaker that every
 * EncodeBatch call passes once (`fire` per call; `errorFilter` drops what is not the encoder's
 * fault, see encoderOutcome.ts), and two queues: `interactive` for Classify calls and `bulk` for
 * ClassifyBatch items, so a bulk job can fill only its own queue.
 *
 * A call carries the inputs of concurrent requests; it runs until the latest of their deadlines
 * and at least `minTimeoutMs`. A call whose callers have all gone is cancelled once the encoder has
 * had it `minTimeoutMs`: every call tells the breaker something, and none holds a place in
 * flight long for callers who left.
 */
export class EncoderGateway {
  readonly interactive: EncoderQueue;
  readonly bulk: EncoderQueue;
  readonly #client: EncoderClient;
  readonly #breaker: CircuitBreaker;

  constructor(
    private readonly options: EncoderGatewayOptions,
    metrics: GatewayMetrics,
    logger: Logger,
  ) {
    const { proto } = loadMrlProtos();
    this.#client = new proto.mrl.v1.Encoder(options.target, options.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...options.channelOptions,
    });
    this.#breaker = new CircuitBreaker((send: () => Promise<Rows>) => send(), {
      timeout: false, // each call's gRPC deadline bounds it
      errorThresholdPercentage: options.breaker.errorThresholdPercentage,
      volumeThreshold: options.breaker.volumeThreshold,
      resetTimeout: options.breaker.resetTimeoutMs,
      rollingCountTimeout: options.breaker.rollingWindowMs,
      errorFilter: notTheEncoders,
    });
    const state = (s: keyof typeof BREAKER_STATE) => () => {
      metrics.breakerState.set(BREAKER_STATE[s]);
      logger[s === 'closed' ? 'info' : 'warn'](`encoder circuit breaker ${s.replace('_', '-')}`, { target: options.target });
    };
    this.#breaker.on('open', state('open'));
    this.#breaker.on('halfOpen', state('half_open'));
    this.#breaker.on('close', state('closed'));
    for (const event of ['open', 'halfOpen', 'close', 'reject', 'failure', 'success'])
      (this.#breaker as NodeJS.EventEmitter).on(event, () => metrics.breakerEvents.inc({ event }));
    metrics.breakerState.set(BREAKER_STATE.closed);
    const call = (request: EncodeBatchRequest, count: number, deadline: number, abandoned: AbortSignal) =>
      (this.#breaker.fire(() => this.#send(request, count, deadline, abandoned)) as Promise<Rows>).then(
        (rows) => {
          metrics.encoderCalls.inc({ outcome: 'ok' });
          return rows;
        },
        (err: unknown) => {
          if (err instanceof EncoderFailure) {
            metrics.encoderCalls.inc({ outcome: err.party });
            throw err;
          }
          metrics.encoderCalls.inc({ outcome: 'breaker_open' });
          throw breakerRefusal(err);
        },
      );
    // One pace for both queues: it is the encoder's.
    const pace = new EncoderPace(options.queues.maxBatch, options.queues.maxInFlight);
    this.interactive = new EncoderQueue(call, pace, options, metrics, 'interactive', 'cascade encoder queue');
    this.bulk = new EncoderQueue(call, pace, options, metrics, 'bulk', 'cascade bulk encoder queue');
  }

  /** One EncodeBatch call: its rows, or the EncoderFailure that ended it. */
  #send(request: EncodeBatchRequest, count: number, deadline: number, abandoned: AbortSignal): Promise<Rows> {
    const floor = this.options.breaker.minTimeoutMs;
    return new Promise<Rows>((resolve, reject) => {
      const sentAt = Date.now();
      let giveUp: NodeJS.Timeout | undefined;
      const callDeadline = Math.max(deadline, sentAt + floor);
      const call = this.#client.EncodeBatch(request, { deadline: callDeadline }, (err, res) => {
        clearTimeout(giveUp);
        abandoned.removeEventListener('abort', onAbandoned);
        if (err) return reject(encoderFailure(err, { sentAt, deadline: callDeadline }));
        const failed = answerFailure(res!, count, request.dimension ?? 0, this.options.expect);
        if (failed) reject(failed);
        else resolve(batchRows(res!, count));
      });
      // Unanswered after the floor, the call counts against the encoder (the cancel's own CANCELLED comes after).
      const onAbandoned = () => {
        const at = Math.max(Date.now(), sentAt + floor);
        giveUp = setTimeout(() => {
          reject(timedOut(sentAt, at));
          call.cancel();
        }, at - Date.now());
      };
      if (abandoned.aborted) onAbandoned();
      else abandoned.addEventListener('abort', onAbandoned, { once: true });
    });
  }

  close(): void {
    this.#breaker.shutdown();
    this.#client.close();
  }
}

/** A refusal before any encoder call: the cascade cannot answer in time, so the caller should retry later. */
const overloaded = (message: string) => new StatusError(grpc.status.RESOURCE_EXHAUSTED, `${message}; retry later`);

/**
 * One queue to the encoder: inputs of concurrent requests share EncodeBatch calls, so under load
 * one gRPC hop and one breaker decision serve many requests; packed images go in runs of at
 * most `maxBatch` images, each in a call of its own, through the same queue and in-flight limit.
 *
 * Admission control keeps goodput at capacity under any load: a job is refused at once, before
 * it queues, when the wait it would have (the work ahead of it at the encoder's recent pace)
 * passes its deadline; and a queued job that can no longer be answered by its deadline is shed
 * when its call would take it. Both are RESOURCE_EXHAUSTED; neither reaches the encoder, so
 * overload never looks like an encoder failure.
 */
export class EncoderQueue {
  readonly #batcher: Batcher<Job, Rows>;
  readonly #pace: EncoderPace;
  readonly #refused: (reason: 'queue_full' | 'expected_wait' | 'shed') => void;

  /** `queue` labels its metrics; `name` names it in refusals. */
  constructor(
    call: (request: EncodeBatchRequest, count: number, deadline: number, abandoned: AbortSignal) => Promise<Rows>,
    pace: EncoderPace,
    options: EncoderGatewayOptions,
    metrics: GatewayMetrics,
    queue: 'interactive' | 'bulk',
    private readonly name: string,
  ) {
    const { maxBatch, maxDelayMs, maxInFlight, maxQueue, maxBatchBytes } = options.queues;
    const embeddingDim = options.expect.embeddingDim;
    this.#pace = pace;
    this.#refused = (reason) => metrics.encoderRefusals.inc({ queue, reason });
    const shed = (job: Job) => {
      const left = job.deadline - Date.now();
      if (left > 0 && left >= this.#pace.callMs) return undefined;
      this.#refused('shed');
      return overloaded(
        `${name}: this request can no longer be answered by its deadline (${Math.max(0, Math.round(left))} ms left; ` +
          `encoder calls take about ${Math.round(this.#pace.callMs)} ms)`,
      );
    };
    this.#batcher = new Batcher<Job, Rows>(
      { maxBatch, maxDelayMs, maxInFlight, maxQueue, maxWeight: maxBatchBytes, weigh: jobBytes, shed, size: (job) => job.count, name },
      async (jobs, abandoned) => {
        const count = jobs.reduce((n, j) => n + j.count, 0);
        // The full size goes on the wire as 0.
        const largest = Math.max(...jobs.map((j) => j.dimension));
        const dimension = largest === embeddingDim ? 0 : largest;
        const deadline = Math.max(...jobs.map((j) => j.deadline));
        const full = count >= maxBatch || this.#batcher.waiting > 0;
        const packed = jobs[0]!.images;
        metrics.encoderBatchSize.observe(count);
        const started = Date.now();
        const rows = await call(packed ? { images: packed, dimension } : { inputs: jobs.map((j) => j.input!), dimension }, count, deadline, abandoned);
        // Only answers set the pace: a hung encoder must go on failing calls, for the breaker to
        // see it, rather than have admission refuse its callers as if it were busy.
        this.#pace.observe(count, Date.now() - started, full);
        return packed ? [rows] : rows.map((row) => [row]);
      },
    );
  }

  /** Admits and queues a job: its rows, or the error that failed it (refused, its caller gone, or its call failed). */
  async submit(job: Job, signal: AbortSignal): Promise<Rows> {
    const left = job.deadline - Date.now();
    const wait = this.#pace.expectedMs(this.#batcher.waiting);
    if (wait > left) {
      this.#refused('expected_wait');
      throw overloaded(`${this.name}: requests wait about ${Math.round(wait)} ms for the encoder, more than the ${Math.max(0, Math.round(left))} ms before this one's deadline`);
    }
    try {
      return await this.#batcher.submit(job, signal);
    } catch (err) {
      if (err instanceof QueueFull) this.#refused('queue_full');
      throw err;
    }
  }
}
