import { parentPort } from 'node:worker_threads';
import type { StageTable } from '../../matryoshka/calibration.js';
import { certifyDisagreement } from '../../matryoshka/certify.js';
import type { CertificateTerms } from './thresholds.js';

/** A re-certification to run: the shadow samples and the bound. */
export interface CertifyJob {
  table: StageTable;
  terms: CertificateTerms;
}

/** Its answer: certified thresholds and the bound reached, or why none could be. */
export type CertifyReply = { ok: true; thresholds: number[]; bound: number } | { ok: false; reason: string };

// Certification takes the better part of a second on thousands of samples: off the event loop
// that answers Classify calls.
parentPort!.on('message', ({ table, terms }: CertifyJob) => {
  let reply: CertifyReply;
  try {
    const found = certifyDisagreement(table, terms);
    reply = { ok: true, thresholds: found.thresholds, bound: found.certificate.bound };
  } catch (err) {
    reply = { ok: false, reason: (err as Error).message };
  }
  parentPort!.postMessage(reply);
});
