import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The encoder's metrics, on a registry of its own with the default process metrics. */
export function createEncoderMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'mrl_encoder_requests_total',
      help: 'Inputs to encode (an Encode call, or one input of an EncodeBatch call) by gRPC status code',
      labelNames: ['code'],
      registers,
    }),
    requestSeconds: new Histogram({ name: 'mrl_encoder_request_duration_seconds', help: 'Encode and EncodeBatch call latency', buckets: SECONDS, registers }),
    batchRequests: new Counter({ name: 'mrl_encoder_batch_requests_total', help: 'EncodeBatch calls by gRPC status code', labelNames: ['code'], registers }),
    batchSize: new Histogram({
      name: 'mrl_encoder_batch_size',
      help: 'Images per encoder run',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    queueWait: new Histogram({ name: 'mrl_encoder_queue_wait_seconds', help: 'Time an image waits for its batch', buckets: SECONDS, registers }),
    inferenceSeconds: new Histogram({ name: 'mrl_encoder_inference_seconds', help: 'onnxruntime time per batch', buckets: SECONDS, registers }),
    queueDepth: new Gauge({ name: 'mrl_encoder_queue_depth', help: 'Images waiting for a batch', registers }),
    info: new Gauge({ name: 'mrl_encoder_info', help: 'The loaded model and execution provider (value 1)', labelNames: ['model', 'execution_provider'], registers }),
  };
}

export type EncoderMetrics = ReturnType<typeof createEncoderMetrics>;
