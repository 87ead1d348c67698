import { Cascade } from '../matryoshka/cascade.js';
import type { LogitTable } from '../matryoshka/calibration.js';
import { type Bundle, pixelsToInput } from '../matryoshka/bundle.js';
import { silentLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';
import type { LabelledImages } from './fashionMnist.js';
import { progressBar } from './progress.js';

const BATCH = 250;

/**
 * Embeds every image in-process with the bundle's encoder (the service's session code), then
 * computes every cascade stage's raw logits on each embedding: the table that temperature
 * fitting, calibration and evaluation work from.
 */
export async function buildLogitTable(bundle: Bundle, data: LabelledImages, label: string, quiet: boolean): Promise<LogitTable> {
  const session = await EncoderSession.create(bundle, { executionProviders: ['cpu'], intraOpThreads: 0 }, silentLogger);
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  const K = bundle.nesting.length;
  const C = bundle.labels.length;
  const logits = new Float64Array(data.count * K * C);
  const bar = progressBar(label, data.count, quiet);
  const px = bundle.input.height * bundle.input.width;
  const d = bundle.embeddingDim;
  try {
    for (let first = 0; first < data.count; first += BATCH) {
      const n = Math.min(BATCH, data.count - first);
      const out = await session.run(pixelsToInput(data.images.subarray(first * px, (first + n) * px), bundle.input), n);
      for (let i = 0; i < n; i++)
        cascade.logits(out.subarray(i * d, (i + 1) * d)).forEach((l, k) => logits.set(l, ((first + i) * K + k) * C));
      bar.tick(first + n);
    }
  } finally {
    bar.end();
    await session.dispose();
  }
  return { n: data.count, dims: bundle.nesting, classes: C, logits, labels: data.labels };
}
