import type { StageTable } from '../../matryoshka/calibration.js';
import type { CascadeResult, StageTrace } from '../../matryoshka/cascade.js';
import type { HeadRunner } from './headRunner.js';
import type { CascadeMetrics } from './metrics.js';
import type { ExitSettings } from './thresholds.js';

export interface ShadowOptions {
  /** Share of eligible requests that also get the full-size answer, 0 to 1 (0: off). */
  rate: number;
  /** Most recent samples kept for re-certification (0: none kept). */
  reservoir: number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
}

/**
 * Shadow agreement: for a sampled share of cascade answers, the full size's class, computed after
 * the response is on its way (a macrotask later, so the caller's latency does not include it),
 * counted in `mrl_cascade_shadow_total{dimension, agreed}`. With a reservoir, the most recent
 * samples' every-stage top probabilities and classes are kept: unlabelled data that the
 * disagreement risk can be re-certified on, since the full size's class is its own reference.
 */
export class ShadowSampler {
  readonly #random: () => number;
  readonly #K: number;
  readonly #top: Float64Array;
  readonly #classIndex: Int32Array;
  #next = 0;
  #count = 0;
  #temperatures: readonly number[] | undefined;

  constructor(
    private readonly heads: HeadRunner,
    private readonly metrics: CascadeMetrics,
    private readonly options: ShadowOptions,
  ) {
    this.#random = options.random ?? Math.random;
    this.#K = heads.cascade.nesting.length;
    this.#top = new Float64Array(options.reservoir * this.#K);
    this.#classIndex = new Int32Array(options.reservoir * this.#K);
    // Every series from the start, so that rates and ratios over them exist before the first
    // disagreement; the full size cannot disagree with itself.
    for (const m of heads.cascade.nesting) {
      metrics.shadow.inc({ dimension: String(m), agreed: 'true' }, 0);
      if (m !== heads.cascade.nesting.at(-1)) metrics.shadow.inc({ dimension: String(m), agreed: 'false' }, 0);
    }
  }

  /**
   * Offers a cascade answer on a full-length embedding (cascade policy, no dimension cap): sampled
   * at the configured rate, its full-size class is computed off the response path.
   */
  offer(z: Float32Array, answered: CascadeResult, settings: ExitSettings): void {
    if (this.options.rate <= 0 || this.#random() >= this.options.rate) return;
    // The head runner batches it with the requests of the next turn, after this response.
    // A sample that fails (its heads' kernel did) is dropped: the answer it shadows was sent.
    this.heads.allStages(z, settings.temperatures).then(
      (stages) => this.#record(stages, answered, settings),
      () => {},
    );
  }

  #record(stages: StageTrace[], answered: CascadeResult, settings: ExitSettings): void {
    const agreed = stages.at(-1)!.classIndex === answered.classIndex;
    this.metrics.shadow.inc({ dimension: String(answered.dimensionUsed), agreed: String(agreed) });
    if (this.options.reservoir === 0) return;
    // Samples scored at other temperatures are not comparable: start again.
    if (this.#temperatures !== settings.temperatures) {
      this.#temperatures = settings.temperatures;
      this.#count = 0;
      this.#next = 0;
    }
    stages.forEach((s, k) => {
      this.#top[this.#next * this.#K + k] = s.topProbability;
      this.#classIndex[this.#next * this.#K + k] = s.classIndex;
    });
    this.#next = (this.#next + 1) % this.options.reservoir;
    this.#count = Math.min(this.#count + 1, this.options.reservoir);
  }

  /** The temperatures the kept samples were scored at (undefined before the first). */
  get scoredAt(): readonly number[] | undefined {
    return this.#temperatures;
  }

  /** Samples kept since the temperatures last changed. */
  get size(): number {
    return this.#count;
  }

  /** The kept samples, oldest first, as a stage table scored against the full size's class. */
  samples(): StageTable {
    const K = this.#K;
    const n = this.#count;
    const start = n < this.options.reservoir ? 0 : this.#next;
    const top = new Float64Array(n * K);
    const classIndex = new Int32Array(n * K);
    const labels = new Int32Array(n);
    for (let r = 0; r < n; r++) {
      const i = (start + r) % this.options.reservoir;
      top.set(this.#top.subarray(i * K, (i + 1) * K), r * K);
      classIndex.set(this.#classIndex.subarray(i * K, (i + 1) * K), r * K);
      labels[r] = classIndex[r * K + K - 1]!;
    }
    return { n, dims: this.heads.cascade.nesting, top, classIndex, labels };
  }
}
