import sharp from 'sharp';

export type PhotoFormat = 'jpeg' | 'png-alpha' | 'png';

export interface Photo {
  bytes: Buffer;
  format: PhotoFormat;
  width: number;
  height: number;
}

/** mulberry32: a small seeded generator, so every run draws the same photos. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A Fashion-MNIST item (28×28, light object on black) as a user would photograph it: a dark,
 * tinted object on a light, slightly tinted and noisy background, 100–300 px a side, upscaled
 * and placed off-centre; as JPEG, as PNG with the background transparent, or as opaque PNG.
 */
export async function fashionPhoto(item: Uint8Array, format: PhotoFormat, random: () => number): Promise<Photo> {
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const width = int(100, 300);
  const height = int(100, 300);
  const side = Math.round(Math.min(width, height) * (0.5 + 0.4 * random()));
  const left = int(0, width - side);
  const top = int(0, height - side);
  const mask = await sharp(item, { raw: { width: 28, height: 28, channels: 1 } }).resize(side, side, { kernel: 'cubic' }).toColourspace('b-w').raw().toBuffer();
  const light = int(205, 255);
  const paper = [0, 1, 2].map(() => Math.min(255, light - int(0, 12)));
  // A dark colour: each channel up to 110, one of them possibly brighter (a red shoe, a blue coat).
  const ink = [0, 1, 2].map(() => int(0, 110));
  ink[int(0, 2)] = int(0, 170);

  const channels = format === 'png-alpha' ? 4 : 3;
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const inside = x >= left && x < left + side && y >= top && y < top + side;
      const m = inside ? mask[(y - top) * side + (x - left)]! / 255 : 0;
      const at = (y * width + x) * channels;
      if (format === 'png-alpha') {
        // Cut out: the object's colour, its coverage as alpha; transparent pixels stored black, as many tools do.
        for (let c = 0; c < 3; c++) data[at + c] = m > 0 ? ink[c]! : 0;
        data[at + 3] = Math.round(255 * m);
      } else {
        const noise = int(-4, 4);
        for (let c = 0; c < 3; c++) data[at + c] = Math.max(0, Math.min(255, Math.round(paper[c]! + (ink[c]! - paper[c]!) * m + noise)));
      }
    }
  const image = sharp(data, { raw: { width, height, channels } });
  const bytes = format === 'jpeg' ? await image.jpeg({ quality: int(70, 95) }).toBuffer() : await image.png().toBuffer();
  return { bytes, format, width, height };
}

/** `count` photos of `items` (n × 784 bytes) in turn, cycling JPEG, PNG with alpha and opaque PNG, drawn from `seed`. */
export async function fashionPhotos(items: Uint8Array, count: number, seed: number): Promise<Photo[]> {
  const random = seeded(seed);
  const formats: PhotoFormat[] = ['jpeg', 'png-alpha', 'png'];
  const photos: Photo[] = [];
  for (let i = 0; i < count; i++) photos.push(await fashionPhoto(items.subarray(i * 784, (i + 1) * 784), formats[i % 3]!, random));
  return photos;
}
