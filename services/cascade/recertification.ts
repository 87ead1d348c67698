import { once } from 'node:events';
import type { Logger } from '../common/logger.js';
import { startModuleWorker } from '../common/runtime.js';
import { wilsonInterval } from './binomial.js';
import { replay, type StageTable } from './calibration.js';
import type { CertifyJob, CertifyReply } from './certifyWorker.js';
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
 * (Wilson, one-sided 95%) above ε, the alert's condition. The test runs on a worker thread (see
 * certifyWorker.ts), one at a time. New thresholds are served only when the test certifies them;
 * each swap is logged with the expected dimension before and after.
 */
export function startRecertification(
  sampler: ShadowSampler,
  store: ThresholdStore,
  options: RecertificationOptions,
  metrics: CascadeMetrics,
  logger: Logger,
): { stop(): Promise<void> } {
  const { terms } = options;
  const needed = minimumSamples(terms);
  const worker = startModuleWorker('./certifyWorker', import.meta.url, {});
  worker.unref();
  worker.on('error', (err) => logger.error('re-certification worker failed', { err }));
  let last = Date.now();
  let running = false;
  const recertify = async (samples: StageTable, reason: string) => {
    const current = store.current.thresholds;
    worker.postMessage({ table: samples, terms } satisfies CertifyJob);
    const [reply] = (await once(worker, 'message')) as [CertifyReply];
    if (!reply.ok) {
      metrics.thresholdReloads.inc({ result: 'not_certified' });
      logger.warn('re-certification found no certified thresholds; keeping the current ones', { samples: samples.n, reason: reply.reason });
      return;
    }
    // The served thresholds may have changed meanwhile (a file reload): those win.
    if (store.current.thresholds !== current || reply.thresholds.every((t, k) => t === current[k])) return;
    const before = replay(samples, current);
    const after = replay(samples, reply.thresholds);
    store.recertified(reply.thresholds, terms);
    logger.info('thresholds re-certified on shadow samples', {
      samples: samples.n,
      reason,
      disagreement_before: before.disagreements / samples.n,
      disagreement_after: after.disagreements / samples.n,
      avg_dimension_before: before.dimensionSum / samples.n,
      avg_dimension_after: after.dimensionSum / samples.n,
      bound: reply.bound,
      thresholds: reply.thresholds,
    });
  };
  const tick = () => {
    if (running || sampler.size < needed) return;
    const samples = sampler.samples();
    const live = replay(samples, store.current.thresholds);
    const alert = wilsonInterval(live.disagreements, samples.n).low > terms.epsilon;
    if (!alert && Date.now() - last < options.intervalMs) return;
    last = Date.now();
    running = true;
    recertify(samples, alert ? 'disagreement above epsilon' : 'schedule')
      .catch((err: unknown) => logger.error('re-certification failed', { err }))
      .finally(() => (running = false));
  };
  const timer = setInterval(tick, options.checkMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
