/** Weight of the newest call in the moving averages: a few calls follow a change of pace. */
const ALPHA = 0.3;

const ewma = (old: number | undefined, sample: number) => (old === undefined ? sample : old + ALPHA * (sample - old));

/**
 * How fast a queue's encoder calls go, from the calls answered: the moving average of a call's
 * time, and of its time per input over calls that were full (work waited behind them, so they
 * show the encoder's pace at capacity, not the arrival rate). Admission control asks it how long
 * a new job would wait; before any call has ended it knows nothing and expects no wait.
 */
export class EncoderPace {
  #callMs: number | undefined;
  /** Moving average of how far a call's time is from `#callMs`. */
  #deviationMs = 0;
  #perInputMs: number | undefined;

  constructor(
    private readonly maxBatch: number,
    private readonly maxInFlight: number,
  ) {}

  /** A call of `inputs` inputs was answered after `ms`; `full`: work waited while it ran. */
  observe(inputs: number, ms: number, full: boolean): void {
    if (this.#callMs !== undefined) this.#deviationMs = ewma(this.#deviationMs, Math.abs(ms - this.#callMs));
    this.#callMs = ewma(this.#callMs, ms);
    if (full) this.#perInputMs = ewma(this.#perInputMs, ms / Math.max(1, inputs));
  }

  /**
   * How long a call may take, ms: its average time and four times its average deviation, as TCP
   * bounds a round trip (RFC 6298); 0 while unknown. A job with less time left would likely miss
   * its deadline.
   */
  get slowCallMs(): number {
    return this.#callMs === undefined ? 0 : this.#callMs + 4 * this.#deviationMs;
  }

  /**
   * Expected ms until a job is answered with `ahead` inputs queued before it: those drain over
   * the calls in flight at the pace of full calls (until one is seen, a full call's time per
   * input, which underestimates: admission errs towards admitting), then its own call, slow.
   */
  expectedMs(ahead: number): number {
    if (this.#callMs === undefined) return 0;
    const perInput = this.#perInputMs ?? this.#callMs / this.maxBatch;
    return (ahead * perInput) / this.maxInFlight + this.slowCallMs;
  }
}
