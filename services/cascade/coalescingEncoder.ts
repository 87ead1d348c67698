import { status } from '@grpc/grpc-js';
import { Batcher } from '../common/batcher.js';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import type { InputSpec } from '../../matryoshka/bundle.js';
import type { Tensor, Tensor__Output } from '../common/generated/mrl/v1/Tensor.js';
import { packedRange } from '../common/tensorChecks.js';
import { StatusError, invalidArgument } from '../common/statusError.js';
import { type EncoderClient, ShortDeadline } from './encoderClient.js';
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
  /** One input; or `images`, a run of packed images that takes a call of its own. */
  input?: EncodeInput;
  images?: Tensor;
  /** Images the job carries: 1 for an input. */
  count: number;
  /** The prefix this job's requests may use. */
  dimension: number;
  deadline: Date;
  /** Aborts once its requests stop waiting (cancelled, or past the deadline). */
  gone: AbortSignal;
}

const deadlineExceeded = () => new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded waiting for the encoder');

/** Whether a job left at a deadline (its own, or its caller's), not by a cancel. */
const isDeadline = (reason: unknown) => reason instanceof StatusError && reason.code === status.DEADLINE_EXCEEDED;

/** Per image of a job, its embedding row or its own error. */
type Rows = (Float32Array | StatusError)[];

/** Room for an input's framing in the EncodeBatch message besides its payload. */
const INPUT_OVERHEAD_BYTES = 32;

/**
 * A job's size in the EncodeBatch message, at most (a shape entry is a varint of up to 5 bytes).
 * Packed images weigh more than any budget: they never share a call with other jobs.
 */
function jobBytes({ input, images }: Pick<Job, 'input' | 'images'>): number {
  if (images) return Infinity;
  const t = input!.tensor;
  const payload = input!.image ? input!.image.length : (t?.raw?.length ?? 0) + 4 * (t?.values?.length ?? 0) + 5 * (t?.shape?.length ?? 0);
  return payload + INPUT_OVERHEAD_BYTES;
}

/**
 * The cascade's way to the encoder: inputs of concurrent Classify calls (and the items of
 * ClassifyBatch calls) share EncodeBatch calls, so under load one gRPC hop and one breaker
 * decision serve many requests; packed images go in runs of at most `maxBatch` images, each in a
 * call of its own, through the same queue and in-flight limit, so a large packed ClassifyBatch
 * cannot crowd the encoder's queue. A call asks for the largest prefix any of its jobs may use
 * and runs until the latest of their deadlines, or until every one of its requests has gone
 * (cancelled or timed out), which frees its place for requests still waiting; each job still
 * fails at its own deadline.
 */
export class CoalescingEncoder {
  readonly #batcher: Batcher<Job, Rows>;
  readonly #encoder: EncoderClient;
  readonly #maxBatch: number;
  readonly #maxBatchBytes: number;
  /** The encoder's `dimension` argument for a prefix: 0 asks for the full embedding. */
  readonly #wire: (dimension: number) => number;

  /** `name` names the queue in RESOURCE_EXHAUSTED messages. */
  constructor(encoder: EncoderClient, embeddingDim: number, options: CoalescingOptions, metrics: CascadeMetrics, name: string) {
    this.#encoder = encoder;
    this.#maxBatch = options.maxBatch;
    this.#maxBatchBytes = options.maxBatchBytes;
    this.#wire = (dimension) => (dimension === embeddingDim ? 0 : dimension);
    this.#batcher = new Batcher<Job, Rows>(
      {
        maxBatch: options.maxBatch,
        maxDelayMs: options.maxDelayMs,
        maxInFlight: options.maxInFlight,
        maxQueue: options.maxQueue,
        maxWeight: options.maxBatchBytes,
        weigh: jobBytes,
        name,
      },
      async (jobs, abandoned) => {
        const dimension = this.#wire(Math.max(...jobs.map((j) => j.dimension)));
        const deadline = new Date(Math.max(...jobs.map((j) => j.deadline.getTime())));
        const packed = jobs[0]!.images;
        const images = (which: (job: Job) => boolean) => jobs.reduce((n, j) => n + (which(j) ? j.count : 0), 0);
        const count = images(() => true);
        const sentAt = Date.now();
        const floor = this.#encoder.minTimeoutMs;
        const timedOut = (j: Job) => isDeadline(j.gone.reason);
        // A timeout is the encoder's failure only if the encoder had the request long enough; a
        // shorter deadline was the caller's own budget. A floor of 0 counts every one.
        const failedLate = (j: Job) => timedOut(j) && (floor === 0 || j.deadline.getTime() - sentAt >= floor);
        // No job of a short call can fail late: decided here, on the same clock reading.
        const short = floor > 0 && deadline.getTime() - sentAt < floor;
        metrics.encoderBatchSize.observe(count);
        // Abandoned, the call fails with DEADLINE_EXCEEDED if any of its jobs timed out: one the
        // breaker counts if a job gave the encoder long enough, a ShortDeadline (not counted) if
        // none did; with CANCELLED only if every caller cancelled (not counted either).
        const abandon = new AbortController();
        const abandonReason = () => (images(failedLate) > 0 ? deadlineExceeded() : images(timedOut) > 0 ? new ShortDeadline() : abandoned.reason);
        abandoned.addEventListener('abort', () => abandon.abort(abandonReason()), { once: true });
        let rows: Rows[];
        try {
          rows = packed
            ? [await this.#encoder.encodeBatch({ images: packed, dimension }, count, deadline, abandon.signal, short)]
            : (await this.#encoder.encodeBatch({ inputs: jobs.map((j) => j.input!), dimension }, count, deadline, abandon.signal, short)).map((row) => [row]);
        } catch (err) {
          // The call counted once; its other inputs count the same, but for those whose callers
          // cancelled or timed out within a short budget: they told nothing of the encoder, and
          // neither did a call that ended so.
          if (!(err instanceof ShortDeadline)) this.#encoder.recordInputs(images((j) => !j.gone.aborted || failedLate(j)) - 1, err);
          throw err;
        }
        // The call counted once as an answer; so do its other inputs still waited for. Inputs that
        // timed out once sent, having given the encoder long enough, are failures; cancelled ones,
        // those that timed out sooner, and any that timed out still queued (never sent) count
        // neither way.
        this.#encoder.recordInputs(images((j) => !j.gone.aborted) - 1);
        // Built only when needed: an Error captures a stack, and most calls have no late input.
        const late = images(failedLate);
        if (late > 0) this.#encoder.recordInputs(late, deadlineExceeded());
        return rows;
      },
    );
  }

  /** Queues a job; its rows, or the error that failed it: its deadline passed, `signal` aborted, or its call failed. */
  async #submit(job: Omit<Job, 'gone'>, signal: AbortSignal): Promise<Rows> {
    // The job is gone once its caller is, or once it stops waiting at its deadline.
    const gone = new AbortController();
    const queued: Job = { ...job, gone: gone.signal };
    const follow = () => gone.abort(signal.reason);
    if (signal.aborted) follow();
    else signal.addEventListener('abort', follow, { once: true });
    const timer = setTimeout(() => gone.abort(deadlineExceeded()), job.deadline.getTime() - Date.now());
    try {
      return await this.#batcher.submit(queued, gone.signal);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', follow);
    }
  }

  /**
   * `count` packed images (a tensor `packedImages` accepted) as `dimension`-long rows, in runs of
   * at most the call size; a run that fails fails each of its images.
   */
  async encodePacked(
    images: Tensor__Output,
    spec: InputSpec,
    count: number,
    dimension: number,
    deadline: Date,
    signal: AbortSignal,
  ): Promise<(Float32Array | Error)[]> {
    const runs: Promise<(Float32Array | Error)[]>[] = [];
    for (let from = 0; from < count; from += this.#maxBatch) {
      const to = Math.min(count, from + this.#maxBatch);
      const run = { images: packedRange(images, spec, from, to), count: to - from, dimension, deadline };
      runs.push(this.#submit(run, signal).catch((err: Error) => new Array<Error>(run.count).fill(err)));
    }
    return (await Promise.all(runs)).flat();
  }

  /** The first `dimension` values of `input`'s embedding; fails at `deadline`, or once `signal` aborts. */
  async encode(input: EncodeInput, dimension: number, deadline: Date, signal: AbortSignal): Promise<Float32Array> {
    const job = { input, count: 1, dimension, deadline };
    // An input that fits the cascade's own message limit may not fit once wrapped in an EncodeBatch
    // call, and the encoder would refuse the call with a size the client never sent.
    const bytes = jobBytes(job);
    if (bytes > this.#maxBatchBytes)
      throw invalidArgument(
        `${input.image ? 'image' : 'tensor'} of ${bytes - INPUT_OVERHEAD_BYTES} bytes is too large to send on to the encoder: ` +
          `an EncodeBatch call carries at most ${this.#maxBatchBytes - INPUT_OVERHEAD_BYTES} bytes of input (MRL_MAX_MESSAGE_BYTES less framing)`,
      );
    const [row] = await this.#submit(job, signal);
    if (row instanceof StatusError) throw row;
    return row!.subarray(0, dimension);
  }
}
