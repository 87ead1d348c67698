import { execFileSync } from 'node:child_process';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h2load } from '../bench/h2load.js';
import { classifierClient, classify } from '../cli/clients.js';
import { loadTestSlice, slicePng } from '../cli/testSlice.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { loadMrlProtos } from '../services/common/protos.js';
import { type Outcome, outcome } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';

const haveH2load = (() => {
  try {
    execFileSync('h2load', ['--version']);
    return true;
  } catch {
    return false;
  }
})();
if (!haveH2load) console.warn('overload-h2load.test.ts skipped: no h2load (Debian package nghttp2-client; .ci/run installs it)');

let encoder: ServiceProcess;
let cascade: ServiceProcess;
let message: Buffer;
let png: Buffer;

describe.skipIf(!haveH2load)('a flood of calls, from h2load, far past what the encoder can answer by their deadlines', () => {
  beforeAll(async () => {
    const bundle = await loadBundle();
    png = await slicePng(await loadTestSlice(bundle), 0);
    message = (loadMrlProtos().proto.mrl.v1.Classifier.service.Classify.requestSerialize as (r: object) => Buffer)({ image: png });
    // A slow model (20 ms a batch of at most 8) makes a few thousand streams a flood; the cascade
    // admits every stream, so its admission control, not HTTP/2's stream limit, does the refusing.
    encoder = await spawnService('encoder', { MRL_MAX_BATCH: '8' }, { slowBatchMs: 20 });
    cascade = await spawnService('cascade', { MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`, MRL_MAX_CONCURRENT_STREAMS: '1000' });
  });
  afterAll(() => killAll());

  it('is refused early with RESOURCE_EXHAUSTED, never opens the breaker, and the encoder keeps answering at its pace', async () => {
    const client = classifierClient(`127.0.0.1:${cascade.port}`);
    try {
      await classify(client, { image: png }); // connected, and the pace known
      const before = await scrape(cascade.metricsPort);
      const load = h2load({ origin: `http://127.0.0.1:${cascade.port}`, path: '/mrl.v1.Classifier/Classify', message, connections: 4, streams: 500, seconds: 4, warmupSeconds: 0, deadlineMs: 1000 });
      // Beside the flood, calls whose messages say what a refused caller should do.
      await new Promise((r) => setTimeout(r, 1500));
      const probes: Outcome[] = [];
      for (let i = 0; i < 20; i++) probes.push(await outcome((d) => classify(client, { image: png }, d.getTime() - Date.now()), 1000));
      await load;
      await new Promise((r) => setTimeout(r, 1200)); // calls in the cascade end, by their deadlines, and count
      const after = await scrape(cascade.metricsPort);
      const codes = Object.fromEntries(
        ['OK', 'RESOURCE_EXHAUSTED', 'CANCELLED', 'DEADLINE_EXCEEDED', 'UNAVAILABLE', 'INTERNAL'].map((c) => [c, delta(before, after, `mrl_cascade_requests_total{code="${c}"}`)]),
      );
      console.log('2,000 h2load streams, 1 s deadlines, against an encoder of about 400 images/s:', JSON.stringify(codes));
      expect(codes.OK).toBeGreaterThan(0);
      expect(codes.RESOURCE_EXHAUSTED).toBeGreaterThan(codes.OK!);
      expect({ UNAVAILABLE: codes.UNAVAILABLE, INTERNAL: codes.INTERNAL }).toEqual({ UNAVAILABLE: 0, INTERNAL: 0 });
      // A call admitted is answered by its deadline: a few may still miss it by a hair.
      expect(codes.DEADLINE_EXCEEDED).toBeLessThan(0.01 * codes.OK!);
      expect({
        opened: delta(before, after, 'mrl_cascade_breaker_events_total{event="open"}'),
        failed: delta(before, after, 'mrl_cascade_encoder_calls_total{outcome="encoder"}'),
      }).toEqual({ opened: 0, failed: 0 });
      const refused = probes.filter((o) => o.code === status.RESOURCE_EXHAUSTED);
      expect(refused.length).toBeGreaterThan(0);
      for (const o of refused) expect(o.details).toMatch(/^cascade encoder queue: .*; retry later$/);
      expect(cascade.exited() || encoder.exited()).toBe(false);
    } finally {
      client.close();
    }
  });
});
