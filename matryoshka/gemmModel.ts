/**
 * A one-node ONNX model, Y = X · Wᵀ + C (Gemm, transB = 1), written directly as protobuf: what a
 * cascade stage's head is as a matrix product over a batch, for onnxruntime to run at BLAS speed.
 * Field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto).
 */

/** Protobuf wire encoding, the little that ONNX needs. */
class Writer {
  readonly #parts: Uint8Array[] = [];

  #varint(v: number): void {
    const bytes: number[] = [];
    while (v > 0x7f) {
      bytes.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    bytes.push(v);
    this.#parts.push(Uint8Array.from(bytes));
  }

  int(field: number, v: number): this {
    this.#varint(field * 8);
    this.#varint(v);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.#varint(field * 8 + 2);
    this.#varint(b.length);
    this.#parts.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: Writer) => void): this {
    const w = new Writer();
    build(w);
    return this.bytes(field, w.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

const FLOAT = 1;
const ATTRIBUTE_INT = 2;

/** ValueInfoProto of a float tensor: `dims` entries are sizes, or names of symbolic sizes. */
const tensorInfo = (w: Writer, name: string, dims: (number | string)[]) =>
  w.string(1, name).message(2, (type) =>
    type.message(1, (tensor) =>
      tensor.int(1, FLOAT).message(2, (shape) => {
        for (const d of dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      }),
    ),
  );

/** TensorProto of float32 values. */
const initializer = (w: Writer, name: string, dims: number[], values: Float32Array) => {
  for (const d of dims) w.int(1, d);
  w.int(2, FLOAT).string(8, name).bytes(9, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
};

export interface GemmStage {
  /** Rows of W: the classes. */
  classes: number;
  /** Columns of W: the inputs each row of X has. */
  inputs: number;
  /** classes × inputs, row-major. */
  weight: Float32Array;
  /** The bias added (`classes` values), or absent: then the model takes C, [N, classes], as its second input (the previous stage's logits). */
  bias?: Float32Array;
}

/** Inputs `x` [N, inputs] (and `c` [N, classes] when the stage has no bias); output `y` [N, classes]. */
export function gemmModel(stage: GemmStage): Uint8Array {
  const { classes, inputs, weight, bias } = stage;
  return new Writer()
    .int(1, 8) // ir_version
    .string(2, 'mrl-cascade')
    .message(8, (opset) => opset.string(1, '').int(2, 13))
    .message(7, (graph) => {
      graph.message(1, (node) =>
        node
          .string(1, 'x')
          .string(1, 'w')
          .string(1, 'c')
          .string(2, 'y')
          .string(3, 'head')
          .string(4, 'Gemm')
          .message(5, (attr) => attr.string(1, 'transB').int(3, 1).int(20, ATTRIBUTE_INT)),
      );
      graph.string(2, 'head');
      graph.message(5, (t) => initializer(t, 'w', [classes, inputs], weight));
      if (bias) graph.message(5, (t) => initializer(t, 'c', [classes], bias));
      graph.message(11, (v) => tensorInfo(v, 'x', ['N', inputs]));
      if (!bias) graph.message(11, (v) => tensorInfo(v, 'c', ['N', classes]));
      graph.message(12, (v) => tensorInfo(v, 'y', ['N', classes]));
    })
    .finish();
}
