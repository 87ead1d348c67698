import * as ort from 'onnxruntime-node';
import type { Bundle } from '../matryoshka/bundle.js';
import { imageSize } from '../services/common/tensorChecks.js';

export interface RawPoint {
  batch: number;
  images_per_second: number;
}

/**
 * onnxruntime-node in-process, one batch after another, per batch size. By default with its own
 * default (spinning) thread pool: the compute limit. `options` measures another session, such as
 * the one the encoder serves with (spinning off, to share the cores).
 */
export async function rawEncoderThroughput(
  bundle: Bundle,
  batches: number[],
  secondsEach: number,
  options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' },
): Promise<RawPoint[]> {
  const session = await ort.InferenceSession.create(bundle.encoderPath, options);
  const { name, dims } = bundle.input;
  const out: RawPoint[] = [];
  try {
    for (const batch of batches) {
      const feeds = { [name]: new ort.Tensor('float32', new Float32Array(batch * imageSize(bundle.input)).map((_, i) => (i % 255) / 255), [batch, ...dims]) };
      await session.run(feeds); // warm-up
      let images = 0;
      const start = performance.now();
      while (performance.now() - start < secondsEach * 1000) {
        await session.run(feeds);
        images += batch;
      }
      out.push({ batch, images_per_second: images / ((performance.now() - start) / 1000) });
    }
  } finally {
    await session.release();
  }
  return out;
}
