import * as grpc from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cascade } from '../matryoshka/cascade.js';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, encode, encoderClient, float32Bytes, sliceTensor } from '../cli/clients.js';
import type { ClassifierClient } from '../services/common/generated/mrl/v1/Classifier.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import type { EncodeRequest } from '../services/common/generated/mrl/v1/EncodeRequest.js';
import type { EncoderClient } from '../services/common/generated/mrl/v1/Encoder.js';
import { loadTestSlice, slicePixels, type TestSlice } from '../cli/testSlice.js';
import { peakRssBytes } from '../bench/procStats.js';
import { healthCheck } from '../harness/health.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';
import { type HostileCase, hostileCases, type ImageSamples, pngDeclaring, pngPaddedTo } from './helpers/hostile.js';

/** Small enough that an oversized message is cheap to build; large enough for every valid request. */
const MAX_MESSAGE_BYTES = 256 * 1024;
/** The encoder's default MRL_MAX_IMAGE_PIXELS. */
const MAX_IMAGE_PIXELS = 2048 * 2048;
const RUNS = 1200;

let bundle: Bundle;
let slice: TestSlice;
let encoder: ServiceProcess;
let cascade: ServiceProcess;
let classifier: ClassifierClient;
let encoderCli: EncoderClient;
let images: ImageSamples;
/** A slice image that every stage labels correctly, as a PNG. */
let easyPng: Buffer;
let easyLabel: number;

const gray = (pixels: Uint8Array, size = 28) => sharp(Buffer.from(pixels), { raw: { width: size, height: size, channels: 1 } });

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  const env = { MRL_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) };
  encoder = await spawnService('encoder', env);
  cascade = await spawnService('cascade', { ...env, MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}` });
  classifier = classifierClient(`127.0.0.1:${cascade.port}`);
  encoderCli = encoderClient(`127.0.0.1:${encoder.port}`);

  const samples = [0, 1, 2].map((i) => slicePixels(slice, i));
  const big = await gray(samples[0]!).resize(300, 300).raw().toBuffer();
  images = {
    png: [...(await Promise.all(samples.map((p) => gray(p).png().toBuffer()))), await gray(big, 300).png().toBuffer()],
    jpeg: [...(await Promise.all(samples.map((p) => gray(p).jpeg().toBuffer()))), await gray(big, 300).jpeg().toBuffer()],
    others: [
      { format: 'gif', bytes: await gray(samples[0]!).gif().toBuffer() },
      { format: 'webp', bytes: await gray(samples[0]!).webp().toBuffer() },
      { format: 'tiff', bytes: await gray(samples[0]!).tiff().toBuffer() },
      { format: 'heif', bytes: await gray(samples[0]!).avif().toBuffer() },
      { format: 'svg', bytes: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/></svg>') },
    ],
  };

  const stages = new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  for (let i = 0; ; i++) {
    const tensor = sliceTensor(slice, i, bundle);
    const { embedding } = await encode(encoderCli, { tensor });
    if (stages.allStages(Float32Array.from(embedding)).every((s) => s.classIndex === slice.labels[i])) {
      easyPng = await gray(slicePixels(slice, i)).png().toBuffer();
      easyLabel = slice.labels[i]!;
      break;
    }
  }
});
afterAll(async () => {
  classifier.close();
  encoderCli.close();
  await killAll();
});

/** Sends a case to its service; resolves with the error it got (or fails the test on a success). */
async function send(c: HostileCase): Promise<ServiceError> {
  const call =
    c.target === 'cascade'
      ? classify(classifier, c.request as ClassifyRequest, 10_000)
      : encode(encoderCli, c.request as EncodeRequest, 10_000);
  return call.then(
    () => {
      throw new Error(`${c.kind}: expected an error, got an answer`);
    },
    (err: ServiceError) => err,
  );
}

const bothServing = async () =>
  (await healthCheck(cascade.port, 'mrl.v1.Classifier')) === 'SERVING' && (await healthCheck(encoder.port, 'mrl.v1.Encoder')) === 'SERVING';

describe('hostile input', () => {
  it(`a generated corpus of ${RUNS} malformed requests: each refused with a precise status and message, health SERVING throughout`, async () => {
    const cascadeBefore = await scrape(cascade.metricsPort);
    const encoderBefore = await scrape(encoder.metricsPort);
    const kinds = new Map<string, number>();
    const sent = { cascadeInvalid: 0, encoderInvalid: 0, oversized: 0 };
    let n = 0;
    await fc.assert(
      fc.asyncProperty(hostileCases(bundle, images, MAX_MESSAGE_BYTES, MAX_IMAGE_PIXELS), async (c) => {
        const err = await send(c);
        expect(err.code, `${c.kind}: ${err.details}`).toBe(c.code);
        if (typeof c.message === 'string') expect(err.details, c.kind).toBe(c.message);
        else expect(err.details, c.kind).toMatch(c.message);
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
        if (c.code !== 3 /* INVALID_ARGUMENT */) sent.oversized++;
        else if (c.target === 'cascade') {
          sent.cascadeInvalid++;
          if (c.reachesEncoder) sent.encoderInvalid++;
        } else sent.encoderInvalid++;
        if (++n % 100 === 0) expect(await bothServing()).toBe(true);
      }),
      { numRuns: RUNS },
    );
    console.log(`hostile corpus: ${n} requests`, JSON.stringify(Object.fromEntries([...kinds].sort())));
    expect(n).toBeGreaterThanOrEqual(1000);
    expect(kinds.size).toBe(20);

    // Each refusal was counted once where it was answered: the cascade's own and the ones the
    // encoder answered for it. Oversized messages never reach a handler. No breaker trips.
    const cascadeAfter = await scrape(cascade.metricsPort);
    const encoderAfter = await scrape(encoder.metricsPort);
    expect(delta(cascadeBefore, cascadeAfter, 'mrl_cascade_requests_total{code="INVALID_ARGUMENT"}')).toBe(sent.cascadeInvalid);
    expect(delta(encoderBefore, encoderAfter, 'mrl_encoder_requests_total{code="INVALID_ARGUMENT"}')).toBe(sent.encoderInvalid);
    expect(delta(cascadeBefore, cascadeAfter, 'mrl_cascade_requests_total{code="INTERNAL"}')).toBe(0);
    expect(delta(encoderBefore, encoderAfter, 'mrl_encoder_requests_total{code="INTERNAL"}')).toBe(0);
    expect(cascadeAfter.get('mrl_cascade_breaker_state')).toBe(0);
    expect(delta(cascadeBefore, cascadeAfter, 'mrl_cascade_breaker_events_total{event="failure"}')).toBe(0);
  }, 120_000);

  it('decompression bombs are refused undecoded: 50000x50000 declared, and a real 5000x5000 blank PNG', async () => {
    const realBomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#000' } })
      .toColourspace('b-w')
      .png({ compressionLevel: 9 })
      .toBuffer();
    const cases = [
      { image: pngDeclaring(images.png[0]!, 50_000, 50_000), size: '50000x50000' },
      { image: realBomb, size: '5000x5000' },
    ];
    const peakBefore = peakRssBytes(encoder.pid);
    for (const { image, size } of cases) {
      const err = await send({ kind: 'bomb', target: 'cascade', request: { image }, code: 3, message: '', reachesEncoder: true });
      expect(err.code).toBe(3);
      expect(err.details).toBe(`image is ${size}, more than the ${MAX_IMAGE_PIXELS} pixels this encoder decodes`);
    }
    // Decoding the real one would take 25 MB at least; refused from its header, it takes nothing.
    const growth = peakRssBytes(encoder.pid) - peakBefore;
    console.log(`bombs (${realBomb.length}-byte PNG of 5000x5000): encoder peak RSS grew ${Math.round(growth / 2 ** 20)} MiB`);
    expect(growth).toBeLessThan(25 * 2 ** 20);
  });

  it('an image the model overflows on fails alone in a packed ClassifyBatch; its neighbours are answered', async () => {
    const good = sliceTensor(slice, 0, bundle).raw;
    const huge = float32Bytes(new Float32Array(good.length / 4).fill(-2e38));
    const res = await new Promise<{ results: { code: number; message: string; response?: { class_index: number } | null }[] }>((resolve, reject) =>
      classifier.ClassifyBatch({ images: { shape: [3, 28, 28], raw: Buffer.concat([good, huge, good]) } }, (err, r) => (err ? reject(err) : resolve(r as never))),
    );
    expect(res.results.map((r) => r.code)).toEqual([0, 3, 0]);
    expect(res.results[1]!.message).toBe(
      'input gave a non-finite embedding: its values are far outside the 0 to 1 the model takes (pixel byte × scale + offset)',
    );
    expect(res.results[0]!.response!.class_index).toBe(res.results[2]!.response!.class_index);
  });

  it('a body that is not a valid protobuf message gets INVALID_ARGUMENT naming the message on every unary method, health included, and is counted', async () => {
    const identity = (b: Buffer) => b;
    const call = (port: number, path: string, body: Buffer) => {
      const Raw = grpc.makeGenericClientConstructor(
        { Call: { path, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
        'Raw',
      );
      const client = new Raw(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
        Call(req: Buffer, cb: (err: ServiceError | null) => void): void;
      };
      return new Promise<ServiceError | null>((resolve) => client.Call(body, (err) => (client.close(), resolve(err))));
    };
    const bodies = [
      Buffer.from('ffffffffff20676172626167', 'hex'), // a varint that never ends, then text
      Buffer.from([0x0a, 0x10, 0x01, 0x02]), // field 1 announces 16 bytes; 2 follow
      Buffer.from([0x0f]), // field 1 with wire type 7, which does not exist
    ];
    const methods: { port: number; path: string; type: string; skip?: number[] }[] = [
      { port: cascade.port, path: '/mrl.v1.Classifier/Classify', type: 'mrl.v1.ClassifyRequest' },
      { port: cascade.port, path: '/mrl.v1.Classifier/ClassifyBatch', type: 'mrl.v1.ClassifyBatchRequest' },
      { port: encoder.port, path: '/mrl.v1.Encoder/Encode', type: 'mrl.v1.EncodeRequest' },
      { port: encoder.port, path: '/mrl.v1.Encoder/EncodeBatch', type: 'mrl.v1.EncodeBatchRequest' },
      // grpc-health-check's decoder reads a truncated length-delimited field as it is, so that
      // body asks for an unknown service name there (NOT_FOUND): only bodies it cannot read count.
      { port: cascade.port, path: '/grpc.health.v1.Health/Check', type: 'grpc.health.v1.HealthCheckRequest', skip: [1] },
      { port: encoder.port, path: '/grpc.health.v1.Health/Check', type: 'grpc.health.v1.HealthCheckRequest', skip: [1] },
      { port: encoder.port, path: '/grpc.health.v1.Health/List', type: 'grpc.health.v1.HealthListRequest', skip: [1] },
    ];
    const cascadeBefore = await scrape(cascade.metricsPort);
    const encoderBefore = await scrape(encoder.metricsPort);
    for (const m of methods)
      for (const [i, body] of bodies.entries()) {
        if (m.skip?.includes(i)) continue;
        const err = await call(m.port, m.path, body);
        expect(err?.code, `${m.path} ${body.toString('hex')}`).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err!.details).toMatch(new RegExp(`^request is not a valid ${m.type.replaceAll('.', '\\.')} message: \\S`));
      }
    // Health's Watch streams: the same refusal ends the stream.
    const Watch = grpc.makeGenericClientConstructor(
      { Watch: { path: '/grpc.health.v1.Health/Watch', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      'RawWatch',
    );
    const watcher = new Watch(`127.0.0.1:${encoder.port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Watch(req: Buffer): grpc.ClientReadableStream<Buffer> };
    const watchErr = await new Promise<ServiceError>((resolve) => watcher.Watch(bodies[0]!).on('error', resolve));
    watcher.close();
    expect(watchErr.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(watchErr.details).toMatch(/^request is not a valid grpc\.health\.v1\.HealthCheckRequest message: \S/);
    const cascadeAfter = await scrape(cascade.metricsPort);
    const encoderAfter = await scrape(encoder.metricsPort);
    expect(delta(cascadeBefore, cascadeAfter, 'mrl_cascade_requests_total{code="INVALID_ARGUMENT"}')).toBe(3);
    expect(delta(cascadeBefore, cascadeAfter, 'mrl_cascade_batch_requests_total{code="INVALID_ARGUMENT"}')).toBe(3);
    // Encode calls, and EncodeBatch calls as one input each.
    expect(delta(encoderBefore, encoderAfter, 'mrl_encoder_requests_total{code="INVALID_ARGUMENT"}')).toBe(6);
    expect(await bothServing()).toBe(true);
  });

  it('an image that fits the cascade\'s message limit but not an EncodeBatch call is refused there, saying why', async () => {
    // At this size a Classify or Encode request adds 4 bytes of framing to the image; EncodeBatch adds more.
    const size = MAX_MESSAGE_BYTES - 6;
    const image = pngPaddedTo(easyPng, size);
    expect((await encode(encoderCli, { image })).embedding).toHaveLength(bundle.embeddingDim);
    const message = `image of ${size} bytes is too large to send on to the encoder: an EncodeBatch call carries at most ${MAX_MESSAGE_BYTES - 32} bytes of input (MRL_MAX_MESSAGE_BYTES less framing)`;
    const err = await send({ kind: 'too large to forward', target: 'cascade', request: { image }, code: 3, message, reachesEncoder: false });
    expect([err.code, err.details]).toEqual([3, message]);
  });

  it('afterwards both still serve, and a valid image gets the right answer', async () => {
    expect(await bothServing()).toBe(true);
    const res = await classify(classifier, { image: easyPng });
    expect(res.class_index).toBe(easyLabel);
    expect(res.label).toBe(bundle.labels[easyLabel]);
    expect(cascade.exited() || encoder.exited()).toBe(false);
  });
});
