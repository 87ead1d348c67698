import { imageSize } from '../common/tensorChecks.js';
import { status } from '@grpc/grpc-js';
import type { Worker } from 'node:worker_threads';
import type { Bundle } from '../../matryoshka/bundle.js';
import type { Logger } from '../common/logger.js';
import { startModuleWorker } from '../common/runtime.js';
import { StatusError } from '../common/statusError.js';
import type { RunReply, RunRequest, WorkerReady, WorkerSetup } from './inferenceWorker.js';

export type ExecutionProvider = 'cuda' | 'cpu';

export interface EncoderSessionOptions {
  /** In order of preference; `cpu` is always tried last. Default `['cpu']`. */
  executionProviders: ExecutionProvider[];
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose (default 0). */
  intraOpThreads: number;
}


/**
 * The bundle's ONNX encoder, run on a worker thread (see inferenceWorker.ts): batches of
 * preprocessed images in, full embeddings out. Runs are answered in the order they were made.
 */
export class EncoderSession {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (out: Float32Array) => void; reject: (err: unknown) => void }>();
  #nextId = 0;
  /** Set once the worker has died or the session was disposed: every run after fails with it. */
  #dead: StatusError | undefined;
  readonly #onDeath = new Set<(err: StatusError) => void>();
  #diedOfItself = false;

  private constructor(
    worker: Worker,
    private readonly bundle: Bundle,
    /** The execution provider the session runs on. */
    readonly provider: ExecutionProvider,
    logger: Logger,
  ) {
    this.#worker = worker;
    worker.on('message', (reply: RunReply) => {
      const p = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if ('error' in reply) p?.reject(new Error(`onnxruntime run failed: ${reply.error}`));
      else p?.resolve(reply.embeddings);
    });
    const die = (reason: string) => {
      if (this.#dead) return;
      logger.error('inference worker stopped; encoding fails from now on', { reason });
      this.#diedOfItself = true;
      this.#stop(reason);
      for (const listener of this.#onDeath) listener(this.#dead!);
    };
    worker.on('error', (err) => die(err.message));
    worker.on('exit', (code) => die(`inference worker exited with code ${code}`));
  }

  /**
   * Loads the encoder on the first provider that works. CUDA needs onnxruntime-node's CUDA
   * binaries (installed with ONNXRUNTIME_NODE_INSTALL=cuda12) and a GPU; without them the
   * session falls back to CPU and says so in the log.
   */
  static async create(bundle: Bundle, options: EncoderSessionOptions, logger: Logger): Promise<EncoderSession> {
    const setup: WorkerSetup = {
      encoderPath: bundle.encoderPath,
      inputName: bundle.input.name,
      outputName: bundle.outputName,
      dims: bundle.input.dims,
      executionProviders: options.executionProviders,
      intraOpThreads: options.intraOpThreads,
    };
    const worker = startModuleWorker('./inferenceWorker', import.meta.url, { workerData: setup });
    const ready = await new Promise<WorkerReady>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`inference worker exited with code ${code} before loading the model`)));
    });
    worker.removeAllListeners('exit');
    worker.removeAllListeners('error');
    if (ready.kind === 'failed') {
      await worker.terminate();
      throw new Error(ready.message);
    }
    for (const { provider, reason } of ready.skipped)
      logger.warn(`execution provider ${provider} is not available; falling back to the next one`, { reason });
    logger.info('encoder loaded', { model: bundle.id, execution_provider: ready.provider });
    return new EncoderSession(worker, bundle, ready.provider, logger);
  }

  /** Runs `count` images (concatenated, count × H × W floats; their buffer moves to the worker); returns count × d floats. */
  run(pixels: Float32Array, count: number): Promise<Float32Array> {
    if (this.#dead) return Promise.reject(this.#dead);
    // Only a buffer the array spans alone may move; a view into a larger one is copied.
    if (pixels.byteOffset !== 0 || pixels.byteLength !== pixels.buffer.byteLength) pixels = pixels.slice();
    const id = this.#nextId++;
    return new Promise<Float32Array>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, pixels, count } satisfies RunRequest, [pixels.buffer as ArrayBuffer]);
    });
  }

  /** Encodes several single images in one run. */
  async encode(images: Float32Array[]): Promise<Float32Array[]> {
    const size = imageSize(this.bundle.input);
    const batch = new Float32Array(images.length * size);
    images.forEach((img, i) => batch.set(img, i * size));
    const out = await this.run(batch, images.length);
    const d = this.bundle.embeddingDim;
    return images.map((_, i) => out.subarray(i * d, (i + 1) * d));
  }

  /** Calls `listener` once the worker has died (at once if it already has; not on dispose): the session cannot encode any more. */
  onDeath(listener: (err: StatusError) => void): void {
    if (this.#dead && this.#diedOfItself) listener(this.#dead);
    else this.#onDeath.add(listener);
  }

  #stop(reason: string): void {
    this.#dead = new StatusError(status.UNAVAILABLE, `the encoder model is not running (${reason})`);
    for (const p of this.#pending.values()) p.reject(this.#dead);
    this.#pending.clear();
  }

  async dispose(): Promise<void> {
    if (this.#dead) return;
    this.#stop('the encoder is shutting down');
    this.#worker.removeAllListeners('exit');
    this.#worker.removeAllListeners('error');
    await this.#worker.terminate();
  }
}
