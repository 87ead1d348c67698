import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Breaker states as `mrl_cascade_breaker_state` reports them. */
export const BREAKER_STATE = { closed: 0, half_open: 1, open: 2 } as const;

/** The cascade's metrics, on a registry of its own with the default process metrics. */
export function createCascadeMetrics(nesting: readonly number[]) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({ name: 'mrl_cascade_requests_total', help: 'Classify requests (alone or in a ClassifyBatch) by gRPC status code', labelNames: ['code'], registers }),
    requestSeconds: new Histogram({ name: 'mrl_cascade_request_duration_seconds', help: 'Classify call latency', buckets: SECONDS, registers }),
    batchRequests: new Counter({ name: 'mrl_cascade_batch_requests_total', help: 'ClassifyBatch calls by gRPC status code (their items count in mrl_cascade_requests_total)', labelNames: ['code'], registers }),
    batchRequestSeconds: new Histogram({ name: 'mrl_cascade_batch_request_duration_seconds', help: 'ClassifyBatch call latency', buckets: SECONDS, registers }),
    dimensionUsed: new Histogram({
      name: 'mrl_cascade_dimension_used',
      help: 'Prefix size that answered each successful Classify; sum/count is the average dimension used',
      buckets: [...nesting],
      registers,
    }),
    exits: new Counter({ name: 'mrl_cascade_exits_total', help: 'Successful Classify calls by the stage (dimension) that answered', labelNames: ['dimension'], registers }),
    escalations: new Counter({ name: 'mrl_cascade_escalations_total', help: 'Stages that were not confident and escalated, by their dimension', labelNames: ['dimension'], registers }),
    inputs: new Counter({ name: 'mrl_cascade_inputs_total', help: 'Classify calls by input kind (image, tensor, embedding)', labelNames: ['input'], registers }),
    threshold: new Gauge({ name: 'mrl_cascade_threshold', help: 'Current threshold per stage', labelNames: ['dimension'], registers }),
    shadow: new Counter({
      name: 'mrl_cascade_shadow_total',
      help: 'Shadow-sampled cascade answers (MRL_SHADOW_RATE) by the stage that answered and whether the full size agreed',
      labelNames: ['dimension', 'agreed'],
      registers,
    }),
    certificateEpsilon: new Gauge({ name: 'mrl_cascade_certificate_epsilon', help: 'Risk bound the served thresholds are certified at (absent: uncertified)', labelNames: ['risk'], registers }),
    certificateDelta: new Gauge({ name: 'mrl_cascade_certificate_delta', help: 'Chance the served certificate may fail (absent: uncertified)', labelNames: ['risk'], registers }),
    thresholdReloads: new Counter({ name: 'mrl_cascade_threshold_reloads_total', help: 'Threshold changes by result: ok (file reloaded), error (file unreadable or invalid), wrong_model (file calibrated for another model), recertified (on shadow samples), not_certified (re-certification found none)', labelNames: ['result'], registers }),
  };
}

export type CascadeMetrics = ReturnType<typeof createCascadeMetrics>;

/**
 * The encoder gateway's metrics, on a registry of their own: the gateway runs on a thread of its
 * own, and the cascade's /metrics appends them (see encoderThread.ts).
 */
export function createGatewayMetrics() {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    encoderBatchSize: new Histogram({
      name: 'mrl_cascade_encoder_batch_size',
      help: 'Inputs (or packed images) per EncodeBatch call to the encoder (concurrent Classify calls and ClassifyBatch items share calls)',
      // Up to MRL_ENCODER_BATCH's largest value.
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
      registers,
    }),
    breakerState: new Gauge({ name: 'mrl_cascade_breaker_state', help: 'Encoder circuit breaker: 0 closed, 1 half-open, 2 open', registers }),
    breakerEvents: new Counter({
      name: 'mrl_cascade_breaker_events_total',
      help: 'Encoder circuit breaker events: open, halfOpen, close, reject (a call refused while open); success and failure count encoder calls',
      labelNames: ['event'],
      registers,
    }),
    encoderCalls: new Counter({
      name: 'mrl_cascade_encoder_calls_total',
      help: "EncodeBatch calls by outcome: ok, encoder (its failure, counted by the breaker), caller (bad input), backpressure (the encoder's RESOURCE_EXHAUSTED), cascade (a timeout the cascade saw late, too busy to tell), breaker_open (not sent)",
      labelNames: ['outcome'],
      registers,
    }),
    encoderRefusals: new Counter({
      name: 'mrl_cascade_encoder_refusals_total',
      help: 'Requests refused with RESOURCE_EXHAUSTED before reaching the encoder, by queue (interactive, bulk) and reason: queue_full, expected_wait (admission: the wait would pass the deadline), shed (queued, it could no longer be answered in time)',
      labelNames: ['queue', 'reason'],
      registers,
    }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
