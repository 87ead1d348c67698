import { status } from '@grpc/grpc-js';
import { Batcher } from '../common/batcher.js';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import type { Tensor } from '../common/generated/mrl/v1/Tensor.js';
import { StatusError } from '../common/statusError.js';
import type { EncoderClient } from './encoderClient.js';
import type { CascadeMetrics } from './metrics.js';

export interface CoalescingOptions {
  /** Most inputs in one EncodeBatch call. */
  maxBatch: number;
  /** Longest an input waits for others to join its call, ms; 0 = only those arriving together. */
  maxDelayMs: number;
  /** Most EncodeBatch calls in flight; the next call's inputs gather while they run. */
  maxInFlight: number;
  /** Most inputs waiting; further ones fail at once with RESOURCE_EXHAUSTED. */
  maxQueue: number;
  /** Largest EncodeBatch request, bytes: the encoder refuses messages over its own limit. */
  maxBatchBytes: number;
}

interface Job {
  input: EncodeInput;
  /** The prefix this input's request may use. */
  dimension: number;
  deadline: Date;
}

/** Room for an input's framing in the EncodeBatch message besides its payload. */
const INPUT_OVERHEAD_BYTES = 32;

/** An input's size in the EncodeBatch message, at most (a shape entry is a varint of up to 5 bytes). */
function inputBytes({ input }: Job): number {
  const t = input.tensor;
  const payload = input.image ? input.image.length : (t?.raw?.length ?? 0) + 4 * (t?.values?.length ?? 0) + 5 * (t?.shape?.length ?? 0);
  return payload + INPUT_OVERHEAD_BYTES;
}

/**
 * The cascade's way to the encoder: inputs of concurrent Classify calls (and the items of
 * ClassifyBatch calls) share EncodeBatch calls, so under load one gRPC hop and one breaker
 * decision serve many requests; packed images, already a batch, go in a call of their own. A
 * shared call asks for the largest prefix any of its inputs may use and runs until the latest of
 * their deadlines, or until every one of its requests has gone (cancelled or timed out), which
 * frees its place for requests still waiting; each input still fails at its own deadline.
 */
export class CoalescingEncoder {
  readonly #batcher: Batcher<Job, Float32Array | StatusError>;
  readonly #encoder: EncoderClient;
  /** The encoder's `dimension` argument for a prefix: 0 asks for the full embedding. */
  readonly #wire: (dimension: number) => number;

  /** `name` names the queue in RESOURCE_EXHAUSTED messages. */
  constructor(encoder: EncoderClient, embeddingDim: number, options: CoalescingOptions, metrics: CascadeMetrics, name: string) {
    this.#encoder = encoder;
    this.#wire = (dimension) => (dimension === embeddingDim ? 0 : dimension);
    this.#batcher = new Batcher<Job, Float32Array | StatusError>(
      {
        maxBatch: options.maxBatch,
        maxDelayMs: options.maxDelayMs,
        maxInFlight: options.maxInFlight,
        maxQueue: options.maxQueue,
        maxWeight: options.maxBatchBytes,
        weigh: inputBytes,
        name,
      },
      (jobs, abandoned) => {
        const dimension = Math.max(...jobs.map((j) => j.dimension));
        const deadline = new Date(Math.max(...jobs.map((j) => j.deadline.getTime())));
        return this.#encoder.encodeBatch({ inputs: jobs.map((j) => j.input), dimension: this.#wire(dimension) }, jobs.length, deadline, abandoned);
      },
      { batch: (size) => metrics.encoderBatchSize.observe(size) },
    );
  }

  /**
   * Packed images, as a ClassifyBatch brought them: one EncodeBatch call of their own (its gRPC
   * deadline is `deadline`; cancelled if `signal` aborts), `dimension`-long rows.
   */
  encodePacked(images: Tensor, count: number, dimension: number, deadline: Date, signal: AbortSignal): Promise<(Float32Array | StatusError)[]> {
    return this.#encoder.encodeBatch({ images, dimension: this.#wire(dimension) }, count, deadline, signal);
  }

  /** The first `dimension` values of `input`'s embedding; fails at `deadline`, or once `signal` aborts. */
  async encode(input: EncodeInput, dimension: number, deadline: Date, signal: AbortSignal): Promise<Float32Array> {
    // The input is gone once its caller is, or once it stops waiting at `deadline`.
    const gone = new AbortController();
    const follow = () => gone.abort(signal.reason);
    if (signal.aborted) follow();
    else signal.addEventListener('abort', follow, { once: true });
    const timer = setTimeout(() => {
      gone.abort(new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded waiting for the encoder'));
      this.#encoder.recordTimeout();
    }, deadline.getTime() - Date.now());
    try {
      const row = await this.#batcher.submit({ input, dimension, deadline }, gone.signal);
      if (row instanceof StatusError) throw row;
      return row.subarray(0, dimension);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', follow);
    }
  }
}
