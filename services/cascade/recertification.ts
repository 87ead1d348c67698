import type { Logger } from '../common/logger.js';
import { wilsonInterval } from './binomial.js';
import { replay } from './calibration.js';
import { certifyDisagreement } from './certify.js';
import type { CascadeMetrics } from './metrics.js';
import type { ShadowSampler } from './shadow.js';
import type { CertificateTerms, ThresholdStore } from './thresholds.js';

export interface RecertificationOptions {
  /** Re-certify at least this often, ms. */
  intervalMs: number;
  /** How often the alert condition is checked on the kept samples, ms. */
  checkMs: number;
  /** The bound to certify at: the served certificate's terms. */
  terms: CertificateTerms;
}

/**
 * The fewest samples on which even the most cautious cascade (no disagreements) passes the test:
 * (1 − ε)^n_tested ≤ δ, with 3 of every 5 samples tested.
 */
export function minimumSamples({ epsilon, delta }: CertificateTerms): number {
  return Math.ceil(Math.log(delta) / Math.log1p(-epsilon) / 0.6) + 5;
}

/**
 * Re-certifies the thresholds on the shadow samples (MRL_SHADOW_RECALIBRATE): on a schedule, and
 * as soon as the served thresholds' disagreement on the kept samples has a lower confidence bound
 * (Wilson, one-sided 95%) above ε, the alert's condition. New thresholds are served only when the
 * test certifies them; each swap is logged with the expected dimension before and after.
 */
export function startRecertification(
  sampler: ShadowSampler,
  store: ThresholdStore,
  options: RecertificationOptions,
  metrics: CascadeMetrics,
  logger: Logger,
): { stop(): void } {
  const { terms } = options;
  const needed = minimumSamples(terms);
  let last = Date.now();
  const tick = () => {
    if (sampler.size < needed) return;
    const samples = sampler.samples();
    const current = store.current.thresholds;
    const now = replay(samples, current);
    const live = wilsonInterval(now.disagreements, samples.n);
    const alert = live.low > terms.epsilon;
    if (!alert && Date.now() - last < options.intervalMs) return;
    last = Date.now();
    let found;
    try {
      found = certifyDisagreement(samples, terms);
    } catch (err) {
      metrics.thresholdReloads.inc({ result: 'not_certified' });
      logger.warn('re-certification found no certified thresholds; keeping the current ones', { samples: samples.n, reason: (err as Error).message });
      return;
    }
    if (found.thresholds.every((t, k) => t === current[k])) return;
    const after = replay(samples, found.thresholds);
    store.recertified(found.thresholds, terms);
    logger.info('thresholds re-certified on shadow samples', {
      samples: samples.n,
      reason: alert ? 'disagreement above epsilon' : 'schedule',
      disagreement_before: now.disagreements / samples.n,
      disagreement_after: after.disagreements / samples.n,
      avg_dimension_before: now.dimensionSum / samples.n,
      avg_dimension_after: after.dimensionSum / samples.n,
      bound: found.certificate.bound,
      thresholds: found.thresholds,
    });
  };
  const timer = setInterval(tick, options.checkMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
