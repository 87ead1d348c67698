import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../services/common/runtime.js';
import { type ImagePipeline, type InputTarget, type Layout, PreprocessError, parsePreprocess, toTensor } from './image/preprocess.js';
import { NORMALIZATIONS, type Normalization } from './normalize.js';

/** The model bundle shipped in the repository and served by default. */
export const DEFAULT_MODEL_DIR = join(PACKAGE_ROOT, 'models', 'fashion-mnist-mrl');

export type HeadKind = 'mrl' | 'mrl-e';

/**
 * The encoder's ONNX input as the services need it. `scale` and `offset`: byte × scale + offset is
 * what a pixel byte of an image already at the model's size becomes (test slices, range checks);
 * exact whenever every channel is treated alike (always with 1 channel), else the map spanning
 * every channel's range. The image path is the bundle's `preprocess` pipeline.
 */
export interface InputSpec {
  name: string;
  height: number;
  width: number;
  channels: number;
  /** One image's dimensions as the model takes them, after the batch axis: [C, H, W] (NCHW) or [H, W, C] (NHWC). */
  dims: number[];
  scale: number;
  offset: number;
}

/** Pixel bytes at the model's size → the encoder's float input (byte × scale + offset), for test slices. */
export function pixelsToInput(pixels: Uint8Array, { scale, offset }: InputSpec): Float32Array {
  return toTensor({ width: pixels.length, height: 1, channels: 1, data: pixels }, [scale], [offset], 'NCHW');
}

/** One linear classifier: `weight` is classes × size, row-major. */
export interface LinearHead {
  size: number;
  weight: Float32Array;
  bias: Float32Array;
}

/** What every bundle declares. */
export interface BundleInfo {
  dir: string;
  name: string;
  version: string;
  /** `name@version`, as responses report it. */
  id: string;
  embeddingDim: number;
  /** Prefix sizes, increasing; the last is `embeddingDim`. */
  nesting: number[];
  labels: string[];
  /** How each prefix is normalised before its head: model.json `normalization`, default `none`. */
  normalization: Normalization;
  /** model.json as parsed, for metadata the services pass on (metrics, calibration record). */
  meta: Record<string, unknown>;
}

/** A bundle's encoder: model.json `input`, `preprocess` and `output`, and encoder.onnx. An embeddings-only bundle has none. */
export interface BundleEncoder {
  input: InputSpec;
  /** How an image becomes the encoder's input: model.json `preprocess`. */
  preprocess: ImagePipeline;
  outputName: string;
  encoderPath: string;
}

/** A bundle's classifier: model.json `heads` and what goes with them. `mrl import` leaves it out; `mrl fit` writes it. */
export interface BundleHeads {
  headKind: HeadKind;
  /** MRL: one head per nesting size. MRL-E: one head of size `embeddingDim`. */
  heads: LinearHead[];
  /** One per stage but the last. */
  thresholds: number[];
  /** One per stage: logits are divided by it before the softmax (model.json `temperatures`, default 1). */
  temperatures: number[];
}

type Lacking<T> = { [K in keyof T]?: undefined };

/** Any bundle: `input` (and the rest of BundleEncoder) undefined when embeddings-only, `heads` (and the rest) before `mrl fit`. */
export type AnyBundle = BundleInfo & (BundleEncoder | Lacking<BundleEncoder>) & (BundleHeads | Lacking<BundleHeads>);

/** A bundle with heads, as the cascade serves it: its encoder absent when embeddings-only. */
export type ClassifierBundle = BundleInfo & BundleHeads & (BundleEncoder | Lacking<BundleEncoder>);

/** A bundle with an encoder and heads: what `loadBundle` gives. */
export type Bundle = BundleInfo & BundleEncoder & BundleHeads;

export class BundleError extends Error {
  constructor(dir: string, message: string) {
    super(`model bundle ${dir}: ${message}`);
    this.name = 'BundleError';
  }
}

type Json = Record<string, unknown>;

function field<T>(obj: Json, key: string, check: (v: unknown) => v is T, what: string, fail: (m: string) => never): T {
  const v = obj[key];
  if (!check(v)) fail(`model.json field "${key}" must be ${what}`);
  return v;
}

const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isIntArray = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every(isPositiveInt);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every(isString);
const isProbArray = (v: unknown): v is number[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'number' && x >= 0 && x <= 1);

/** Checks a thresholds list against a nesting: one per stage but the last, each in [0, 1]. */
export function validateThresholds(thresholds: unknown, nesting: number[]): string | undefined {
  if (!isProbArray(thresholds)) return 'thresholds must be an array of numbers in [0, 1]';
  if (thresholds.length !== nesting.length - 1)
    return `expected ${nesting.length - 1} thresholds (one per stage but the last), got ${thresholds.length}`;
  return undefined;
}

/** Checks per-stage temperatures against a nesting: one per stage, each a positive finite number. */
export function validateTemperatures(temperatures: unknown, nesting: number[]): string | undefined {
  if (!Array.isArray(temperatures) || !temperatures.every((t) => typeof t === 'number' && Number.isFinite(t) && t > 0))
    return 'temperatures must be an array of positive numbers';
  if (temperatures.length !== nesting.length) return `expected ${nesting.length} temperatures (one per stage), got ${temperatures.length}`;
  return undefined;
}

/** Why `nesting` does not fit an embedding of `embeddingDim` values (ascending, unique, at most d, the last d), or undefined. */
export function nestingError(nesting: readonly number[], embeddingDim: number): string | undefined {
  for (let i = 1; i < nesting.length; i++) {
    if (nesting[i] === nesting[i - 1]) return `nesting ${nesting.join(',')} repeats ${nesting[i]}`;
    if (nesting[i]! < nesting[i - 1]!) return `nesting ${nesting.join(',')} must ascend, but ${nesting[i]} comes after ${nesting[i - 1]}`;
  }
  const over = nesting.find((m) => m > embeddingDim);
  if (over !== undefined) return `nesting size ${over} is more than the embedding's ${embeddingDim} dimensions`;
  const last = nesting[nesting.length - 1];
  if (last !== embeddingDim) return `the last nesting size must be the whole embedding, ${embeddingDim}, not ${last}`;
  return undefined;
}

/**
 * Loads and validates a bundle folder's `model.json`, and its heads where it has them (unless
 * `withHeads` is false: a reader that needs only the encoder's side does not read them).
 */
export async function readBundle(dirArg: string = DEFAULT_MODEL_DIR, { withHeads = true } = {}): Promise<AnyBundle> {
  const dir = resolve(dirArg);
  const fail = (m: string): never => {
    throw new BundleError(dir, m);
  };
  let meta: Json;
  try {
    meta = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Json;
  } catch (err) {
    return fail(`cannot read model.json (${(err as Error).message})`);
  }
  if (!isObject(meta)) fail('model.json must hold an object');
  const name = field(meta, 'name', isString, 'a non-empty string', fail);
  const version = field(meta, 'version', isString, 'a non-empty string', fail);
  const embeddingDim = field(meta, 'embedding_dim', isPositiveInt, 'a positive integer', fail);
  const nesting = field(meta, 'nesting', isIntArray, 'an array of positive integers', fail);
  const badNesting = nestingError(nesting, embeddingDim);
  if (badNesting) fail(`model.json field "nesting": ${badNesting}`);
  const labels = field(meta, 'labels', isStringArray, 'an array of class names', fail);
  const repeated = labels.find((l, i) => labels.indexOf(l) !== i);
  if (repeated !== undefined) fail(`model.json field "labels" lists ${JSON.stringify(repeated)} twice`);
  const normalization =
    meta.normalization === undefined
      ? 'none'
      : field(meta, 'normalization', (v): v is Normalization => NORMALIZATIONS.includes(v as Normalization), NORMALIZATIONS.map((n) => `"${n}"`).join(', '), fail);
  const info: BundleInfo = { dir, name, version, id: `${name}@${version}`, embeddingDim, nesting, labels, normalization, meta };
  return { ...info, ...encoderOf(meta, dir, fail), ...(withHeads ? await headsOf(meta, info, fail) : {}) };
}

/** The command that gives `bundle` heads: from images with an encoder, from embeddings without. */
export function fitCommand(bundle: AnyBundle): string {
  return `npx mrl fit ${bundle.dir} ${bundle.input ? '--data FOLDER' : '--embeddings FILE.jsonl'}`;
}

/** `bundle`, refused unless it has heads (what the cascade serves). */
export function requireHeads(bundle: AnyBundle): ClassifierBundle {
  if (bundle.heads === undefined) throw new BundleError(bundle.dir, `has no heads: run \`${fitCommand(bundle)}\` first`);
  return bundle;
}

/** Loads a bundle that has an encoder and heads: what the encoder service, calibration and evaluation need. */
export async function loadBundle(dirArg: string = DEFAULT_MODEL_DIR): Promise<Bundle> {
  const bundle = requireHeads(await readBundle(dirArg));
  if (bundle.input === undefined)
    throw new BundleError(bundle.dir, 'is embeddings-only (model.json declares no "input": there is no encoder): only the cascade serves it, classifying `embedding` requests');
  return bundle;
}

/** model.json's encoder, or none (an embeddings-only bundle: no "input", "preprocess" or "output"). */
function encoderOf(meta: Json, dir: string, fail: (m: string) => never): BundleEncoder | Lacking<BundleEncoder> {
  if (meta.input === undefined) {
    const stray = ['preprocess', 'output'].filter((k) => meta[k] !== undefined);
    if (stray.length) fail(`model.json has ${stray.map((k) => `"${k}"`).join(' and ')} but no "input": an embeddings-only bundle declares no encoder`);
    return {};
  }
  const inputMeta = field(meta, 'input', isObject, 'an object', fail);
  const preprocess = meta.preprocess === undefined ? legacyPipeline(inputMeta, fail) : declaredPipeline(meta.preprocess, inputMeta, fail);
  const input: InputSpec = {
    name: field(inputMeta, 'name', isString, 'a non-empty string', fail),
    ...inputSpecOf(preprocess),
  };
  const output = field(meta, 'output', isObject, 'an object', fail);
  return { input, preprocess, outputName: field(output, 'name', isString, 'a non-empty string', fail), encoderPath: join(dir, 'encoder.onnx') };
}

/** model.json's heads (read from their file) with thresholds and temperatures, or none before `mrl fit`. */
async function headsOf(meta: Json, { dir, nesting, embeddingDim, labels }: BundleInfo, fail: (m: string) => never): Promise<BundleHeads | Lacking<BundleHeads>> {
  if (meta.heads === undefined) {
    const stray = ['thresholds', 'temperatures'].filter((k) => meta[k] !== undefined);
    if (stray.length) fail(`model.json has ${stray.map((k) => `"${k}"`).join(' and ')} but no "heads"`);
    return {};
  }
  const thresholds = field(meta, 'thresholds', isProbArray, 'an array of numbers in [0, 1]', fail);
  const bad = validateThresholds(thresholds, nesting);
  if (bad) fail(bad);
  const temperatures = meta.temperatures === undefined ? nesting.map(() => 1) : (meta.temperatures as number[]);
  const badT = validateTemperatures(temperatures, nesting);
  if (badT) fail(badT);

  const headsMeta = field(meta, 'heads', isObject, 'an object', fail);
  const headKind = field(headsMeta, 'type', (v): v is HeadKind => v === 'mrl' || v === 'mrl-e', '"mrl" or "mrl-e"', fail);
  const file = field(headsMeta, 'file', isString, 'a file name', fail);
  const tensors = field(headsMeta, 'tensors', (v): v is Json[] => Array.isArray(v) && v.every(isObject), 'an array', fail);
  let raw: Buffer;
  try {
    raw = await readFile(join(dir, file));
  } catch (err) {
    return fail(`cannot read heads file ${file} (${(err as Error).message})`);
  }
  // Copy into an aligned buffer: Buffer slices may start at any byte offset.
  const floats = new Float32Array(new Uint8Array(raw).buffer, 0, Math.floor(raw.byteLength / 4));
  const slice = (t: Json, what: string, shape: number[]): Float32Array => {
    const off = field(t, 'offset', (v): v is number => Number.isInteger(v) && (v as number) >= 0, 'an offset', fail);
    const got = field(t, 'shape', isIntArray, 'a shape', fail);
    if (got.join('x') !== shape.join('x')) fail(`${what} has shape ${got.join('x')}, expected ${shape.join('x')}`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (off + n > floats.length) fail(`${what} runs past the end of ${file}`);
    return floats.subarray(off, off + n);
  };
  const expectedSizes = headKind === 'mrl' ? nesting : [embeddingDim];
  if (tensors.length !== expectedSizes.length)
    fail(`${headKind} heads need ${expectedSizes.length} tensors, model.json lists ${tensors.length}`);
  const heads = tensors.map((t, i) => {
    const size = expectedSizes[i]!;
    if (t.size !== size) fail(`head ${i} has size ${String(t.size)}, expected ${size}`);
    return {
      size,
      weight: slice(field(t, 'weight', isObject, 'an object', fail), `head ${size} weight`, [labels.length, size]),
      bias: slice(field(t, 'bias', isObject, 'an object', fail), `head ${size} bias`, [labels.length]),
    };
  });
  return { headKind, heads, thresholds, temperatures };
}

/** The input a pipeline must fill, from an ONNX image input's shape (4 dimensions, -1 where open) and layout; a string says why it cannot be one. */
export function inputTarget(shape: readonly number[], layout: Layout): InputTarget | string {
  const [c, h, w] = layout === 'NCHW' ? shape.slice(1) : [shape[3], shape[1], shape[2]];
  if (c !== 1 && c !== 3) return `must give 1 or 3 channels (${layout}), not ${c}`;
  return { channels: c, layout, height: h! > 0 ? h : undefined, width: w! > 0 ? w : undefined };
}

/** A bundle with `preprocess`: `input` {name, shape, layout} is the ONNX input; the pipeline must fill it. */
function declaredPipeline(raw: unknown, inputMeta: Json, fail: (m: string) => never): ImagePipeline {
  for (const key of ['scale', 'offset'])
    if (key in inputMeta) fail(`model.json field "input.${key}" is for bundles without "preprocess"; declare do_rescale, rescale_factor and do_normalize there`);
  const layout = field(inputMeta, 'layout', (v): v is Layout => v === 'NCHW' || v === 'NHWC', '"NCHW" or "NHWC"', fail);
  const shape = field(
    inputMeta,
    'shape',
    (v): v is number[] => Array.isArray(v) && v.length === 4 && v.every((d) => d === -1 || isPositiveInt(d)),
    'an array of 4 dimensions (positive, or -1 where the model leaves one open)',
    fail,
  );
  const target = inputTarget(shape, layout);
  if (typeof target === 'string') return fail(`model.json field "input.shape" ${target}`);
  try {
    return parsePreprocess(raw, target);
  } catch (err) {
    if (err instanceof PreprocessError) fail(`model.json field "preprocess": ${err.message}`);
    throw err;
  }
}

/** A bundle without `preprocess` keeps its old image path: grayscale onto black, stretched to size, byte × scale + offset. */
function legacyPipeline(inputMeta: Json, fail: (m: string) => never): ImagePipeline {
  const number = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const height = field(inputMeta, 'height', isPositiveInt, 'a positive integer', fail);
  const width = field(inputMeta, 'width', isPositiveInt, 'a positive integer', fail);
  field(inputMeta, 'channels', (v): v is 1 => v === 1, '1 (a bundle without "preprocess" takes grayscale)', fail);
  const scale = field(inputMeta, 'scale', number, 'a number', fail);
  const offset = field(inputMeta, 'offset', number, 'a number', fail);
  return parsePreprocess(
    { grayscale: true, background: '#000000', do_resize: true, size: { height, width }, resample: 1, rescale_factor: scale, image_mean: -offset, image_std: 1 },
    { channels: 1, layout: 'NCHW', height, width },
  );
}

/** What the pipeline fixes of the input spec (see InputSpec for dims, scale and offset). */
function inputSpecOf({ output, scale, offset }: ImagePipeline): Omit<InputSpec, 'name'> {
  const same = scale.every((s, c) => s === scale[0] && offset[c] === offset[0]);
  const ends = scale.flatMap((s, c) => [offset[c]!, 255 * s + offset[c]!]);
  const lo = Math.min(...ends);
  return {
    height: output.height,
    width: output.width,
    channels: output.channels,
    dims: output.layout === 'NCHW' ? [output.channels, output.height, output.width] : [output.height, output.width, output.channels],
    scale: same ? scale[0]! : (Math.max(...ends) - lo) / 255,
    offset: same ? offset[0]! : lo,
  };
}
