import { status } from '@grpc/grpc-js';
import { StatusError } from './statusError.js';

export interface BatcherOptions<I> {
  /** Most items run together. */
  maxBatch: number;
  /**
   * Longest an item waits for others to join its batch, ms. 0 gathers what arrives in the same
   * event-loop turn (several calls read from one socket) and adds no timer delay.
   */
  maxDelayMs: number;
  /** Most items waiting; further submits fail at once with RESOURCE_EXHAUSTED. */
  maxQueue: number;
  /** Most batches running at once (default 1). */
  maxInFlight?: number;
  /** With `weigh`: a batch stops growing before its items' weights sum past this (one item always fits). */
  maxWeight?: number;
  weigh?: (item: I) => number;
  /** Names the queue in the RESOURCE_EXHAUSTED message (default "queue"). */
  name?: string;
  /**
   * Asked of each item as a batch takes it: a reason (an error) to refuse it rather than run it,
   * such as a deadline it can no longer meet. A refused item fails with that reason.
   */
  shed?: (item: I) => unknown;
  /** How much work an item is, as `waiting` sums it (default 1: `waiting` counts items). */
  size?: (item: I) => number;
}
export interface BatchObserver {
  /** Called once per batch run with its size and each item's wait in seconds. */
  batch(size: number, waits: number[]): void;
  /** Queue length after each change. */
  depth?(items: number): void;
}

/** A submit refused because `maxQueue` items wait. */
export class QueueFull extends StatusError {
  constructor(name: string, maxQueue: number) {
    super(status.RESOURCE_EXHAUSTED, `${name} is full (${maxQueue} waiting); retry later`);
  }
}

interface Pending<I, O> {
  item: I;
  signal?: AbortSignal;
  /** Rejects the item with its signal's reason and takes it off the queue (listener on `signal`). */
  abandon?: () => void;
  enqueued: bigint;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Coalesces concurrent single-item requests into batch runs. A batch starts when `maxBatch`
 * items wait, when the oldest has waited `maxDelayMs`, or, while `maxInFlight` batches run, as
 * soon as one ends: under load batches fill on their own with no added delay. An item whose
 * signal aborts (its caller's deadline passed, or the caller went) is rejected at once with the
 * signal's reason: waiting, it leaves the queue, so its place and the work go to callers still
 * waiting; running, its answer is dropped.
 */
export class Batcher<I, O> {
  private readonly queue: Pending<I, O>[] = [];
  private timer: { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate } | undefined;
  private running = 0;
  private readonly maxInFlight: number;

  private waitingSize = 0;

  /** The sizes of the items waiting for a batch, summed. */
  get waiting(): number {
    return this.waitingSize;
  }

  constructor(
    private readonly options: BatcherOptions<I>,
    /** `signal` aborts once every item of the batch has been aborted (with the last one's reason): no one waits for its answer. */
    private readonly run: (items: I[], signal: AbortSignal) => Promise<O[]>,
    private readonly observer?: BatchObserver,
  ) {
    this.maxInFlight = options.maxInFlight ?? 1;
  }

  /** The refusal a submit would get now because the queue is full, if it would. */
  full(): QueueFull | undefined {
    return this.queue.length >= this.options.maxQueue ? new QueueFull(this.options.name ?? 'queue', this.options.maxQueue) : undefined;
  }

  /** Queues `item` for a batch; once `signal` aborts, the item fails with its reason. */
  submit(item: I, signal?: AbortSignal): Promise<O> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const full = this.full();
    if (full) return Promise.reject(full);
    return new Promise<O>((resolve, reject) => {
      const pending: Pending<I, O> = { item, signal, enqueued: process.hrtime.bigint(), resolve, reject };
      if (signal) {
        pending.abandon = () => {
          const at = this.queue.indexOf(pending);
          if (at >= 0) {
            this.queue.splice(at, 1);
            this.waitingSize -= this.sizeOf(item);
            this.observer?.depth?.(this.queue.length);
          }
          reject(signal.reason);
        };
        signal.addEventListener('abort', pending.abandon, { once: true });
      }
      this.queue.push(pending);
      this.waitingSize += this.sizeOf(item);
      this.observer?.depth?.(this.queue.length);
      this.schedule();
    });
  }

  private sizeOf(item: I): number {
    return this.options.size?.(item) ?? 1;
  }

  private schedule(): void {
    if (this.running >= this.maxInFlight || this.queue.length === 0) return;
    if (this.queue.length >= this.options.maxBatch) {
      this.clearTimer();
      void this.flush();
      return;
    }
    if (this.timer) return;
    if (this.options.maxDelayMs === 0) {
      this.timer = { kind: 'immediate', handle: setImmediate(() => void this.flush()) };
      return;
    }
    const waited = Number(process.hrtime.bigint() - this.queue[0]!.enqueued) / 1e6;
    this.timer = { kind: 'timeout', handle: setTimeout(() => void this.flush(), Math.max(0, this.options.maxDelayMs - waited)) };
  }

  private clearTimer(): void {
    if (this.timer?.kind === 'timeout') clearTimeout(this.timer.handle);
    else if (this.timer?.kind === 'immediate') clearImmediate(this.timer.handle);
    this.timer = undefined;
  }

  /** Takes the next batch off the queue, up to `maxBatch` and `maxWeight` (aborted items have left it; shed ones fail here). */
  private take(): Pending<I, O>[] {
    const batch: Pending<I, O>[] = [];
    let weight = 0;
    while (batch.length < this.options.maxBatch && this.queue.length > 0) {
      const next = this.queue[0]!;
      const refused = this.options.shed?.(next.item);
      if (refused !== undefined) {
        this.queue.shift();
        this.waitingSize -= this.sizeOf(next.item);
        if (next.abandon) next.signal!.removeEventListener('abort', next.abandon);
        next.reject(refused);
        continue;
      }
      const w = this.options.weigh?.(next.item) ?? 0;
      if (batch.length > 0 && this.options.maxWeight !== undefined && weight + w > this.options.maxWeight) break;
      weight += w;
      batch.push(this.queue.shift()!);
      this.waitingSize -= this.sizeOf(next.item);
    }
    return batch;
  }

  private async flush(): Promise<void> {
    this.clearTimer();
    if (this.running >= this.maxInFlight) return;
    const batch = this.take();
    this.observer?.depth?.(this.queue.length);
    if (batch.length === 0) return;
    this.running++;
    const now = process.hrtime.bigint();
    this.observer?.batch(batch.length, batch.map((p) => Number(now - p.enqueued) / 1e9));
    // More may start beside this one (maxInFlight > 1) while it runs.
    this.schedule();
    const abandoned = this.watchAbandoned(batch);
    try {
      const outs = await this.run(batch.map((p) => p.item), abandoned.signal);
      batch.forEach((p, i) => p.resolve(outs[i]!));
    } catch (err) {
      batch.forEach((p) => p.reject(err));
    } finally {
      abandoned.stop();
      for (const p of batch) if (p.abandon) p.signal!.removeEventListener('abort', p.abandon);
      this.running--;
      this.schedule();
    }
  }

  /**
   * A signal that aborts when the last of the batch's items is aborted, with that item's reason
   * (never, if an item has no signal). Items may share a signal (one call's several inputs).
   */
  private watchAbandoned(batch: Pending<I, O>[]): { signal: AbortSignal; stop: () => void } {
    const controller = new AbortController();
    if (batch.some((p) => !p.signal)) return { signal: controller.signal, stop: () => {} };
    const live = new Set(batch.map((p) => p.signal!));
    const onAbort = (event: Event) => {
      const signal = event.target as AbortSignal;
      live.delete(signal);
      if (live.size === 0) controller.abort(signal.reason);
    };
    for (const signal of live) signal.addEventListener('abort', onAbort, { once: true });
    return { signal: controller.signal, stop: () => live.forEach((signal) => signal.removeEventListener('abort', onAbort)) };
  }
}
