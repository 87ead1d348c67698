import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ImportOptions, importBundle } from '../cli/import.js';
import { classifierClient, classify, classifyBatch, float32Bytes } from '../cli/clients.js';
import { type Bundle, DEFAULT_MODEL_DIR, loadBundle, readBundle } from '../matryoshka/bundle.js';
import { Cascade } from '../matryoshka/cascade.js';
import { cascadeConfig } from '../services/cascade/config.js';
import { type RunningCascade, startCascade } from '../services/cascade/server.js';
import { silentLogger } from '../services/common/logger.js';
import { healthCheck } from '../harness/health.js';
import { MRL } from './helpers/mrl.js';
import { killStarted, startMrl } from './helpers/mrlStart.js';

const run = promisify(execFile);
type Json = Record<string, unknown>;

let tmp: string;
let labelsFile: string;
let preprocessFile: string;
let defaults: Json;
let bundle: Bundle;
const ENCODER = join(DEFAULT_MODEL_DIR, 'encoder.onnx');
const NESTING = '8,16,32,64,128,256,512';

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mrl-import-'));
  bundle = await loadBundle();
  defaults = JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'model.json'), 'utf8')) as Json;
  labelsFile = join(tmp, 'labels.txt');
  await writeFile(labelsFile, `${bundle.labels.join('\n')}\n`);
  preprocessFile = join(tmp, 'preprocessor_config.json');
  await writeFile(preprocessFile, JSON.stringify(defaults.preprocess));
});
afterAll(async () => {
  killStarted();
  await rm(tmp, { recursive: true, force: true });
});

const cascadeEnv = (modelDir: string) => ({
  MRL_MODEL_DIR: modelDir,
  MRL_CASCADE_HOST: '127.0.0.1',
  MRL_CASCADE_PORT: '0',
  MRL_CASCADE_METRICS_PORT: '0',
  // Nothing listens there: an embeddings-only cascade never dials it.
  MRL_ENCODER_TARGET: '127.0.0.1:9',
});

/** What `mrl fit` would add, taken from the default bundle: its heads file, heads, thresholds and temperatures. */
async function giveDefaultHeads(dir: string): Promise<void> {
  await copyFile(join(DEFAULT_MODEL_DIR, 'heads.bin'), join(dir, 'heads.bin'));
  const meta = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Json;
  const { heads, thresholds, temperatures, calibration } = defaults;
  await writeFile(join(dir, 'model.json'), JSON.stringify({ ...meta, heads, thresholds, temperatures, calibration }));
}

describe('mrl import of an ONNX encoder', () => {
  const options = (out: string, extra: Partial<ImportOptions> = {}): ImportOptions => ({
    encoder: ENCODER,
    labels: labelsFile,
    nesting: NESTING,
    preprocess: preprocessFile,
    out: join(tmp, out),
    ...extra,
  });

  it('reads the input and output from the graph, runs it once, and writes model.json and encoder.onnx without heads', async () => {
    const b = await importBundle(options('fmnist', { name: 'my-fmnist', version: '0.1.0' }));
    expect(b.id).toBe('my-fmnist@0.1.0');
    expect(b.meta.input).toEqual({ name: 'input', dtype: 'float32', shape: [-1, 1, 28, 28], layout: 'NCHW' });
    expect(b.input).toEqual(bundle.input);
    expect(b.preprocess).toEqual(bundle.preprocess);
    expect(b.outputName).toBe('embedding');
    expect(b.embeddingDim).toBe(512);
    expect(b.nesting).toEqual([8, 16, 32, 64, 128, 256, 512]);
    expect(b.labels).toEqual(bundle.labels);
    expect(b.normalization).toBe('none');
    expect(b.heads).toBeUndefined();
    expect(b.thresholds).toBeUndefined();
    expect((await readdir(b.dir)).sort()).toEqual(['encoder.onnx', 'model.json']);
    expect((await readFile(join(b.dir, 'encoder.onnx'))).equals(await readFile(ENCODER))).toBe(true);
    // The preprocess block is kept as given, Hugging Face field names and all.
    expect(b.meta.preprocess).toEqual(defaults.preprocess);
  });

  it('names the bundle after its folder, version 1.0.0, by default; any number of labels is the heads\' business', async () => {
    const three = join(tmp, 'three.txt');
    await writeFile(three, '  cat \r\ndog\nbird\n\n');
    const b = await importBundle(options('named-after-me', { labels: three, normalization: 'l2' }));
    expect([b.id, b.labels, b.normalization]).toEqual(['named-after-me@1.0.0', ['cat', 'dog', 'bird'], 'l2']);
  });

  it.each([
    ['a nesting out of order', { nesting: '16,8,512' }, 'import: nesting 16,8,512 must ascend, but 8 comes after 16'],
    ['a repeated size', { nesting: '8,8,512' }, 'import: nesting 8,8,512 repeats 8'],
    ['a size beyond the embedding', { nesting: '8,1024' }, "import: nesting size 1024 is more than the embedding's 512 dimensions"],
    ['a last size short of the embedding', { nesting: '8,16,256' }, 'import: the last nesting size must be the whole embedding, 512, not 256 (output embedding of encoder.onnx has 512 values)'],
    ['a nesting that is not numbers', { nesting: '8,sixteen' }, 'import: --nesting 8,sixteen: give positive integers separated by commas'],
    ['a file that is not ONNX', { encoder: join(DEFAULT_MODEL_DIR, 'model.json') }, 'is not an ONNX model onnxruntime can load'],
    ['an output the graph lacks', { output: 'logits' }, 'import: --output logits: encoder.onnx has no output of that name; its outputs: embedding float32 [batch, 512]'],
    ['no --preprocess', { preprocess: undefined }, 'import: --encoder needs --preprocess FILE'],
    ['--preprocess with --embedding-dim', { encoder: undefined, embeddingDim: '512' }, 'import: --preprocess describe an encoder; an embeddings-only bundle (--embedding-dim) has none'],
    ['both --encoder and --embedding-dim', { embeddingDim: '512' }, 'import: give --encoder model.onnx, or --embedding-dim D'],
    ['an unknown normalisation', { normalization: 'l1' }, 'import: --normalization must be one of none, l2, layer_norm_l2, not l1'],
  ] as [string, Partial<ImportOptions>, string][])('refuses %s, writing nothing', async (_, extra, message) => {
    const out = `refused-${Math.random().toString(36).slice(2)}`;
    await expect(importBundle(options(out, extra))).rejects.toThrow(message);
    expect(existsSync(join(tmp, out))).toBe(false);
  });

  it('refuses repeated or blank labels, and a pipeline that does not fill the input, naming the line or field', async () => {
    const write = async (name: string, text: string) => (await writeFile(join(tmp, name), text), join(tmp, name));
    await expect(importBundle(options('dup', { labels: await write('dup.txt', 'a\nb\n a\n') }))).rejects.toThrow(/labels .*dup\.txt: line 3 repeats "a" \(line 1\); labels must be distinct/);
    await expect(importBundle(options('blank', { labels: await write('blank.txt', 'a\n\nb\n') }))).rejects.toThrow(/blank\.txt: line 2 is empty/);
    await expect(importBundle(options('one', { labels: await write('one.txt', 'a\n') }))).rejects.toThrow(/one\.txt has 1 label; a classifier needs at least 2/);
    const big = await write('big.json', JSON.stringify({ ...(defaults.preprocess as Json), size: { longest_edge: 32 } }));
    await expect(importBundle(options('big', { preprocess: big }))).rejects.toThrow(/--preprocess .*big\.json: the pipeline gives 32x32 images; the model input takes 28x28/);
    for (const out of ['dup', 'blank', 'one', 'big']) expect(existsSync(join(tmp, out))).toBe(false);
  });

  it('refuses a folder that already holds a bundle', async () => {
    await expect(importBundle(options('fmnist'))).rejects.toThrow(/--out .*fmnist already holds a bundle \(model\.json\)/);
  });

  it('a bundle without heads loads only as such: loadBundle and the cascade refuse it, naming `mrl fit`', async () => {
    const dir = join(tmp, 'fmnist');
    const message = `model bundle ${dir}: has no heads: run \`npx mrl fit ${dir} --data FOLDER\` first`;
    await expect(loadBundle(dir)).rejects.toThrow(message);
    await expect(startCascade(cascadeConfig(cascadeEnv(dir)), silentLogger)).rejects.toThrow(message);
  });

  it('is the CLI command `mrl import`, and `mrl start` refuses a bundle without heads before running anything', async () => {
    const out = join(tmp, 'by-cli');
    const { stdout } = await run(process.execPath, [...MRL, 'import', '--encoder', ENCODER, '--labels', labelsFile, '--nesting', NESTING, '--preprocess', preprocessFile, '--out', out, '--json']);
    expect(JSON.parse(stdout)).toMatchObject({ dir: out, model: 'by-cli@1.0.0', embedding_dim: 512, labels: 10, next: `npx mrl fit ${out} --data FOLDER` });
    const refused = await startMrl({ env: { MRL_MODEL_DIR: out } });
    await refused.supervisor.exit;
    expect(await refused.stop()).toEqual({ code: 1, signal: null });
    expect(refused.supervisor.output.join('\n')).toContain('has no heads: run `npx mrl fit');
  });
});

describe('an embeddings-only bundle (mrl import --embedding-dim)', () => {
  let dir: string;
  let cascade: RunningCascade;
  let client: ReturnType<typeof classifierClient>;
  let reference: number[][];
  const offline = () => new Cascade(bundle.headKind, bundle.nesting, bundle.heads);
  const settings = () => ({ thresholds: bundle.thresholds, temperatures: bundle.temperatures });
  const refusal = (p: Promise<unknown>) => p.then(() => expect.fail('expected a refusal'), (e: ServiceError) => ({ code: e.code, details: e.details }));

  beforeAll(async () => {
    dir = join(tmp, 'embeddings');
    const imported = await importBundle({ embeddingDim: '512', labels: labelsFile, nesting: bundle.nesting.join(','), out: dir });
    expect(imported.input).toBeUndefined();
    await giveDefaultHeads(dir);
    cascade = await startCascade(cascadeConfig(cascadeEnv(dir)), silentLogger);
    client = classifierClient(`127.0.0.1:${cascade.port}`);
    reference = (JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, 'reference-embeddings.json'), 'utf8')) as { embeddings: number[][] }).embeddings;
  });
  afterAll(async () => {
    client?.close();
    await cascade?.shutdown();
  });

  it('holds model.json alone, with no encoder fields; loadBundle (for the encoder, eval, calibrate) refuses it', async () => {
    expect((await readdir(dir)).sort()).toEqual(['heads.bin', 'model.json']);
    const meta = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Json;
    for (const key of ['input', 'preprocess', 'output']) expect(meta).not.toHaveProperty(key);
    expect((await readBundle(dir)).heads).toHaveLength(bundle.nesting.length);
    await expect(loadBundle(dir)).rejects.toThrow(`model bundle ${dir}: is embeddings-only`);
  });

  it('serves Classify on embeddings as the offline cascade over the same heads answers, whole or as a prefix', async () => {
    const cases = reference.slice(0, 20).flatMap((row) => [Float32Array.from(row), Float32Array.from(row.slice(0, 64))]);
    for (const z of cases) {
      const want = offline().classify(z, settings());
      const got = await classify(client, { embedding: { values: Array.from(z) } });
      expect([got.class_index, got.label, got.dimension_used]).toEqual([want.classIndex, bundle.labels[want.classIndex], want.dimensionUsed]);
      expect(got.confidence).toBeCloseTo(want.confidence, 6);
      expect(got.model).toBe(`embeddings@1.0.0`);
    }
    expect(await healthCheck(cascade.port, 'mrl.v1.Classifier')).toBe('SERVING');
  });

  it('refuses image and tensor inputs with INVALID_ARGUMENT naming what to send, and sizes outside the nesting naming them', async () => {
    const want = {
      code: status.INVALID_ARGUMENT,
      details: `this bundle is embeddings-only: send \`embedding\` (N values, N one of the nesting sizes ${bundle.nesting.join(', ')})`,
    };
    expect(await refusal(classify(client, { image: Buffer.from([0x89, 0x50]) }))).toEqual(want);
    expect(await refusal(classify(client, { tensor: { shape: [28, 28], raw: float32Bytes(new Float32Array(784)) } }))).toEqual(want);
    const packed = classifyBatch(client, { images: { shape: [2, 28, 28], raw: float32Bytes(new Float32Array(2 * 784)) } });
    expect(await refusal(packed)).toEqual(want);
    const embedding = { values: reference[0]! };
    expect(await refusal(classify(client, { embedding, max_dimension: 48 }))).toEqual({
      code: status.INVALID_ARGUMENT,
      details: `max_dimension 48 is not 0 or one of the nesting sizes ${bundle.nesting.join(', ')}`,
    });
    expect(await refusal(classify(client, { embedding: { values: reference[0]!.slice(0, 48) } }))).toEqual({
      code: status.INVALID_ARGUMENT,
      details: `embedding has 48 values; expected one of the nesting sizes ${bundle.nesting.join(', ')}`,
    });
  });

  it('starts no encoder gateway: /metrics has none of its series', async () => {
    const text = await (await fetch(`http://127.0.0.1:${cascade.metricsPort}/metrics`)).text();
    expect(text).toContain('mrl_cascade_requests_total');
    expect(text).not.toMatch(/mrl_cascade_(breaker_state|encoder_calls_total)/);
  });

  it('`mrl start` runs the cascade alone, which classifies embeddings; `mrl start encoder` refuses', async () => {
    const refused = await startMrl({ env: { MRL_MODEL_DIR: dir }, services: ['encoder'] });
    await refused.supervisor.exit;
    expect(await refused.stop()).toEqual({ code: 1, signal: null });
    expect(refused.supervisor.output.join('\n')).toContain(`start: bundle ${dir} is embeddings-only (no encoder.onnx): there is no encoder to run`);
    const mesh = await startMrl({ env: { MRL_MODEL_DIR: dir } });
    const { output } = mesh.supervisor;
    try {
      const got = await mesh.answer({ embedding: { values: reference[1]! } }, 30_000);
      expect(got, `the cascade to answer:\n${output.join('\n')}`).toBeDefined();
      expect(got!.class_index).toBe(offline().classify(Float32Array.from(reference[1]!), settings()).classIndex);
      expect(output.some((l) => /^\[supervisor\] .*embeddings-only bundle: running the cascade alone/.test(l))).toBe(true);
      expect([mesh.pids('cascade').length, mesh.pids('encoder').length], output.join('\n')).toEqual([1, 0]);
    } finally {
      await mesh.stop();
    }
    expect(await mesh.supervisor.exit, output.join('\n')).toEqual({ code: 0, signal: null });
  }, 60_000);
});
