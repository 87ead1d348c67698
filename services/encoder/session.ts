import * as ort from 'onnxruntime-node';
import type { Bundle } from '../common/bundle.js';
import type { Logger } from '../common/logger.js';

export type ExecutionProvider = 'cuda' | 'cpu';

export interface EncoderSessionOptions {
  /** In order of preference; `cpu` is always tried last. Default `['cpu']`. */
  executionProviders: ExecutionProvider[];
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose (default 0). */
  intraOpThreads: number;
}

/** The bundle's ONNX encoder: batches of preprocessed images in, full embeddings out. */
export class EncoderSession {
  readonly #session: ort.InferenceSession;

  private constructor(
    session: ort.InferenceSession,
    private readonly bundle: Bundle,
    /** The execution provider the session runs on. */
    readonly provider: ExecutionProvider,
  ) {
    this.#session = session;
  }

  /**
   * Loads the encoder on the first provider that works. CUDA needs onnxruntime-node's CUDA
   * binaries (installed with ONNXRUNTIME_NODE_INSTALL=cuda12) and a GPU; without them the
   * session falls back to CPU and says so in the log.
   */
  static async create(bundle: Bundle, options: EncoderSessionOptions, logger: Logger): Promise<EncoderSession> {
    const wanted = [...new Set<ExecutionProvider>([...options.executionProviders, 'cpu'])];
    for (const provider of wanted) {
      try {
        const session = await ort.InferenceSession.create(bundle.encoderPath, {
          executionProviders: [provider],
          graphOptimizationLevel: 'all',
          // onnxruntime's threads spin between runs by default; beside gRPC on a few cores that
          // spinning takes the CPU the event loop needs to decode requests and fill batches.
          extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
          ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
        });
        logger.info('encoder loaded', { model: bundle.id, execution_provider: provider });
        return new EncoderSession(session, bundle, provider);
      } catch (err) {
        if (provider === 'cpu') throw err;
        logger.warn(`execution provider ${provider} is not available; falling back to the next one`, {
          reason: (err as Error).message.split('\n')[0],
        });
      }
    }
    throw new Error('unreachable: cpu is always tried');
  }

  /** Runs `count` images (concatenated, count × H × W floats); returns count × d floats. */
  async run(pixels: Float32Array, count: number): Promise<Float32Array> {
    const { height, width, name } = this.bundle.input;
    const feeds = { [name]: new ort.Tensor('float32', pixels, [count, 1, height, width]) };
    const out = await this.#session.run(feeds);
    return out[this.bundle.outputName]!.data as Float32Array;
  }

  /** Encodes several single images in one run. */
  async encode(images: Float32Array[]): Promise<Float32Array[]> {
    const size = this.bundle.input.height * this.bundle.input.width;
    const batch = new Float32Array(images.length * size);
    images.forEach((img, i) => batch.set(img, i * size));
    const out = await this.run(batch, images.length);
    const d = this.bundle.embeddingDim;
    return images.map((_, i) => out.slice(i * d, (i + 1) * d));
  }

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}
