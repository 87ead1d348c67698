import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { type AnyBundle, fitCommand, inputTarget, nestingError, readBundle } from '../matryoshka/bundle.js';
import { type Layout, PreprocessError, parsePreprocess } from '../matryoshka/image/preprocess.js';
import { NORMALIZATIONS, type Normalization } from '../matryoshka/normalize.js';

/** `mrl import`'s options, as given on the command line (validated by `importBundle`). */
export interface ImportOptions {
  /** The ONNX image encoder. Exactly one of `encoder` and `embeddingDim`. */
  encoder?: string;
  /** Instead of `encoder`: the embedding size of an embeddings-only bundle. */
  embeddingDim?: string;
  /** Class names, one per line. */
  labels?: string;
  /** Matryoshka sizes, comma-separated, ascending, the last the embedding size. */
  nesting?: string;
  /** With `encoder` (required there): the image pipeline, a JSON object of model.json `preprocess` fields. */
  preprocess?: string;
  /** With `encoder`: the embedding output's name; needed only when the model has several outputs. */
  output?: string;
  /** With `encoder`: NCHW or NHWC, needed only when the input's shape does not tell. */
  layout?: string;
  /** `none` (default), `l2` or `layer_norm_l2`. */
  normalization?: string;
  /** Default: the `out` folder's name. */
  name?: string;
  /** Default `1.0.0`. */
  version?: string;
  /** The new bundle's folder: created if missing, refused if it already holds a model.json. */
  out?: string;
}

function fail(message: string): never {
  throw new Error(`import: ${message}`);
}

/** Positive integers, comma-separated. */
function parseNesting(text: string): number[] {
  const sizes = text.split(',').map((s) => s.trim());
  if (!sizes.every((s) => /^\d+$/.test(s) && Number(s) > 0)) fail(`--nesting ${text}: give positive integers separated by commas, such as 4,8,16,32,64`);
  return sizes.map(Number);
}

/** One label a line, trimmed; trailing blank lines are ignored, any other blank line or a repeat is refused. */
function parseLabels(text: string, file: string): string[] {
  const body = text.replace(/^\uFEFF/, '').trimEnd();
  if (!body) fail(`--labels ${file} has no labels: write one class name per line`);
  const labels = body.split(/\r?\n/).map((l) => l.trim());
  const first = new Map<string, number>();
  labels.forEach((label, i) => {
    if (!label) fail(`--labels ${file}: line ${i + 1} is empty; write one class name per line`);
    const seen = first.get(label);
    if (seen !== undefined) fail(`--labels ${file}: line ${i + 1} repeats ${JSON.stringify(label)} (line ${seen + 1}); labels must be distinct`);
    first.set(label, i);
  });
  if (labels.length < 2) fail(`--labels ${file} has 1 label; a classifier needs at least 2`);
  return labels;
}

const describe = (v: ort.InferenceSession.ValueMetadata) => (v.isTensor ? `${v.name} ${v.type} [${v.shape.join(', ')}]` : `${v.name} (not a tensor)`);
const isChannels = (d: number) => d === 1 || d === 3;

/** What `mrl import` reads from an ONNX encoder: model.json's `input`, `preprocess` and `output`, and the embedding size. */
interface EncoderManifest {
  input: { name: string; dtype: 'float32'; shape: number[]; layout: Layout };
  preprocess: unknown;
  output: { name: string };
  embeddingDim: number;
}

/**
 * Loads the ONNX model, checks its one float32 image input and picks its float32 [batch, d]
 * embedding output, checks the pipeline fills the input, and runs one blank image through it.
 */
async function inspectEncoder(path: string, options: ImportOptions): Promise<EncoderManifest> {
  if (options.preprocess === undefined) fail('--encoder needs --preprocess FILE: the image pipeline (a Hugging Face preprocessor_config.json works)');
  let preprocess: unknown;
  try {
    preprocess = JSON.parse(await readFile(options.preprocess, 'utf8'));
  } catch (err) {
    fail(`--preprocess ${options.preprocess}: cannot read it as JSON (${(err as Error).message})`);
  }
  if (options.layout !== undefined && options.layout !== 'NCHW' && options.layout !== 'NHWC') fail(`--layout must be NCHW or NHWC, not ${options.layout}`);
  const file = basename(path);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path);
  } catch (err) {
    fail(`--encoder ${path} is not an ONNX model onnxruntime can load (${(err as Error).message.split('\n')[0]})`);
  }
  try {
    const inputs = session.inputMetadata;
    const input = inputs[0]!;
    if (inputs.length !== 1 || !input.isTensor || input.type !== 'float32')
      fail(
        `${file} has ${inputs.length === 1 ? 'the input' : `${inputs.length} inputs:`} ${inputs.map(describe).join('; ')}; ` +
          'mrl import takes an image encoder with one float32 input. For another model, compute the embeddings elsewhere and import with --embedding-dim D',
      );
    if (input.shape.length !== 4) fail(`${file} input ${describe(input)}: an image input has 4 dimensions, NCHW or NHWC`);
    const shape = input.shape.map((d) => (typeof d === 'number' && d > 0 ? d : -1));
    if (shape[0] !== -1)
      fail(`${file} input ${describe(input)} has a fixed batch size; export it with a dynamic batch axis (torch.onnx.export's dynamic_axes={"${input.name}": {0: "batch"}})`);
    const guess = isChannels(shape[1]!) === isChannels(shape[3]!) ? undefined : isChannels(shape[1]!) ? 'NCHW' : 'NHWC';
    const layout = (options.layout as Layout | undefined) ?? guess ?? fail(`${file} input ${describe(input)}: its shape does not tell NCHW from NHWC; give --layout`);
    const target = inputTarget(shape, layout);
    if (typeof target === 'string') fail(`${file} input ${describe(input)} ${target}`);
    let size: { height: number; width: number };
    try {
      size = parsePreprocess(preprocess, target).output;
    } catch (err) {
      if (err instanceof PreprocessError) fail(`--preprocess ${options.preprocess}: ${err.message}`);
      throw err;
    }

    const outputs = session.outputMetadata;
    const list = outputs.map(describe).join('; ');
    const output =
      options.output !== undefined
        ? (outputs.find((o) => o.name === options.output) ?? fail(`--output ${options.output}: ${file} has no output of that name; its outputs: ${list}`))
        : outputs.length === 1
          ? outputs[0]!
          : fail(`${file} has ${outputs.length} outputs (${list}): name the embedding with --output NAME`);
    if (!output.isTensor || output.type !== 'float32' || output.shape.length !== 2)
      fail(`${file} output ${describe(output)}: the embedding must be float32 [batch, d]`);

    const dims = layout === 'NCHW' ? [1, target.channels, size.height, size.width] : [1, size.height, size.width, target.channels];
    const blank = new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await session.run({ [input.name]: blank }, [output.name]);
    } catch (err) {
      fail(`${file} failed on a blank ${dims.join('x')} input (${(err as Error).message.split('\n')[0]})`);
    }
    const got = result[output.name] as ort.Tensor;
    const d = got.dims[1]!;
    const stated = output.shape[1];
    if (got.dims.length !== 2 || got.dims[0] !== 1 || (typeof stated === 'number' && stated !== d))
      fail(`${file} gave output ${output.name} of shape [${got.dims.join(', ')}] for one input; its graph says [${output.shape.join(', ')}]`);
    if (!(got.data as Float32Array).every(Number.isFinite)) fail(`${file} gave a non-finite embedding for a blank input`);
    return { input: { name: input.name, dtype: 'float32', shape, layout }, preprocess, output: { name: output.name }, embeddingDim: d };
  } finally {
    await session.release();
  }
}

/**
 * `mrl import`: writes a bundle without heads into `options.out`: model.json, and encoder.onnx
 * copied from `encoder` (or, with `embeddingDim`, an embeddings-only bundle). Every check runs
 * before anything is written. Returns the bundle as the loader reads it back.
 */
export async function importBundle(options: ImportOptions): Promise<AnyBundle> {
  if ((options.encoder === undefined) === (options.embeddingDim === undefined)) fail('give --encoder model.onnx, or --embedding-dim D for an embeddings-only bundle');
  if (options.embeddingDim !== undefined) {
    const extra = (['preprocess', 'output', 'layout'] as const).filter((k) => options[k] !== undefined);
    if (extra.length) fail(`${extra.map((k) => `--${k}`).join(', ')} describe an encoder; an embeddings-only bundle (--embedding-dim) has none`);
  }
  if (options.out === undefined) fail('--out DIR is required: the folder the bundle goes in');
  if (options.labels === undefined) fail('--labels FILE is required: class names, one per line');
  if (options.nesting === undefined) fail('--nesting is required: the Matryoshka sizes, such as 4,8,16,32,64');
  const out = resolve(options.out);
  if (existsSync(join(out, 'model.json'))) fail(`--out ${options.out} already holds a bundle (model.json); import into a new folder`);
  const normalization = (options.normalization ?? 'none') as Normalization;
  if (!NORMALIZATIONS.includes(normalization)) fail(`--normalization must be one of ${NORMALIZATIONS.join(', ')}, not ${options.normalization}`);
  const name = options.name ?? basename(out);
  const version = options.version ?? '1.0.0';
  if (!name || !version) fail('--name and --version must not be empty');
  const nesting = parseNesting(options.nesting);
  let labelsText: string;
  try {
    labelsText = await readFile(options.labels, 'utf8');
  } catch (err) {
    fail(`--labels ${options.labels}: cannot read it (${(err as Error).message})`);
  }
  const labels = parseLabels(labelsText, options.labels);

  let encoder: EncoderManifest | undefined;
  let embeddingDim: number;
  if (options.encoder !== undefined) {
    encoder = await inspectEncoder(options.encoder, options);
    embeddingDim = encoder.embeddingDim;
  } else {
    embeddingDim = Number(options.embeddingDim);
    if (!/^\d+$/.test(options.embeddingDim!) || embeddingDim < 1) fail(`--embedding-dim must be a positive integer, not ${options.embeddingDim}`);
  }
  const badNesting = nestingError(nesting, embeddingDim);
  if (badNesting)
    fail(`${badNesting} (${encoder ? `output ${encoder.output.name} of ${basename(options.encoder!)} has ${embeddingDim} values` : `--embedding-dim ${embeddingDim}`})`);

  const manifest = {
    name,
    version,
    ...(encoder && { input: encoder.input, preprocess: encoder.preprocess, output: encoder.output }),
    embedding_dim: embeddingDim,
    nesting,
    normalization,
    labels,
  };
  await mkdir(out, { recursive: true });
  if (encoder) await copyFile(options.encoder!, join(out, 'encoder.onnx'));
  await writeFile(join(out, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return readBundle(out);
}

/** `mrl import`, printing what it wrote (JSON with `json`) and the next step. */
export async function importCommand(options: ImportOptions, json: boolean): Promise<number> {
  const bundle = await importBundle(options);
  const fit = fitCommand(bundle);
  const input = bundle.meta.input as EncoderManifest['input'] | undefined;
  if (json) {
    const { dir, id, embeddingDim, nesting, normalization, labels } = bundle;
    const encoder = input ? { input, output: bundle.outputName } : null;
    console.log(JSON.stringify({ dir, model: id, encoder, embedding_dim: embeddingDim, nesting, normalization, labels: labels.length, next: fit }));
    return 0;
  }
  console.log(
    [
      `wrote ${bundle.id} to ${bundle.dir} (no heads yet)`,
      `  encoder:        ${input ? `encoder.onnx, input ${JSON.stringify(input.name)} [${input.shape.join(', ')}] ${input.layout}, output ${JSON.stringify(bundle.outputName)} [N, ${bundle.embeddingDim}]` : `none (embeddings-only, ${bundle.embeddingDim} values)`}`,
      `  nesting:        ${bundle.nesting.join(', ')}`,
      `  normalization:  ${bundle.normalization}`,
      `  labels:         ${bundle.labels.length}`,
      `next: ${fit}`,
    ].join('\n'),
  );
  return 0;
}
