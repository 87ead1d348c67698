import { Cascade } from '../services/cascade/cascade.js';
import type { StageTable } from '../services/cascade/calibration.js';
import { type Bundle, pixelsToInput } from '../services/common/bundle.js';
import { silentLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';
import type { LabelledImages } from './fashionMnist.js';
import { progressBar } from './progress.js';

const BATCH = 250;

/**
 * Embeds every image in-process with the bundle's encoder (the service's session code), then runs
 * every cascade stage on each embedding: the table calibration and evaluation work from.
 */
export async function buildStageTable(bundle: Bundle, data: LabelledImages, label: string, quiet: boolean): Promise<StageTable> {
  const session = await EncoderSession.create(bundle, { executionProviders: ['cpu'], intraOpThreads: 0 }, silentLogger);
  const cascade = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  const K = bundle.nesting.length;
  const top = new Float64Array(data.count * K);
  const classIndex = new Int32Array(data.count * K);
  const bar = progressBar(label, data.count, quiet);
  const px = bundle.input.height * bundle.input.width;
  const d = bundle.embeddingDim;
  try {
    for (let first = 0; first < data.count; first += BATCH) {
      const n = Math.min(BATCH, data.count - first);
      const out = await session.run(pixelsToInput(data.images.subarray(first * px, (first + n) * px), bundle.input), n);
      for (let i = 0; i < n; i++) {
        cascade.allStages(out.subarray(i * d, (i + 1) * d)).forEach((s, k) => {
          top[(first + i) * K + k] = s.topProbability;
          classIndex[(first + i) * K + k] = s.classIndex;
        });
      }
      bar.tick(first + n);
    }
  } finally {
    bar.end();
    await session.dispose();
  }
  return { n: data.count, dims: bundle.nesting, top, classIndex, labels: data.labels };
}
