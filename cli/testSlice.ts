import sharp from 'sharp';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Bundle, BundleError } from '../matryoshka/bundle.js';

/** The bundle's small, versioned slice of the test split: uint8 images and their labels. */
export interface TestSlice {
  count: number;
  height: number;
  width: number;
  /** count × height × width pixel bytes, row-major. */
  images: Uint8Array;
  labels: Uint8Array;
}

interface SliceMeta {
  file: string;
  count: number;
  images: { offset: number };
  labels: { offset: number };
}

export async function loadTestSlice(bundle: Bundle): Promise<TestSlice> {
  const meta = bundle.meta.test_slice as SliceMeta | undefined;
  if (!meta || typeof meta.file !== 'string' || !Number.isInteger(meta.count))
    throw new BundleError(bundle.dir, 'model.json has no usable "test_slice"');
  const raw = new Uint8Array(await readFile(join(bundle.dir, meta.file)));
  const pixels = bundle.input.height * bundle.input.width;
  const images = raw.subarray(meta.images.offset, meta.images.offset + meta.count * pixels);
  const labels = raw.subarray(meta.labels.offset, meta.labels.offset + meta.count);
  if (images.length !== meta.count * pixels || labels.length !== meta.count)
    throw new BundleError(bundle.dir, `${meta.file} is shorter than test_slice describes`);
  return { count: meta.count, height: bundle.input.height, width: bundle.input.width, images, labels };
}

/** Image `index` of the slice as pixel bytes. */
export function slicePixels(slice: TestSlice, index: number): Uint8Array {
  const n = slice.height * slice.width;
  return slice.images.subarray(index * n, (index + 1) * n);
}

/** Image `index` of the slice as a grayscale PNG, as a client would send it. */
export function slicePng(slice: TestSlice, index: number): Promise<Buffer> {
  return sharp(Buffer.from(slicePixels(slice, index)), { raw: { width: slice.width, height: slice.height, channels: 1 } })
    .png()
    .toBuffer();
}
