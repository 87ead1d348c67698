import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import { Batcher, QueueFull } from '../common/batcher.js';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import type { Logger } from '../common/logger.js';
import { StatusError } from '../common/statusError.js';
import { EncoderPace } from './admission.js';
import { EncoderFailure, notTheEncoders, timedOut } from './encoderOutcome.js';
import type { EncoderTransport } from './encoderTransport.js';
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
  /** Where the encoder is, for the logs. */
  target: string;
  breaker: BreakerOptions;
  queues: QueueOptions;
  /** The size of the embeddings the cascade's heads take. */
  embeddingDim: number;
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
  /** One input; or `images`, a run of `count` packed images' values (checked: see packedImages), that takes a call of its own. */
  input?: EncodeInput;
  images?: Float32Array;
  /** The model input's float values for `count` inputs, where the transport makes them itself (EncoderTransport.prepare). */
  values?: Float32Array;
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
export function jobBytes({ input, images, values }: Pick<Job, 'input' | 'images' | 'values'>): number {
  if (images) return Infinity;
  if (values) return values.byteLength + INPUT_OVERHEAD_BYTES;
  const t = input!.tensor;
  const payload = input!.image ? input!.image.length : (t?.raw?.length ?? 0) + 4 * (t?.values?.length ?? 0) + 5 * (t?.shape?.length ?? 0);
  return payload + INPUT_OVERHEAD_BYTES;
}

/**
 * The cascade's one way to the encoder. It owns the channel, one circuit breaker that every
 * EncodeBatch call passes once (`fire` per call; `errorFilter` drops what is not the encoder's
 * fault, see encoderOutcome.ts), and two queues: `interactive` for Classify calls and `bulk` for
 * ClassifyBatch items, so a bulk job can fill only its own queue.
 *
 * A call carries the inputs of concurrent requests; it runs until the latest of their deadlines
 * and at least `minTimeoutMs`. A call whose callers have all gone is cancelled once the encoder has
 * had it `minTimeoutMs`, or as long as calls may take (EncoderPace.slowCallMs) if longer: every
 * call tells the breaker something, and none holds a place in flight long for callers who left.
 */
export class EncoderGateway {
  readonly interactive: EncoderQueue;
  readonly bulk: EncoderQueue;
  readonly #breaker: CircuitBreaker;
  readonly #pace: EncoderPace;

  constructor(
    private readonly transport: EncoderTransport,
    private readonly options: EncoderGatewayOptions,
    metrics: GatewayMetrics,
    logger: Logger,
  ) {
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
    const call = (jobs: Job[], count: number, dimension: number, deadline: number, abandoned: AbortSignal) =>
      (this.#breaker.fire(() => this.#send(jobs, count, dimension, deadline, abandoned)) as Promise<Rows>).then(
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
    this.#pace = pace;
    const prepare = (job: Job) => transport.prepare(job);
    this.interactive = new EncoderQueue(call, prepare, pace, options, metrics, 'interactive', 'cascade encoder queue');
    this.bulk = new EncoderQueue(call, prepare, pace, options, metrics, 'bulk', 'cascade bulk encoder queue');
  }

  /** One encoder call: its rows, or the EncoderFailure that ended it. */
  #send(jobs: Job[], count: number, dimension: number, deadline: number, abandoned: AbortSignal): Promise<Rows> {
    const floor = this.options.breaker.minTimeoutMs;
    const sentAt = Date.now();
    const giveUp = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    // Unanswered after the floor, or after the time calls may take if that is longer, the call
    // counts against the encoder.
    const onAbandoned = () => {
      const at = Math.max(Date.now(), sentAt + Math.max(floor, this.#pace.slowCallMs));
      timer = setTimeout(() => giveUp.abort(timedOut(sentAt, at)), at - Date.now());
    };
    if (abandoned.aborted) onAbandoned();
    else abandoned.addEventListener('abort', onAbandoned, { once: true });
    return this.transport.call(jobs, count, dimension, Math.max(deadline, sentAt + floor), giveUp.signal).finally(() => {
      clearTimeout(timer);
      abandoned.removeEventListener('abort', onAbandoned);
    });
  }

  close(): void {
    this.#breaker.shutdown();
    this.transport.close();
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
    call: (jobs: Job[], count: number, dimension: number, deadline: number, abandoned: AbortSignal) => Promise<Rows>,
    private readonly prepare: (job: Job) => Promise<Job> | Job,
    pace: EncoderPace,
    options: EncoderGatewayOptions,
    metrics: GatewayMetrics,
    queue: 'interactive' | 'bulk',
    private readonly name: string,
  ) {
    const { maxBatch, maxDelayMs, maxInFlight, maxQueue, maxBatchBytes } = options.queues;
    const embeddingDim = options.embeddingDim;
    this.#pace = pace;
    this.#refused = (reason) => metrics.encoderRefusals.inc({ queue, reason });
    const shed = (job: Job) => {
      const left = job.deadline - Date.now();
      if (left > 0 && left >= this.#pace.slowCallMs) return undefined;
      this.#refused('shed');
      return overloaded(
        `${name}: this request can no longer be answered by its deadline (${Math.max(0, Math.round(left))} ms left; ` +
          `encoder calls may take ${Math.round(this.#pace.slowCallMs)} ms)`,
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
        const packed = jobs[0]!.images !== undefined;
        metrics.encoderBatchSize.observe(count);
        const started = Date.now();
        const rows = await call(jobs, count, dimension, deadline, abandoned);
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
      // Refused before the transport prepares it: a V2 transport decodes and preprocesses each
      // image, CPU an overloaded cascade has least of. (Its queue may fill while it prepares.)
      const full = this.#batcher.full();
      if (full) throw full;
      return await this.#batcher.submit(await this.prepare(job), signal);
    } catch (err) {
      if (err instanceof QueueFull) this.#refused('queue_full');
      throw err;
    }
  }
}
