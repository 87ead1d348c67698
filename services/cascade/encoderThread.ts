import { setMaxListeners } from 'node:events';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import type { Logger } from '../common/logger.js';
import { startModuleWorker } from '../common/runtime.js';
import { StatusError, invalidArgument } from '../common/statusError.js';
import { type QueueOptions, INPUT_OVERHEAD_BYTES, type Job, jobBytes, type Rows } from './encoderGateway.js';
import type { EncoderWorkerData, FromWorker, Lane, ToWorker, WireJob } from './encoderWorker.js';


/** Over how long the main thread's event-loop lag is measured, ms. */
const LAG_WINDOW_MS = 500;

/**
 * The job with its bytes in buffers of their own: a Buffer gRPC parsed may view a larger one, and
 * posting a view copies all of what it views.
 */
function own(job: Job): Job {
  const bytes = (b: Uint8Array | undefined) => b && new Uint8Array(b);
  const { input, images } = job;
  if (images) return { ...job, images: images.slice() };
  if (input?.image) return { ...job, input: { image: bytes(input.image as Uint8Array) } };
  if (input?.tensor?.raw) return { ...job, input: { tensor: { ...input.tensor, raw: bytes(input.tensor.raw as Uint8Array) } } };
  return job;
}

interface Waiting {
  resolve: (rows: Rows) => void;
  reject: (err: unknown) => void;
}

/**
 * The main thread's side of the encoder gateway (encoderWorker.ts): it numbers jobs, sends those
 * of one event-loop turn in one message, and settles each from the results, or at once with its
 * caller's reason when the caller goes (the gateway is told to drop it).
 */
export class EncoderThread {
  readonly interactive: EncoderLane;
  readonly bulk: EncoderLane;
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiting>();
  readonly #metrics = new Map<number, (text: string) => void>();
  #nextId = 0;
  #jobs: WireJob[] = [];
  #cancels: number[] = [];
  #closed: Promise<void> | undefined;
  /**
   * How late this thread's event loop ran lately, ms: an answer the gateway sends waits that long
   * before it is read and passed on, so each job leaves the gateway that much before its deadline.
   */
  #lagMs = 0;
  readonly #delay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  readonly #lagTimer: NodeJS.Timeout;

  private constructor(worker: Worker, options: QueueOptions, logger: Logger) {
    this.#worker = worker;
    this.#delay.enable();
    this.#lagTimer = setInterval(() => {
      this.#lagMs = this.#delay.max / 1e6;
      this.#delay.reset();
    }, LAG_WINDOW_MS).unref();
    worker.on('message', (message: FromWorker) => {
      switch (message.kind) {
        case 'results':
          for (const r of message.results) {
            const waiting = this.#waiting.get(r.id);
            if (!waiting) continue;
            this.#waiting.delete(r.id);
            if (r.error) {
              waiting.reject(new StatusError(r.error.code, r.error.message));
              continue;
            }
            const rows: Rows = Array.from({ length: r.count }, (_, i) => message.data.subarray(r.offset + i * r.dimension, r.offset + (i + 1) * r.dimension));
            for (const f of r.failed ?? []) rows[f.index] = new StatusError(f.code, f.message);
            waiting.resolve(rows);
          }
          break;
        case 'metrics':
          this.#metrics.get(message.id)?.(message.text);
          this.#metrics.delete(message.id);
          break;
        case 'log':
          logger[message.level](message.msg, message.fields);
          break;
      }
    });
    // The thread stopping on its own is a bug: fail what waits, and stop the process so that its
    // supervisor (mrl start, Kubernetes) starts a sound one.
    worker.once('exit', (code) => {
      for (const answer of this.#metrics.values()) answer('');
      this.#metrics.clear();
      if (this.#closed) return;
      logger.error("the cascade's encoder thread stopped", { exit_code: code });
      for (const w of this.#waiting.values()) w.reject(new StatusError(14, "encoder unavailable: the cascade's encoder thread stopped"));
      process.exit(1);
    });
    const submit = (lane: Lane) => (job: Job, signal: AbortSignal) => this.#submit(lane, job, signal);
    this.interactive = new EncoderLane(submit('interactive'), options);
    this.bulk = new EncoderLane(submit('bulk'), options);
  }

  /**
   * Starts the gateway's thread; resolves once it can take jobs. `onFit` hears whether the encoder
   * fits the cascade's heads, each time that changes (only a V2 server is checked).
   */
  static async start(workerData: EncoderWorkerData, logger: Logger, onFit: (unfit: string | undefined) => void): Promise<EncoderThread> {
    const worker = startModuleWorker('./encoderWorker', import.meta.url, { workerData });
    let last: string | null | undefined = null;
    worker.on('message', (m: FromWorker) => {
      if (m.kind !== 'fit' || m.unfit === last) return;
      last = m.unfit;
      onFit(m.unfit);
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromWorker) => m.kind === 'ready' && (worker.off('error', reject), worker.off('message', onMessage), resolve());
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    return new EncoderThread(worker, workerData.gateway.queues, logger);
  }

  #post(message: ToWorker): void {
    this.#worker.postMessage(message);
  }

  /** Sends this turn's jobs and cancels together, once the turn is over. */
  #schedule(): void {
    if (this.#jobs.length + this.#cancels.length !== 1) return;
    setImmediate(() => {
      this.#post({ kind: 'jobs', jobs: this.#jobs, cancels: this.#cancels });
      this.#jobs = [];
      this.#cancels = [];
    });
  }

  #submit(lane: Lane, job: Job, signal: AbortSignal): Promise<Rows> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = this.#nextId++;
    return new Promise<Rows>((resolve, reject) => {
      const gone = () => {
        if (!this.#waiting.delete(id)) return;
        this.#cancels.push(id);
        this.#schedule();
        reject(signal.reason);
      };
      this.#waiting.set(id, {
        resolve: (rows) => (signal.removeEventListener('abort', gone), resolve(rows)),
        reject: (err) => (signal.removeEventListener('abort', gone), reject(err)),
      });
      setMaxListeners(0, signal);
      signal.addEventListener('abort', gone, { once: true });
      this.#jobs.push({ ...own(job), deadline: job.deadline - this.#lagMs, id, lane });
      this.#schedule();
    });
  }

  /** The gateway's metrics, as Prometheus text, for the cascade's /metrics. */
  metricsText(): Promise<string> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#metrics.set(id, resolve);
      this.#post({ kind: 'metrics', id });
    });
  }

  /** Closes the encoder channel and stops the thread. */
  close(): Promise<void> {
    clearInterval(this.#lagTimer);
    this.#delay.disable();
    this.#closed ??= new Promise<void>((resolve) => {
      this.#worker.once('exit', () => resolve());
      this.#post({ kind: 'close' });
    });
    return this.#closed;
  }
}

/** What a Classify or ClassifyBatch call asks of the encoder, through one queue of the gateway. */
export class EncoderLane {
  constructor(
    private readonly submit: (job: Job, signal: AbortSignal) => Promise<Rows>,
    private readonly options: QueueOptions,
  ) {}

  /** The first `dimension` values of `input`'s embedding; fails at `deadline`, or once `signal` aborts. */
  async encode(input: EncodeInput, dimension: number, deadline: Date, signal: AbortSignal): Promise<Float32Array> {
    const job: Job = { input, count: 1, dimension, deadline: deadline.getTime() };
    // An input that fits the cascade's own message limit may not fit once wrapped in an EncodeBatch
    // call, and the encoder would refuse the call with a size the client never sent.
    const bytes = jobBytes(job);
    if (bytes > this.options.maxBatchBytes)
      throw invalidArgument(
        `${input.image ? 'image' : 'tensor'} of ${bytes - INPUT_OVERHEAD_BYTES} bytes is too large to send on to the encoder: ` +
          `an EncodeBatch call carries at most ${this.options.maxBatchBytes - INPUT_OVERHEAD_BYTES} bytes of input (MRL_MAX_MESSAGE_BYTES less framing)`,
      );
    const [row] = await this.submit(job, signal);
    if (row instanceof StatusError) throw row;
    return row!;
  }

  /**
   * `count` packed images (the values `packedImages` made) as `dimension`-long rows, in runs of
   * at most the call size; a run that fails fails each of its images.
   */
  async encodePacked(
    images: Float32Array,
    count: number,
    dimension: number,
    deadline: Date,
    signal: AbortSignal,
  ): Promise<(Float32Array | Error)[]> {
    const runs: Promise<(Float32Array | Error)[]>[] = [];
    const size = images.length / count;
    for (let from = 0; from < count; from += this.options.maxBatch) {
      const to = Math.min(count, from + this.options.maxBatch);
      const run: Job = { images: images.subarray(from * size, to * size), count: to - from, dimension, deadline: deadline.getTime() };
      runs.push(this.submit(run, signal).catch((err: Error) => new Array<Error>(run.count).fill(err)));
    }
    return (await Promise.all(runs)).flat();
  }
}
