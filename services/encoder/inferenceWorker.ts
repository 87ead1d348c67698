/**
 * The onnxruntime session, on a worker thread. onnxruntime-node runs a session synchronously on
 * the thread that calls it, so on the service's own thread every batch would stop gRPC from
 * reading the next requests and writing the last answers; here the two overlap.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { ExecutionProvider } from './session.js';
import { servingSessionOptions } from './sessionOptions.js';

export interface WorkerSetup {
  encoderPath: string;
  inputName: string;
  outputName: string;
  /** One image's dimensions after the batch axis, as the model takes them. */
  dims: number[];
  executionProviders: ExecutionProvider[];
  intraOpThreads: number;
}

/** Worker to session: the session loaded (with the providers that failed first), or could not load. */
export type WorkerReady = { kind: 'ready'; provider: ExecutionProvider; skipped: { provider: ExecutionProvider; reason: string }[] } | { kind: 'failed'; message: string };
export interface RunRequest {
  id: number;
  pixels: Float32Array;
  count: number;
}
export type RunReply = { id: number; embeddings: Float32Array } | { id: number; error: string };

async function load(setup: WorkerSetup): Promise<{ session: ort.InferenceSession; ready: WorkerReady }> {
  const skipped: { provider: ExecutionProvider; reason: string }[] = [];
  for (const provider of [...new Set<ExecutionProvider>([...setup.executionProviders, 'cpu'])]) {
    try {
      const session = await ort.InferenceSession.create(setup.encoderPath, { ...servingSessionOptions(setup.intraOpThreads), executionProviders: [provider] });
      return { session, ready: { kind: 'ready', provider, skipped } };
    } catch (err) {
      if (provider === 'cpu') throw err;
      skipped.push({ provider, reason: (err as Error).message.split('\n')[0]! });
    }
  }
  throw new Error('unreachable: cpu is always tried');
}

const setup = workerData as WorkerSetup;
const port = parentPort!;
try {
  const { session, ready } = await load(setup);
  port.on('message', async ({ id, pixels, count }: RunRequest) => {
    try {
      const feeds = { [setup.inputName]: new ort.Tensor('float32', pixels, [count, ...setup.dims]) };
      const out = (await session.run(feeds))[setup.outputName]!.data as Float32Array;
      port.postMessage({ id, embeddings: out } satisfies RunReply, [out.buffer as ArrayBuffer]);
    } catch (err) {
      port.postMessage({ id, error: (err as Error).message } satisfies RunReply);
    }
  });
  port.postMessage(ready);
} catch (err) {
  port.postMessage({ kind: 'failed', message: (err as Error).message } satisfies WorkerReady);
}
