/** The labelled embeddings `mrl fit` fits on: from an image folder through the bundle's encoder, or from a JSONL file. */
import { imageSize } from '../services/common/tensorChecks.js';
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import * as ort from 'onnxruntime-node';
import type { BundleEncoder, BundleInfo, InputSpec } from '../matryoshka/bundle.js';
import type { LabelledEmbeddings } from '../matryoshka/fit.js';
import { imageToInput } from '../matryoshka/modelInput.js';
import { maxImagePixels } from '../services/common/settings.js';
import { servingSessionOptions } from '../services/encoder/sessionOptions.js';
import { progressBar } from './progress.js';

/** Inputs for the encoder: `load(i)` gives input i preprocessed, `name(i)` what error messages call it. */
export interface InputSource {
  count: number;
  load(i: number): Promise<Float32Array> | Float32Array;
  name(i: number): string;
}

/** Images per onnxruntime run. */
const BATCH = 64;

/** What running an encoder takes: its file, its input's name and dims, and its output's name and size. */
export type EncoderModel = Pick<BundleInfo, 'embeddingDim'> & Pick<BundleEncoder, 'encoderPath' | 'outputName'> & { input: Pick<InputSpec, 'name' | 'dims'> };

/**
 * Embeds every input with the bundle's encoder on onnxruntime, with the session options the
 * encoder service uses, BATCH at a time: count × embedding_dim values.
 */
export async function embedInputs(bundle: EncoderModel, source: InputSource, label: string, quiet: boolean): Promise<Float32Array> {
  const per = imageSize(bundle.input);
  const d = bundle.embeddingDim;
  const session = await ort.InferenceSession.create(bundle.encoderPath, servingSessionOptions(0));
  const out = new Float32Array(source.count * d);
  const bar = progressBar(label, source.count, quiet);
  try {
    for (let first = 0; first < source.count; first += BATCH) {
      const n = Math.min(BATCH, source.count - first);
      const batch = new Float32Array(n * per);
      await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          try {
            batch.set(await source.load(first + i), i * per);
          } catch (err) {
            throw new Error(`${source.name(first + i)}: ${(err as Error).message}`);
          }
        }),
      );
      const z = (await session.run({ [bundle.input.name]: new ort.Tensor('float32', batch, [n, ...bundle.input.dims]) }))[bundle.outputName]!.data as Float32Array;
      if (z.length !== n * d) throw new Error(`the encoder gave ${z.length / n} values per input; model.json says embedding_dim ${d}`);
      const bad = z.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`${source.name(first + Math.floor(bad / d))}: the encoder gave a non-finite embedding`);
      out.set(z, first * d);
      bar.tick(first + n);
    }
  } finally {
    bar.end();
    await session.release();
  }
  return out;
}

/** The folder a label's images are in: its name, with "/" (which a file name cannot hold) written "_". */
export function labelFolder(label: string): string {
  return label.replaceAll('/', '_');
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/** An ImageFolder's images, in label order and by file name within a label. */
export interface ImageFolder {
  files: string[];
  labels: number[];
  /** Files in label folders that are not .png, .jpg or .jpeg. */
  skipped: number;
}

/**
 * Lists `folder/<label>/<image>`: each folder must be named after one of `labels` (see
 * labelFolder); a folder that is not is refused, naming it. Files beside the label folders, and
 * hidden entries, are ignored.
 */
export async function readImageFolder(folder: string, labels: readonly string[]): Promise<ImageFolder> {
  let entries;
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (err) {
    throw new Error(`--data ${folder}: cannot read it (${(err as Error).message})`);
  }
  const byLabel = labels.map(() => [] as string[]);
  let skipped = 0;
  for (const entry of entries.filter((e) => e.isDirectory() && !e.name.startsWith('.'))) {
    const exact = labels.indexOf(entry.name);
    const matches = labels.filter((l) => labelFolder(l) === entry.name);
    const index = exact >= 0 ? exact : matches.length === 1 ? labels.indexOf(matches[0]!) : -1;
    if (index < 0)
      throw new Error(
        `--data ${folder}: folder ${JSON.stringify(entry.name)} is not one of the bundle's labels (${labels.join(', ')}); ` +
          'name each folder after a label, with "_" for a "/" in it',
      );
    for (const file of (await readdir(join(folder, entry.name), { withFileTypes: true })).filter((f) => (f.isFile() || f.isSymbolicLink()) && !f.name.startsWith('.'))) {
      if (IMAGE_EXTENSIONS.has(extname(file.name).toLowerCase())) byLabel[index]!.push(join(folder, entry.name, file.name));
      else skipped++;
    }
  }
  const files = byLabel.flatMap((list) => list.sort());
  if (files.length === 0) throw new Error(`--data ${folder} holds no images: give it one folder per label, such as ${join(folder, labelFolder(labels[0]!), 'image.png')}`);
  return {
    files,
    labels: byLabel.flatMap((list, c) => list.map(() => c)),
    skipped,
  };
}

/** An image folder's images embedded with the bundle's encoder and preprocessing, as the encoder service embeds them. */
export async function embedImageFolder(bundle: BundleInfo & BundleEncoder, images: ImageFolder, quiet: boolean): Promise<LabelledEmbeddings> {
  const maxPixels = Number(maxImagePixels.default);
  const source: InputSource = {
    count: images.files.length,
    load: async (i) => imageToInput(await readFile(images.files[i]!), bundle.preprocess, maxPixels),
    name: (i) => images.files[i]!,
  };
  const embeddings = await embedInputs(bundle, source, `embedding ${images.files.length} images`, quiet);
  return { n: images.files.length, dim: bundle.embeddingDim, embeddings, labels: images.labels };
}

/**
 * Reads `{"embedding": [...], "label": "..."}` lines (blank lines skipped): each embedding
 * embedding_dim finite numbers, each label one of the bundle's. Refusals name the line.
 */
export async function readEmbeddingsJsonl(file: string, bundle: BundleInfo): Promise<LabelledEmbeddings> {
  const d = bundle.embeddingDim;
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  let line = 0;
  function fail(message: string): never {
    throw new Error(`--embeddings ${file} line ${line}: ${message}`);
  }
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  try {
    for await (const text of lines) {
      line++;
      if (!text.trim()) continue;
      let record: unknown;
      try {
        record = JSON.parse(text);
      } catch (err) {
        fail(`not JSON (${(err as Error).message})`);
      }
      const { embedding, label } = (typeof record === 'object' && record !== null ? record : {}) as { embedding?: unknown; label?: unknown };
      if (!Array.isArray(embedding)) fail(`"embedding" must be an array of ${d} numbers`);
      if (embedding.length !== d) fail(`"embedding" has ${embedding.length} values; the bundle's embedding_dim is ${d}`);
      // Checked as float32, the type the heads compute in: 1e39 is finite in JSON, not there.
      const row = Float32Array.from(embedding, (v) => (typeof v === 'number' ? v : NaN));
      const bad = row.findIndex((v) => !Number.isFinite(v));
      const shown = (v: unknown) => (typeof v === 'number' ? String(v) : JSON.stringify(v));
      if (bad >= 0) fail(`"embedding"[${bad}] is ${shown(embedding[bad])}, not a finite float32 number`);
      const index = typeof label === 'string' ? bundle.labels.indexOf(label) : -1;
      if (index < 0) fail(`"label" ${JSON.stringify(label)} is not one of the bundle's labels (${bundle.labels.join(', ')})`);
      rows.push(row);
      labels.push(index);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw new Error(`--embeddings ${file}: cannot read it (${(err as Error).message})`);
    throw err;
  }
  if (rows.length === 0) throw new Error(`--embeddings ${file} holds no embeddings: write one {"embedding": [...], "label": "..."} object a line`);
  const embeddings = new Float32Array(rows.length * d);
  rows.forEach((row, i) => embeddings.set(row, i * d));
  return { n: rows.length, dim: d, embeddings, labels };
}
