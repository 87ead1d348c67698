import type { Logger } from '../common/logger.js';
import { startModuleWorker } from '../common/runtime.js';
import { wilsonInterval } from '../../matryoshka/binomial.js';
import { fewestInputs } from '../../matryoshka/certify.js';
import { replay, type StageTable } from '../../matryoshka/calibration.js';
import type { CertifyJob, CertifyReply } from './certifyWorker.js';
import type { CascadeMetrics } from './metrics.js';
import type { ShadowSampler } from './shadow.js';
import type { CertificateTerms, ExitSettings, ThresholdStore } from './thresholds.js';

export interface RecertificationOptions {
  /** Re-certify at least this often, ms. */
  intervalMs: number;
  /** How often the alert condition is checked on the kept samples, ms. */
  checkMs: number;
}

/**
 * Re-certifies the thresholds on the shadow samples (MRL_SHADOW_RECALIBRATE) at the terms of the
 * certificate served at the time: on a schedule, and as soon as the served thresholds'
 * disagreement on the kept samples has a lower confidence bound (Wilson, one-sided 95%) above ε,
 * the alert's condition. The test runs on a worker thread (see certifyWorker.ts), one at a time,
 * and only on samples scored at the served temperatures. New thresholds are served only when the
 * test certifies them and nothing changed the served settings meanwhile; each swap is logged with
 * the expected dimension before and after. Each swap's δ holds for that swap's sample: over many
 * swaps the chance that some served set exceeds ε grows with their number.
 */
export function startRecertification(
  sampler: ShadowSampler,
  store: ThresholdStore,
  options: RecertificationOptions,
  metrics: CascadeMetrics,
  logger: Logger,
): { stop(): Promise<void> } {
  const worker = startModuleWorker('./certifyWorker', import.meta.url, {});
  worker.unref();
  let failed = false;
  worker.on('error', (err) => logger.error('re-certification worker failed', { err }));
  worker.on('exit', (code) => {
    failed = true;
    logger.error('re-certification worker exited; re-certification is off until the cascade restarts', { code });
  });
  let last = Date.now();
  let running = false;
  /** One job's reply, or a rejection if the worker exits first. */
  const ask = (job: CertifyJob) =>
    new Promise<CertifyReply>((resolve, reject) => {
      const onExit = (code: number) => reject(new Error(`re-certification worker exited (${code})`));
      worker.once('exit', onExit);
      worker.once('message', (reply: CertifyReply) => {
        worker.off('exit', onExit);
        resolve(reply);
      });
      worker.postMessage(job);
    });
  const recertify = async (samples: StageTable, settings: ExitSettings, terms: CertificateTerms, reason: string) => {
    const reply = await ask({ table: samples, terms });
    if (!reply.ok) {
      metrics.thresholdReloads.inc({ result: 'not_certified' });
      logger.warn('re-certification found no certified thresholds; keeping the current ones', { samples: samples.n, reason: reply.reason });
      return;
    }
    // A file reload meanwhile wins; so do thresholds that are already these.
    if (store.current !== settings || reply.thresholds.every((t, k) => t === settings.thresholds[k])) return;
    const before = replay(samples, settings.thresholds);
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
    const settings = store.current;
    const terms = settings.certificate;
    // Only a disagreement certificate can be renewed from shadow samples, and only on samples scored as served.
    if (failed || running || terms?.risk !== 'disagreement' || sampler.scoredAt !== settings.temperatures) return;
    if (sampler.size < fewestInputs(terms)) return;
    const samples = sampler.samples();
    const live = replay(samples, settings.thresholds);
    const alert = wilsonInterval(live.disagreements, samples.n).low > terms.epsilon;
    if (!alert && Date.now() - last < options.intervalMs) return;
    last = Date.now();
    running = true;
    recertify(samples, settings, terms, alert ? 'disagreement above epsilon' : 'schedule')
      .catch((err: unknown) => logger.error('re-certification failed', { err }))
      .finally(() => (running = false));
  };
  const timer = setInterval(tick, options.checkMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}
