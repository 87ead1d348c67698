import type { Cascade, CascadeOptions, CascadeResult, HeadKernel, StageTrace } from '../../matryoshka/cascade.js';

/** Most requests one batch of stages carries (bounds the inputs copied for one matrix product). */
const MAX_ROWS = 256;

interface Pending {
  z: Float32Array;
  options: CascadeOptions;
  resolve: (result: CascadeResult) => void;
  reject: (err: unknown) => void;
}

/**
 * Classifies the requests of one event-loop turn together. Their embeddings arrive together (the
 * encoder gateway answers a call's inputs in one message), and each stage of the cascade runs
 * once for all of them still unresolved: a matrix product on `kernel`.
 */
export class HeadRunner {
  #pending: Pending[] = [];

  constructor(
    readonly cascade: Cascade,
    private readonly kernel: HeadKernel,
  ) {}

  /** `z`'s answer; a RangeError, alone, for a length, values, cap or topK the cascade cannot run (the service refuses all but the values first). */
  classify(z: Float32Array, options: CascadeOptions): Promise<CascadeResult> {
    const last = this.cascade.lastStage(z, options);
    if (typeof last === 'string') return Promise.reject(new RangeError(last));
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ z, options, resolve, reject }) === 1) setImmediate(() => this.#flush());
    });
  }

  /** Every stage's top probability and class for a full-length embedding (see Cascade.allStages). */
  async allStages(z: Float32Array, temperatures?: readonly number[]): Promise<StageTrace[]> {
    return (await this.classify(z, this.cascade.everyStage(temperatures))).trace;
  }

  #flush(): void {
    const pending = this.#pending;
    this.#pending = [];
    for (let from = 0; from < pending.length; from += MAX_ROWS) {
      const batch = pending.slice(from, from + MAX_ROWS);
      this.cascade.classifyBatch(batch.map((p) => p.z), batch.map((p) => p.options), this.kernel).then(
        (results) => batch.forEach((p, i) => p.resolve(results[i]!)),
        (err: unknown) => batch.forEach((p) => p.reject(err)),
      );
    }
  }
}
