import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { mrl as run } from './helpers/mrl.js';

const mrl = async (...args: string[]) => (await run(...args)).stdout;

type Value = string | number | boolean | Message | Value[];
interface Message {
  [field: string]: Value;
}

/**
 * A small reader of protobuf text format, enough for config.pbtxt: `field: value`, `field { ... }`,
 * `field: { ... }`, lists `[ a, b ]`, strings, numbers, enum names and `#` comments. A field set
 * more than once reads as a list, as repeated fields do.
 */
function parsePbtxt(text: string): Message {
  const tokens = [...text.replace(/#.*$/gm, '').matchAll(/"(?:[^"\\]|\\.)*"|[{}[\]:,]|[^\s{}[\]:,"]+/g)].map((m) => m[0]);
  let at = 0;
  const next = () => {
    if (at >= tokens.length) throw new Error('config.pbtxt ends early');
    return tokens[at++]!;
  };
  const value = (): Value => {
    const t = next();
    if (t === '{') return message('}');
    if (t === '[') {
      const list: Value[] = [];
      while (tokens[at] !== ']') {
        list.push(value());
        if (tokens[at] === ',') at++;
      }
      at++;
      return list;
    }
    if (t.startsWith('"')) return JSON.parse(t) as string;
    if (t === 'true' || t === 'false') return t === 'true';
    return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t;
  };
  const message = (end?: string): Message => {
    const fields: Message = {};
    while (at < tokens.length && tokens[at] !== end) {
      const name = next();
      if (!/^[a-z_][a-z0-9_]*$/i.test(name)) throw new Error(`expected a field name, got ${name}`);
      if (tokens[at] === ':') at++;
      const v = value();
      const prior = fields[name];
      fields[name] = prior === undefined ? v : Array.isArray(prior) ? [...prior, v] : [prior, v];
    }
    if (end) at++;
    return fields;
  };
  return message();
}

let bundle: Bundle;
let dir: string;
beforeAll(async () => {
  bundle = await loadBundle();
  dir = await mkdtemp(join(tmpdir(), 'mrl-triton-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('mrl export-triton DIR on the default bundle', () => {
  let config: Message;
  let out: string;
  beforeAll(async () => {
    out = await mrl('export-triton', join(dir, 'repo'));
    config = parsePbtxt(await readFile(join(dir, 'repo', bundle.name, 'config.pbtxt'), 'utf8'));
  });

  it('says what it wrote and how to serve it', () => {
    expect(out).toContain(join(dir, 'repo', bundle.name, '1', 'model.onnx'));
    expect(out).toContain(`--model-repository=${join(dir, 'repo')}`);
  });

  it('copies the bundle\'s encoder.onnx to <name>/1/model.onnx byte for byte', async () => {
    expect((await readFile(join(dir, 'repo', bundle.name, '1', 'model.onnx'))).equals(await readFile(bundle.encoderPath))).toBe(true);
  });

  it('config.pbtxt: the bundle\'s model on onnxruntime, batching, a bounded queue, one GPU instance, version 1', () => {
    expect(config).toEqual({
      name: bundle.name,
      platform: 'onnxruntime_onnx',
      max_batch_size: 256,
      version_policy: { specific: { versions: [1] } },
      input: [{ name: bundle.input.name, data_type: 'TYPE_FP32', dims: [bundle.input.channels, bundle.input.height, bundle.input.width] }],
      output: [{ name: bundle.outputName, data_type: 'TYPE_FP32', dims: [bundle.embeddingDim] }],
      dynamic_batching: { max_queue_delay_microseconds: 0, default_queue_policy: { max_queue_size: 64 } },
      instance_group: [{ kind: 'KIND_GPU', count: 1 }],
    });
  });

  it("the tensors are the ONNX model's own, less the batch dimension", async () => {
    const session = await ort.InferenceSession.create(bundle.encoderPath);
    try {
      const shape = (m: ort.InferenceSession.ValueMetadata | undefined) => (m?.isTensor ? m.shape : undefined);
      const [input] = config.input as Message[];
      const [output] = config.output as Message[];
      expect([input!.name, output!.name]).toEqual([session.inputNames[0], session.outputNames[0]]);
      for (const [tensor, meta] of [[input, session.inputMetadata[0]], [output, session.outputMetadata[0]]] as const) {
        // The first dimension is symbolic (any batch size); Triton adds it back from max_batch_size.
        expect(shape(meta)?.[0]).toBeTypeOf('string');
        expect(tensor!.dims).toEqual(shape(meta)?.slice(1));
      }
    } finally {
      await session.release();
    }
  });
});

describe('mrl export-triton options and refusals', () => {
  it('--max-batch, --max-queue and --max-delay-us set the batcher; --json reports them', async () => {
    const out = JSON.parse(await mrl('export-triton', join(dir, 'tuned'), '--max-batch', '64', '--max-queue', '8', '--max-delay-us', '500', '--json')) as Record<string, unknown>;
    expect(out).toEqual({ repository: join(dir, 'tuned'), model: bundle.name, version: 1, maxBatch: 64, maxQueue: 8, maxDelayUs: 500 });
    const config = parsePbtxt(await readFile(join(dir, 'tuned', bundle.name, 'config.pbtxt'), 'utf8'));
    expect([config.max_batch_size, config.dynamic_batching]).toEqual([64, { max_queue_delay_microseconds: 500, default_queue_policy: { max_queue_size: 8 } }]);
  });

  it('refuses an unbounded queue, and a bundle without an encoder', async () => {
    await expect(mrl('export-triton', join(dir, 'x'), '--max-queue', '0')).rejects.toMatchObject({ stderr: 'mrl: --max-batch and --max-queue must be at least 1\n' });
    const embeddingsOnly = join(dir, 'embeddings-only');
    await mkdir(embeddingsOnly);
    for (const f of ['model.json', 'heads.bin']) await copyFile(join(bundle.dir, f), join(embeddingsOnly, f));
    await expect(mrl('export-triton', join(dir, 'y'), '--model', embeddingsOnly)).rejects.toMatchObject({
      stderr: `mrl: model bundle ${embeddingsOnly}: has no encoder.onnx (an embeddings-only bundle): there is no model for Triton to serve\n`,
    });
  });
});
