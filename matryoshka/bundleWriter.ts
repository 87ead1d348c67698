import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HeadKind, LinearHead } from './bundle.js';

/** The heads file `writeHeads` writes, as the default bundles name it. */
export const HEADS_FILE = 'heads.bin';

/**
 * model.json's `heads` block for heads laid out one after another in one float32 file, each
 * head's weight (classes × size, row-major) then its bias; offsets count floats.
 */
function headsBlock(kind: HeadKind, heads: readonly LinearHead[]): { block: Record<string, unknown>; floats: Float32Array } {
  const floats = new Float32Array(heads.reduce((n, h) => n + h.weight.length + h.bias.length, 0));
  let offset = 0;
  const tensors = heads.map(({ size, weight, bias }) => {
    floats.set(weight, offset);
    floats.set(bias, offset + weight.length);
    const tensor = { size, weight: { offset, shape: [bias.length, size] }, bias: { offset: offset + weight.length, shape: [bias.length] } };
    offset += weight.length + bias.length;
    return tensor;
  });
  return { block: { type: kind, file: HEADS_FILE, dtype: 'float32', tensors }, floats };
}

/**
 * Writes `heads` into bundle folder `dir`: heads.bin, and model.json with its `heads` block and
 * `fields` (thresholds, temperatures, calibration, …) set, the rest of model.json kept. Each file
 * is written beside itself and renamed over the old one, so a reader sees old or new, never half.
 */
export async function writeHeads(dir: string, kind: HeadKind, heads: readonly LinearHead[], fields: Record<string, unknown>): Promise<void> {
  const { block, floats } = headsBlock(kind, heads);
  const path = join(dir, 'model.json');
  const meta = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  const replace = async (file: string, content: string | Uint8Array) => {
    await writeFile(`${file}.tmp`, content);
    await rename(`${file}.tmp`, file);
  };
  await replace(join(dir, HEADS_FILE), new Uint8Array(floats.buffer));
  await replace(path, `${JSON.stringify({ ...meta, heads: block, ...fields }, null, 2)}\n`);
}
