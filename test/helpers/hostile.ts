import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import type { Bundle } from '../../matryoshka/bundle.js';
import { float32Bytes } from '../../cli/clients.js';

/** One malformed request, where it goes, and the answer it must get. */
export interface HostileCase {
  kind: string;
  target: 'cascade' | 'encoder';
  /** A ClassifyRequest or EncodeRequest as the client serialises it (possibly with values no typed client allows). */
  request: Record<string, unknown>;
  code: status;
  /** The whole message, or a pattern for it. */
  message: string | RegExp;
  /** Whether the cascade passes it on to the encoder (which then refuses it). */
  reachesEncoder: boolean;
}

/** Sample images, encoded, that the corpus cuts, patches and converts. */
export interface ImageSamples {
  png: Buffer[];
  jpeg: Buffer[];
  /** Other formats (GIF, WebP, TIFF, AVIF, SVG) with the name sharp reports for each. */
  others: { format: string; bytes: Buffer }[];
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A PNG whose header (IHDR, with a valid CRC) declares `width` × `height`; the pixel data stays tiny. */
export function pngDeclaring(png: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(png);
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}

/** `png` grown to `size` bytes by a private ancillary chunk before IEND, which decoders skip. */
export function pngPaddedTo(png: Buffer, size: number): Buffer {
  const data = size - png.length - 12;
  if (data < 0) throw new Error(`a PNG of ${png.length} bytes cannot be padded to ${size}`);
  const chunk = Buffer.alloc(12 + data);
  chunk.writeUInt32BE(data, 0);
  chunk.write('prVt', 4, 'latin1');
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data)), 8 + data);
  const iend = png.length - 12;
  return Buffer.concat([png.subarray(0, iend), chunk, png.subarray(iend)]);
}

/** A baseline JPEG whose frame header (SOF) declares `width` × `height`. */
export function jpegDeclaring(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i + 8 < out.length; i++)
    if (out[i] === 0xff && out[i + 1]! >= 0xc0 && out[i + 1]! <= 0xc2) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
  throw new Error('no SOF marker in the JPEG');
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * The hostile-input corpus for a bundle, as fast-check arbitraries: every way a request can be
 * wrong that the services must refuse with a precise status and message.
 * @param maxMessageBytes the services' MRL_MAX_MESSAGE_BYTES.
 * @param maxImagePixels the encoder's MRL_MAX_IMAGE_PIXELS.
 */
export function hostileCases(bundle: Bundle, images: ImageSamples, maxMessageBytes: number, maxImagePixels: number): fc.Arbitrary<HostileCase> {
  const { height: H, width: W } = bundle.input;
  const pixels = H * W;
  const accepted = [[H, W], [1, H, W], [1, 1, H, W]];
  const nesting = bundle.nesting.join(', ');
  const target = fc.constantFrom<'cascade' | 'encoder'>('cascade', 'encoder');
  const ok = fc.float({ min: -10, max: 10, noNaN: true });
  const shapeArb = fc.constantFrom(...accepted);
  const IA = status.INVALID_ARGUMENT;

  /** An input fault, sent to either service: the cascade forwards image and tensor inputs as they are. */
  const inputFault = (kind: string, input: fc.Arbitrary<{ input: Record<string, unknown>; message: string | RegExp }>) =>
    fc.tuple(target, input).map(([t, { input: request, message }]): HostileCase => ({
      kind,
      target: t,
      request,
      code: IA,
      message,
      reachesEncoder: true,
    }));

  // Shapes are uint32 on the wire: a negative dimension arrives as its two's complement.
  const dim = fc.oneof(fc.integer({ min: -3, max: -1 }), fc.constant(0), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 2 ** 16, max: 2 ** 32 - 1 }));
  const badShape = fc
    .array(dim, { maxLength: 5 })
    .map((shape) => shape.map((d) => d >>> 0))
    .filter((shape) => !accepted.some((s) => s.length === shape.length && s.every((d, i) => d === shape[i])))
    .map((shape) => ({
      input: { tensor: { shape, values: [1, 2, 3] } },
      message: `tensor shape ${fmt(shape)} is not one of ${accepted.map(fmt).join(', ')}`,
    }));
  const wrongCount = fc
    .tuple(shapeArb, fc.integer({ min: 1, max: 3 * pixels }).filter((n) => n !== pixels))
    .map(([shape, n]) => ({
      input: { tensor: { shape, values: new Array<number>(n).fill(0.5) } },
      message: `tensor has ${n} values; shape ${fmt(shape)} needs ${pixels}`,
    }));
  const wrongRaw = fc
    .tuple(shapeArb, fc.integer({ min: 1, max: 12 * pixels }).filter((n) => n !== 4 * pixels))
    .map(([shape, n]) => ({
      input: { tensor: { shape, raw: Buffer.alloc(n, 7) } },
      message: `tensor raw has ${n} bytes; shape ${fmt(shape)} needs ${4 * pixels} (float32)`,
    }));
  const bothOrNeither = fc.tuple(shapeArb, fc.boolean()).map(([shape, both]) => ({
    input: { tensor: both ? { shape, values: new Array<number>(pixels).fill(0), raw: Buffer.alloc(4 * pixels) } : { shape } },
    message: 'tensor must set exactly one of values or raw',
  }));
  const special = fc.constantFrom(Number.NaN, Infinity, -Infinity);
  const nonFiniteTensor = fc
    .tuple(shapeArb, fc.uniqueArray(fc.integer({ min: 0, max: pixels - 1 }), { minLength: 1, maxLength: 4 }), special, ok, fc.boolean())
    .map(([shape, at, bad, fill, asRaw]) => {
      const values = new Array<number>(pixels).fill(fill);
      for (const i of at) values[i] = bad;
      const first = Math.min(...at);
      return {
        input: { tensor: asRaw ? { shape, raw: float32Bytes(Float32Array.from(values)) } : { shape, values } },
        message: `tensor value ${first} is ${bad}; values must be finite`,
      };
    });
  // Finite, but so large that the model overflows: refused once the encoder sees its embedding.
  const overflowingTensor = fc
    .tuple(shapeArb, fc.float({ min: Math.fround(1e38), max: Math.fround(3.4e38), noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.boolean())
    .map(([shape, v, negative, asRaw]) => {
      const values = new Array<number>(pixels).fill(negative ? -v : v);
      return {
        input: { tensor: asRaw ? { shape, raw: float32Bytes(Float32Array.from(values)) } : { shape, values } },
        message: /^input gave a non-finite embedding: its values are far outside the -?[\d.e+-]+ to -?[\d.e+-]+ the model takes \(pixel byte × scale \+ offset\)$/,
      };
    });
  const emptyImage = fc.constant({ input: { image: Buffer.alloc(0) }, message: 'image is empty' });
  const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];
  const notImage = fc
    .uint8Array({ minLength: 1, maxLength: 512 })
    .filter((b) => !PNG_MAGIC.every((m, i) => b[i] === m) && !(b[0] === 0xff && b[1] === 0xd8))
    .map((b) => ({
      input: { image: Buffer.from(b) },
      message: /^image is not a decodable PNG or JPEG$|^image format \w+ is not supported; send PNG or JPEG$/,
    }));
  // Cut before the image data ends (a PNG missing only its 12-byte IEND trailer still decodes whole).
  const truncated = fc
    .tuple(fc.constantFrom(...images.png, ...images.jpeg), fc.double({ min: 0, max: 1, noNaN: true }))
    .map(([img, at]) => ({
      input: { image: img.subarray(0, 1 + Math.floor(at * (img.length - 14))) },
      message: /^image is not a decodable PNG or JPEG$|^image could not be decoded: /,
    }));
  const otherFormat = fc.constantFrom(...images.others).map(({ format, bytes }) => ({
    input: { image: bytes },
    message: `image format ${format} is not supported; send PNG or JPEG`,
  }));
  // Decompression bombs: a tiny file whose header declares more pixels than the encoder decodes.
  const tooMany = (max: number) =>
    fc.tuple(fc.integer({ min: 1, max }), fc.integer({ min: 1, max })).filter(([w, h]) => w * h > maxImagePixels);
  const bomb = fc
    .oneof(
      fc.tuple(fc.constantFrom(...images.png), tooMany(2 ** 24)).map(([png, [w, h]]) => ({ bytes: pngDeclaring(png, w, h), w, h })),
      fc.tuple(fc.constantFrom(...images.jpeg), tooMany(65_500)).map(([jpeg, [w, h]]) => ({ bytes: jpegDeclaring(jpeg, w, h), w, h })),
    )
    .map(({ bytes, w, h }) => ({
      input: { image: bytes },
      message: `image is ${w}x${h}, more than the ${maxImagePixels} pixels this encoder decodes`,
    }));

  const cascadeOnly = (kind: string, arb: fc.Arbitrary<{ request: Record<string, unknown>; message: string | RegExp }>) =>
    arb.map(({ request, message }): HostileCase => ({ kind, target: 'cascade', request, code: IA, message, reachesEncoder: false }));
  const validEmbedding = fc.constant({ embedding: { values: new Array<number>(bundle.nesting[0]!).fill(0.1) } });
  const wrongEmbeddingLength = cascadeOnly(
    'embedding of the wrong length',
    fc
      .integer({ min: 0, max: 2 * bundle.embeddingDim })
      .filter((n) => !bundle.nesting.includes(n))
      .map((n) => ({
        request: { embedding: { values: new Array<number>(n).fill(0.1) } },
        message: `embedding has ${n} values; expected one of the nesting sizes ${nesting}`,
      })),
  );
  const nonFiniteEmbedding = cascadeOnly(
    'NaN or Infinity in an embedding',
    fc
      .tuple(fc.constantFrom(...bundle.nesting), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), special)
      .map(([n, at, bad]) => {
        const values = new Array<number>(n).fill(0.1);
        const i = Math.floor(at * n);
        values[i] = bad;
        return { request: { embedding: { values } }, message: `embedding value ${i} is ${bad}; values must be finite` };
      }),
  );
  // Finite in float32, but beyond what the heads' float32 logits hold (these heads' weights bound
  // an embedding value far below 1e38).
  const hugeEmbedding = cascadeOnly(
    'embedding too large for the heads',
    fc
      .tuple(fc.constantFrom(...bundle.nesting), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.double({ min: 1e38, max: 3.4e38, noNaN: true }), fc.boolean())
      .map(([n, at, huge, negative]) => {
        const values = new Array<number>(n).fill(0.1);
        const i = Math.floor(at * n);
        values[i] = negative ? -huge : huge;
        const shown = String(Math.fround(values[i]!)).replace(/[.+]/g, '\\$&');
        return {
          request: { embedding: { values } },
          message: new RegExp(`^embedding value ${i} is ${shown}; this model's heads take values of at most \\d\\.\\d\\de\\+\\d+ in magnitude \\(larger ones overflow their float32 logits\\)$`),
        };
      }),
  );
  // Enums are int32 on the wire; an unknown value arrives as its number.
  const unknownPolicy = cascadeOnly(
    'unknown enum value',
    fc
      .tuple(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).filter((p) => p < 0 || p > 2), validEmbedding)
      .map(([policy, input]) => ({
        request: { ...input, policy },
        message: `policy ${policy} is not a known value (POLICY_CASCADE or POLICY_FULL)`,
      })),
  );
  const badMaxDimension = cascadeOnly(
    'max_dimension not a nesting size',
    fc
      .tuple(fc.integer({ min: -5, max: 2 ** 32 - 1 }).map((d) => d >>> 0).filter((d) => d !== 0 && !bundle.nesting.includes(d)), validEmbedding)
      .map(([d, input]) => ({ request: { ...input, max_dimension: d }, message: `max_dimension ${d} is not 0 or one of the nesting sizes ${nesting}` })),
  );
  const topK = cascadeOnly(
    'top_k beyond the classes',
    fc
      .tuple(fc.integer({ min: bundle.labels.length + 1, max: 2 ** 32 - 1 }), validEmbedding)
      .map(([k, input]) => ({ request: { ...input, top_k: k }, message: `top_k ${k} is more than the ${bundle.labels.length} classes` })),
  );
  const noInput = fc.oneof(
    cascadeOnly(
      'empty request',
      fc.constantFrom<Record<string, unknown>>({}, { top_k: 1 }, { policy: 'POLICY_FULL' }, { max_dimension: bundle.nesting[0] }).map((request) => ({
        request,
        message: 'request has no input: set image, tensor or embedding',
      })),
    ),
    fc.constantFrom<Record<string, unknown>>({}, { normalize: true }, { dimension: bundle.nesting[0] }).map(
      (request): HostileCase => ({ kind: 'empty request', target: 'encoder', request, code: IA, message: 'request has no input: set image or tensor', reachesEncoder: false }),
    ),
  );
  const badDimension = fc
    .integer({ min: 1, max: 2 ** 32 - 1 })
    .filter((d) => !bundle.nesting.includes(d))
    .map(
      (d): HostileCase => ({
        kind: 'Encode dimension not a nesting size',
        target: 'encoder',
        request: { tensor: { shape: [H, W], values: new Array<number>(pixels).fill(0) }, dimension: d },
        code: IA,
        message: `dimension ${d} is not 0 or one of the nesting sizes ${nesting}`,
        reachesEncoder: false,
      }),
    );
  // Beyond MRL_MAX_MESSAGE_BYTES: grpc-js refuses the message before any handler sees it.
  const oversized = fc
    .tuple(target, fc.integer({ min: maxMessageBytes + 1, max: maxMessageBytes + 65_536 }), fc.constantFrom('image', 'tensor', 'embedding'))
    .filter(([t, , field]) => !(t === 'encoder' && field === 'embedding'))
    .map(([t, bytes, field]): HostileCase => {
      const floats = Math.ceil(bytes / 4);
      const input =
        field === 'image'
          ? { image: Buffer.alloc(bytes, 0x89) }
          : field === 'tensor'
            ? { tensor: { shape: [H, W], raw: Buffer.alloc(floats * 4) } }
            : { embedding: { values: new Array<number>(floats).fill(0) } };
      return {
        kind: 'message over the size limit',
        target: t,
        request: input,
        code: status.RESOURCE_EXHAUSTED,
        message: /larger than max/,
        reachesEncoder: false,
      };
    });

  return fc.oneof(
    inputFault('wrong, zero, negative or huge tensor shape', badShape),
    inputFault('tensor values not matching the shape', wrongCount),
    inputFault('tensor raw bytes not matching the shape', wrongRaw),
    inputFault('tensor with both or neither of values and raw', bothOrNeither),
    inputFault('NaN or Infinity in a tensor', nonFiniteTensor),
    inputFault('tensor values so large the model overflows', overflowingTensor),
    inputFault('empty image', emptyImage),
    inputFault('bytes that are not an image', notImage),
    inputFault('truncated PNG or JPEG', truncated),
    inputFault('image format other than PNG or JPEG', otherFormat),
    inputFault('decompression bomb (header declares too many pixels)', bomb),
    wrongEmbeddingLength,
    nonFiniteEmbedding,
    hugeEmbedding,
    unknownPolicy,
    badMaxDimension,
    topK,
    noInput,
    badDimension,
    oversized,
  );
}
