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
  #perInputMs: number | undefined;

  constructor(
    private readonly maxBatch: number,
    private readonly maxInFlight: number,
  ) {}

  /** A call of `inputs` inputs was answered after `ms`; `full`: work waited while it ran. */
  observe(inputs: number, ms: number, full: boolean): void {
    this.#callMs = ewma(this.#callMs, ms);
    if (full) this.#perInputMs = ewma(this.#perInputMs, ms / Math.max(1, inputs));
  }

  /** A call's expected time, ms (0 while unknown). */
  get callMs(): number {
    return this.#callMs ?? 0;
  }

  /**
   * Expected ms until a job is answered with `ahead` inputs queued before it: those drain over
   * the calls in flight at the pace of full calls (until one is seen, a full call's time per
   * input, which underestimates: admission errs towards admitting), then its own call.
   */
  expectedMs(ahead: number): number {
    if (this.#callMs === undefined) return 0;
    const perInput = this.#perInputMs ?? this.#callMs / this.maxBatch;
    return (ahead * perInput) / this.maxInFlight + this.#callMs;
  }
}
