import { parentPort, workerData } from 'node:worker_threads';
import type { LogLevel, Logger } from '../common/logger.js';
import { status } from '@grpc/grpc-js';
import { StatusError } from '../common/statusError.js';
import { BundleError, readBundle } from '../../matryoshka/bundle.js';
import { channelCredentials, type ClientTls } from '../common/tls.js';
import { EncoderGateway, type EncoderGatewayOptions, type Job, type Rows } from './encoderGateway.js';
import { unavailable } from './encoderOutcome.js';
import { mrlTransport } from './encoderTransport.js';
import { kserveTransport } from './kserveTransport.js';
import { createGatewayMetrics } from './metrics.js';

/**
 * The encoder gateway on a thread of its own. The cascade's main thread takes and answers
 * Classify calls; under a flood of calls it spends whole event-loop turns on them, and an encoder
 * gateway there would send its calls and read their answers only once a turn, so the encoder
 * would idle while requests wait. Here the gateway keeps the encoder busy at its own pace.
 */

export interface EncoderWorkerData {
  gateway: EncoderGatewayOptions;
  /** The encoder channel: its target, TLS files and largest answer. */
  channel: { target: string; tls?: ClientTls; maxMessageBytes: number; keepaliveMs: number };
  /** The bundle the cascade's heads belong to. */
  modelDir: string;
  /** With `kserve-v2`, the server's model (its name defaults to the bundle's). */
  protocol: { kind: 'mrl' } | { kind: 'kserve-v2'; model?: string; version: string; maxImagePixels: number };
}

/** How often the cascade checks that a V2 server's model fits its heads, ms. */
const FIT_CHECK_MS = 1000;

export type Lane = 'interactive' | 'bulk';

/** A job for a lane, numbered by the main thread. */
export interface WireJob extends Job {
  id: number;
  lane: Lane;
}

/** A job's rows (`count` rows of `dimension` floats at `offset` in the message's `data`), failed rows among them, or its error. */
export interface WireResult {
  id: number;
  offset: number;
  count: number;
  dimension: number;
  /** Rows that failed, by index. */
  failed?: { index: number; code: number; message: string }[];
  /** The whole job failed. */
  error?: { code: number; message: string };
}

export type ToWorker = { kind: 'jobs'; jobs: WireJob[]; cancels: number[] } | { kind: 'metrics'; id: number } | { kind: 'close' };

export type FromWorker =
  | { kind: 'ready' }
  | { kind: 'results'; results: WireResult[]; data: Float32Array }
  | { kind: 'metrics'; id: number; text: string }
  | { kind: 'log'; level: LogLevel; msg: string; fields?: Record<string, unknown> }
  /** Whether the encoder fits the cascade's heads (a V2 server's metadata and readiness), and why not. */
  | { kind: 'fit'; unfit?: string };

/** An error as the main thread answers it: a StatusError's code and message, or INTERNAL. */
function wireError(err: unknown): { code: number; message: string } {
  if (err instanceof StatusError) return { code: err.code, message: err.message };
  return { code: status.INTERNAL, message: `internal error in the cascade's encoder thread: ${(err as Error)?.message ?? String(err)}` };
}

if (parentPort) {
  const port = parentPort;
  const post = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
  const data = workerData as EncoderWorkerData;
  const log = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => post({ kind: 'log', level, msg, fields });
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  // Buffers arrive as plain Uint8Arrays across threads; grpc-js wants Buffers.
  const tls = data.channel.tls;
  const asBuffer = (b: Uint8Array | undefined) => b && Buffer.from(b);
  const { credentials, options: channelOptions } = channelCredentials(tls && { ...tls, ca: asBuffer(tls.ca)!, cert: asBuffer(tls.cert), key: asBuffer(tls.key) });
  const channel = { ...data.channel, credentials, channelOptions };
  // The heads are the main thread's: this thread needs only the encoder's side of the bundle.
  const bundle = await readBundle(data.modelDir, { withHeads: false });
  if (!bundle.input) throw new BundleError(bundle.dir, 'has no encoder: the cascade starts no encoder gateway for it');
  const transport =
    data.protocol.kind === 'mrl'
      ? mrlTransport(channel, { model: bundle.id, embeddingDim: bundle.embeddingDim, inputDims: bundle.input.dims })
      : kserveTransport(channel, bundle, { name: data.protocol.model ?? bundle.name, version: data.protocol.version, maxImagePixels: data.protocol.maxImagePixels });
  const metrics = createGatewayMetrics();
  const gateway = new EncoderGateway(transport, data.gateway, metrics, logger);
  // A V2 server must show that it serves the heads' model before the cascade serves, and go on showing it.
  let fitCheck: NodeJS.Timeout | undefined;
  let unfit: string | undefined;
  let closed = false;
  const checkFit = transport.unfit?.bind(transport);
  if (checkFit) {
    const check = async () => {
      unfit = await checkFit();
      // A check still in flight when the thread closes must not schedule another.
      if (closed) return;
      post({ kind: 'fit', unfit });
      fitCheck = setTimeout(() => void check(), FIT_CHECK_MS);
    };
    await check();
  }

  /** Jobs the main thread still waits for: aborted when it cancels them. */
  const live = new Map<number, AbortController>();
  let done: { result: WireResult; rows?: Rows }[] = [];
  /** Once a turn, every result that came in, in one message whose floats move rather than copy. */
  const flush = () => {
    const batch = done;
    done = [];
    let floats = 0;
    for (const { result } of batch) {
      result.offset = floats;
      floats += result.count * result.dimension;
    }
    const data = new Float32Array(floats);
    for (const { result, rows } of batch)
      rows?.forEach((row, i) => {
        if (row instanceof StatusError) (result.failed ??= []).push({ index: i, ...wireError(row) });
        else data.set(row.subarray(0, result.dimension), result.offset + i * result.dimension);
      });
    post({ kind: 'results', results: batch.map((b) => b.result), data }, [data.buffer as ArrayBuffer]);
  };
  const finish = (entry: { result: WireResult; rows?: Rows }) => {
    if (!live.delete(entry.result.id)) return; // cancelled: no one waits
    if (done.push(entry) === 1) setImmediate(flush);
  };

  port.on('message', (message: ToWorker) => {
    switch (message.kind) {
      case 'jobs':
        for (const id of message.cancels) live.get(id)?.abort(new StatusError(status.CANCELLED, 'call cancelled by the client'));
        for (const { id, lane, ...job } of message.jobs) {
          const gone = new AbortController();
          live.set(id, gone);
          // Never an answer from a model the heads are not for.
          if (unfit) {
            finish({ result: { id, offset: 0, count: 0, dimension: 0, error: wireError(unavailable(unfit)) } });
            continue;
          }
          gateway[lane].submit(job, gone.signal).then(
            (rows) => finish({ result: { id, offset: 0, count: rows.length, dimension: job.dimension }, rows }),
            (err: unknown) => finish({ result: { id, offset: 0, count: 0, dimension: 0, error: wireError(err) } }),
          );
        }
        break;
      case 'metrics':
        void metrics.registry.metrics().then((text) => post({ kind: 'metrics', id: message.id, text }));
        break;
      case 'close':
        closed = true;
        clearTimeout(fitCheck);
        gateway.close();
        port.close();
        break;
    }
  });
  post({ kind: 'ready' });
}
