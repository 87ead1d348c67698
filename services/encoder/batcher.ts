import { status } from '@grpc/grpc-js';
import { StatusError } from '../common/statusError.js';

export interface BatcherOptions {
  /** Most items run together (default 64). */
  maxBatch: number;
  /** Longest an item waits for others to join its batch, in milliseconds (default 2). */
  maxDelayMs: number;
  /** Most items waiting; further submits fail at once with RESOURCE_EXHAUSTED (default 1024). */
  maxQueue: number;
}

export interface BatchObserver {
  /** Called once per batch run with its size and each item's wait in seconds. */
  batch(size: number, waits: number[]): void;
  /** Queue length after each change. */
  depth(items: number): void;
}

interface Pending<I, O> {
  item: I;
  signal?: AbortSignal;
  enqueued: bigint;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Coalesces concurrent single-item requests into batch runs. A batch starts when `maxBatch`
 * items wait, when the oldest has waited `maxDelayMs`, or, while a batch runs, as soon as it
 * ends: under load batches fill on their own with no added delay. One batch runs at a time.
 * Items whose signal was aborted while they waited (their caller's deadline passed) are
 * rejected with the signal's reason instead of being run: under overload the model's time
 * goes to callers still waiting for an answer.
 */
export class Batcher<I, O> {
  private readonly queue: Pending<I, O>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly options: BatcherOptions,
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly observer?: BatchObserver,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  /** Queues `item` for a batch; `signal`, once aborted, drops it if it has not run yet. */
  submit(item: I, signal?: AbortSignal): Promise<O> {
    if (this.queue.length >= this.options.maxQueue)
      return Promise.reject(new StatusError(status.RESOURCE_EXHAUSTED, `encoder queue is full (${this.options.maxQueue} waiting); retry later`));
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, signal, enqueued: process.hrtime.bigint(), resolve, reject });
      this.observer?.depth(this.queue.length);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queue.length >= this.options.maxBatch) {
      void this.flush();
      return;
    }
    if (this.timer) return;
    const waited = Number(process.hrtime.bigint() - this.queue[0]!.enqueued) / 1e6;
    this.timer = setTimeout(() => void this.flush(), Math.max(0, this.options.maxDelayMs - waited));
  }

  private async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch: Pending<I, O>[] = [];
    while (batch.length < this.options.maxBatch && this.queue.length > 0) {
      const next = this.queue.shift()!;
      if (next.signal?.aborted) next.reject(next.signal.reason);
      else batch.push(next);
    }
    this.observer?.depth(this.queue.length);
    if (batch.length === 0) return;
    this.running = true;
    const now = process.hrtime.bigint();
    this.observer?.batch(batch.length, batch.map((p) => Number(now - p.enqueued) / 1e9));
    try {
      const outs = await this.run(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(outs[i]!));
    } catch (err) {
      batch.forEach((p) => p.reject(err));
    } finally {
      this.running = false;
      this.schedule();
    }
  }
}
