import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadTestSlice, slicePng } from '../cli/testSlice.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { cascadeConfig } from '../services/cascade/config.js';
import { EncoderGateway, type Job } from '../services/cascade/encoderGateway.js';
import { kserveTransport } from '../services/cascade/kserveTransport.js';
import { createGatewayMetrics } from '../services/cascade/metrics.js';
import { silentLogger } from '../services/common/logger.js';
import { StatusError } from '../services/common/statusError.js';
import { encoderConfig } from '../services/encoder/config.js';
import { type RunningEncoder, startEncoder } from '../services/encoder/server.js';
import { slowBatches } from '../harness/slowEncoder.js';

/** The real encoder on loopback, each batch held 300 ms, so that the gateway's queue fills. */
let bundle: Bundle;
let encoder: RunningEncoder;
let png: Buffer;

beforeAll(async () => {
  bundle = await loadBundle();
  png = await slicePng(await loadTestSlice(bundle), 0);
  const config = encoderConfig({ MRL_ENCODER_HOST: '127.0.0.1', MRL_ENCODER_PORT: '0', MRL_ENCODER_METRICS_PORT: '0' });
  encoder = await startEncoder(config, silentLogger, slowBatches(300));
});
afterAll(() => encoder.shutdown());

describe('the encoder gateway over the Open Inference Protocol', () => {
  it('refuses a job with a full queue before its transport decodes and preprocesses it', async () => {
    const target = `127.0.0.1:${encoder.port}`;
    // One input a call, one call in flight, two waiting.
    const config = cascadeConfig({ MRL_ENCODER_TARGET: target, MRL_ENCODER_BATCH: '1', MRL_ENCODER_CALLS_IN_FLIGHT: '1', MRL_ENCODER_QUEUE: '2' });
    const channel = { target, credentials: grpc.credentials.createInsecure(), channelOptions: {}, maxMessageBytes: config.maxMessageBytes, keepaliveMs: config.encoderKeepaliveMs };
    const transport = kserveTransport(channel, bundle, { name: bundle.name, version: '', maxImagePixels: 1 << 20 });
    const prepare = vi.spyOn(transport, 'prepare');
    const gateway = new EncoderGateway(transport, { target, breaker: config.breaker, queues: config.queues, embeddingDim: bundle.embeddingDim }, createGatewayMetrics(), silentLogger);
    try {
      const job = (): Job => ({ input: { image: png }, count: 1, dimension: bundle.embeddingDim, deadline: Date.now() + 20_000 });
      const submit = () => gateway.interactive.submit(job(), new AbortController().signal);
      // Until every job submitted so far is prepared and queued (or sent).
      const settle = async () => {
        await Promise.all(prepare.mock.results.map((r) => r.value));
        await new Promise((r) => setImmediate(r));
      };
      const running = submit();
      await settle();
      const waiting = [submit(), submit()];
      await settle();
      const refused = await Promise.all([submit(), submit(), submit()].map((p) => p.then(() => undefined, (e: unknown) => e)));
      for (const err of refused) {
        expect(err).toBeInstanceOf(StatusError);
        expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, message: 'cascade encoder queue is full (2 waiting); retry later' });
      }
      // Only the three admitted jobs were prepared, and each is answered with its embedding.
      expect(prepare).toHaveBeenCalledTimes(3);
      for (const rows of await Promise.all([running, ...waiting])) {
        expect(rows).toHaveLength(1);
        expect(rows[0]).toBeInstanceOf(Float32Array);
        expect((rows[0] as Float32Array).length).toBe(bundle.embeddingDim);
      }
    } finally {
      gateway.close();
    }
  });
});
