import { Cascade } from '../matryoshka/cascade.js';
import type { LogitTable } from '../matryoshka/calibration.js';
import { type Bundle, pixelsToInput } from '../matryoshka/bundle.js';
import { silentLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';
import type { LabelledImages } from './fashionMnist.js';
import { progressBar } from './progress.js';

const BATCH = 250;

/** Every stage's raw logits of full-length embeddings (rows × d, row-major): rows × stages × classes, as a logit table holds them. */
export function stageLogits(cascade: Cascade, embeddings: Float32Array): Float64Array {
  const d = cascade.nesting[cascade.nesting.length - 1]!;
  const K = cascade.nesting.length;
  const C = cascade.classes;
  const logits = new Float64Array((embeddings.length / d) * K * C);
  for (let i = 0; i < embeddings.length / d; i++) cascade.logits(embeddings.subarray(i * d, (i + 1) * d)).forEach((l, k) => logits.set(l, (i * K + k) * C));
  return logits;
}

/**
 * Embeds every image in-process with the bundle's encoder (the service's session code), then
 * computes every cascade stage's raw logits on each embedding: the table that temperature
 * fitting, calibration and evaluation work from.
 */
export async function buildLogitTable(bundle: Bundle, data: LabelledImages, label: string, quiet: boolean): Promise<LogitTable> {
  const session = await EncoderSession.create(bundle, { executionProviders: ['cpu'], intraOpThreads: 0 }, silentLogger);
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads, bundle.normalization);
  const K = bundle.nesting.length;
  const C = bundle.labels.length;
  const logits = new Float64Array(data.count * K * C);
  const bar = progressBar(label, data.count, quiet);
  const px = bundle.input.height * bundle.input.width;
  try {
    for (let first = 0; first < data.count; first += BATCH) {
      const n = Math.min(BATCH, data.count - first);
      const out = await session.run(pixelsToInput(data.images.subarray(first * px, (first + n) * px), bundle.input), n);
      logits.set(stageLogits(cascade, out), first * K * C);
      bar.tick(first + n);
    }
  } finally {
    bar.end();
    await session.dispose();
  }
  return { n: data.count, dims: bundle.nesting, classes: C, logits, labels: data.labels };
}
