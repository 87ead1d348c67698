import * as grpc from '@grpc/grpc-js';
import type { EncodeBatchResponse__Output } from '../common/generated/mrl/v1/EncodeBatchResponse.js';
import { loadMrlProtos } from '../common/protos.js';
import type { Job, Rows } from './encoderGateway.js';
import { type EncoderFailure, encoderFailure, unavailable } from './encoderOutcome.js';

/** How the gateway reaches one kind of encoder server: mrl.v1.Encoder, or any Open Inference Protocol server. */
export interface EncoderTransport {
  /** A job as it will queue: checked and turned into what this protocol sends (a StatusError for bad input). */
  prepare(job: Job): Promise<Job> | Job;
  /**
   * One call carrying `jobs`' `count` inputs, asking for rows of `dimension` floats (0: the full
   * size), until `deadline` (ms since the epoch): per input its row or its error, or the
   * EncoderFailure that failed the call; once `cancel` aborts, the call is cancelled and fails with its reason.
   */
  call(jobs: Job[], count: number, dimension: number, deadline: number, cancel: AbortSignal): Promise<Rows>;
  /** Why the encoder cannot serve this cascade's heads now (another model, another size, not ready), if it cannot. */
  unfit?(): Promise<string | undefined>;
  close(): void;
}

export interface ChannelOptions {
  /** `host:port` or `dns:///name:port` (every address the name resolves to, a headless Service's say): balanced round robin per call. */
  target: string;
  credentials: grpc.ChannelCredentials;
  /** Extra channel options, such as the TLS name override that goes with `credentials`. */
  channelOptions: grpc.ChannelOptions;
  /** Largest response accepted, bytes. */
  maxMessageBytes: number;
  /** How often each connection is pinged while calls are in flight, ms. */
  keepaliveMs: number;
}

/**
 * The gRPC channel options every transport's channel gets. A replica that hangs with its
 * connection open (stopped, or cut off by a partition) answers no ping: its connection closes
 * within a ping and a timeout, and round robin sends its calls to the others. A restarted
 * replica is redialled within 2 s.
 */
export function channelSettings(options: ChannelOptions): grpc.ChannelOptions {
  return {
    'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.keepalive_time_ms': options.keepaliveMs,
    'grpc.keepalive_timeout_ms': Math.min(1000, options.keepaliveMs),
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 2000,
    ...options.channelOptions,
  };
}

/**
 * A unary call as a promise that fails with `cancel`'s reason once it aborts (and cancels the
 * call), else with the encoder's status as `classify` (by default encoderOutcome.ts) takes it.
 */
export function unaryCall<T>(
  start: (done: (err: grpc.ServiceError | null, res?: T) => void) => grpc.ClientUnaryCall,
  deadline: number,
  cancel: AbortSignal,
  classify: (err: grpc.ServiceError, call: { sentAt: number; deadline: number }) => EncoderFailure = encoderFailure,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const sentAt = Date.now();
    const onCancel = () => {
      reject(cancel.reason);
      call.cancel();
    };
    const call = start((err, res) => {
      cancel.removeEventListener('abort', onCancel);
      if (err) reject(classify(err, { sentAt, deadline }));
      else resolve(res!);
    });
    if (cancel.aborted) onCancel();
    else cancel.addEventListener('abort', onCancel, { once: true });
  });
}

/** Splits EncodeBatch's packed float32 rows; failed inputs get their error instead. */
function batchRows(res: EncodeBatchResponse__Output, count: number): Rows {
  // Copy into an aligned buffer: the received bytes may start at any offset.
  const all = new Float32Array(new Uint8Array(res.embeddings).buffer);
  const rows: Rows = Array.from({ length: count }, (_, i) => all.subarray(i * res.dimension, (i + 1) * res.dimension));
  for (const e of res.errors) rows[e.index] = encoderFailure({ code: e.code, details: e.message });
  return rows;
}

/**
 * The encoder's failure an answer shows, if any: it comes from another model, its rows are not
 * `count` rows of the size asked for (`wire` 0: the full size), or every input failed for the
 * encoder's own reasons (its model stopped, say), whatever the call's status.
 */
function answerFailure(res: EncodeBatchResponse__Output, count: number, wire: number, expect: { model: string; embeddingDim: number }): EncoderFailure | undefined {
  if (res.model !== expect.model) return unavailable(`it serves ${res.model}, and this cascade's heads are for ${expect.model}`);
  const dimension = wire || expect.embeddingDim;
  if (res.dimension !== dimension || res.embeddings.length !== count * dimension * 4)
    return unavailable(`it answered ${res.embeddings.length} bytes in rows of ${res.dimension} for ${count} inputs of dimension ${dimension}`);
  if (count === 0 || res.errors.length < count) return undefined;
  const failures = res.errors.map((e) => encoderFailure({ code: e.code, details: e.message }));
  return failures.every((f) => f.party === 'encoder') ? failures[0] : undefined;
}

/** mrl.v1.Encoder: inputs go as they came (the encoder checks and decodes them), packed images as one raw float32 tensor. */
export function mrlTransport(options: ChannelOptions, expect: { model: string; embeddingDim: number; inputDims: number[] }): EncoderTransport {
  const client = new (loadMrlProtos().proto.mrl.v1.Encoder)(options.target, options.credentials, channelSettings(options));
  return {
    prepare: (job) => job,
    call: async (jobs, count, dimension, deadline, cancel) => {
      const packed = jobs[0]!.images;
      const request = packed
        ? { images: { shape: [count, ...expect.inputDims], raw: Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength) }, dimension }
        : { inputs: jobs.map((j) => j.input!), dimension };
      const res = await unaryCall<EncodeBatchResponse__Output>((done) => client.EncodeBatch(request, { deadline }, done), deadline, cancel);
      const failed = answerFailure(res, count, dimension, expect);
      if (failed) throw failed;
      return batchRows(res, count);
    },
    close: () => client.close(),
  };
}
