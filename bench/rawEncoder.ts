import type { Bundle } from '../services/common/bundle.js';
import { silentLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';

export interface RawPoint {
  batch: number;
  images_per_second: number;
}

/** The compute limit: onnxruntime-node in-process, one batch after another, per batch size. */
export async function rawEncoderThroughput(bundle: Bundle, batches: number[], secondsEach: number): Promise<RawPoint[]> {
  const session = await EncoderSession.create(bundle, { executionProviders: ['cpu'], intraOpThreads: 0 }, silentLogger);
  const px = bundle.input.height * bundle.input.width;
  const out: RawPoint[] = [];
  try {
    for (const batch of batches) {
      const input = new Float32Array(batch * px).map((_, i) => (i % 255) / 255);
      await session.run(input, batch); // warm-up
      let images = 0;
      const start = performance.now();
      while (performance.now() - start < secondsEach * 1000) {
        await session.run(input, batch);
        images += batch;
      }
      out.push({ batch, images_per_second: images / ((performance.now() - start) / 1000) });
    }
  } finally {
    await session.dispose();
  }
  return out;
}
