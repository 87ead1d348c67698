/**
 * A linear map Y = X · Wᵀ + C as a small ONNX model, written directly as protobuf, for
 * onnxruntime to run over a batch at BLAS speed: a cascade stage's head, with what the exit rule
 * needs of its logits (each row's top class and its probability, the largest of softmax(Y / T)),
 * so that no pass over all classes is left to JavaScript and the logits need not be copied out;
 * bare, the benchmark's baseline; with image axes, a linear image encoder for tests. The product
 * is a MatMul with Wᵀ stored: onnxruntime prepacks a MatMul's constant weight, and at 8 inputs
 * that ran 3× a Gemm with transB. (Its Softmax is vectorised: at 10,000 classes it costs a third
 * of ReduceLogSumExp.) Field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto,
 * AttributeProto, TensorProto, ValueInfoProto); opset 13.
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
const INT64 = 7;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_INTS = 7;

/** ValueInfoProto of a tensor: `dims` entries are sizes, or names of symbolic sizes. */
const tensorInfo = (w: Writer, name: string, dims: (number | string)[], type = FLOAT) =>
  w.string(1, name).message(2, (t) =>
    t.message(1, (tensor) =>
      tensor.int(1, type).message(2, (shape) => {
        for (const d of dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      }),
    ),
  );

/** TensorProto of float32 or int64 values. */
const initializer = (w: Writer, name: string, dims: number[], values: Float32Array | BigInt64Array) => {
  for (const d of dims) w.int(1, d);
  w.int(2, values instanceof Float32Array ? FLOAT : INT64).string(8, name).bytes(9, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
};

export interface LinearModelSpec {
  /** Rows of W: the classes. */
  classes: number;
  /** Columns of W: the inputs each row of X has. */
  inputs: number;
  /** classes × inputs, row-major. */
  weight: Float32Array;
  /** The bias added (`classes` values), or absent: then the model takes C, [N, classes], as its second input (the previous stage's logits). */
  bias?: Float32Array;
  /** With the outputs `top` and `ptop` (default); without, a bare matrix product (the benchmark's baseline). */
  exitStats?: boolean;
  /**
   * `x`'s shape after the batch axis, default [inputs]: with more axes (an image's), x is
   * flattened first, and the model is a linear image encoder (what tests take for a user's model).
   */
  inputDims?: number[];
}

/** A rows × cols row-major matrix, transposed. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c]!;
  return t;
}

/** A NodeProto: `op` from `inputs` to `outputs`, with integer (list) attributes. */
const node = (w: Writer, op: string, inputs: string[], outputs: string[], attributes: Record<string, number | number[]> = {}) => {
  for (const i of inputs) w.string(1, i);
  for (const o of outputs) w.string(2, o);
  w.string(3, outputs[0]!).string(4, op);
  for (const [name, v] of Object.entries(attributes))
    w.message(5, (a) => {
      a.string(1, name);
      if (typeof v === 'number') a.int(3, v).int(20, ATTRIBUTE_INT);
      else {
        for (const x of v) a.int(8, x);
        a.int(20, ATTRIBUTE_INTS);
      }
    });
};

/**
 * Inputs `x` [N, inputs], `t` [N, 1] (each row's temperature), and `c` [N, classes] when the stage
 * has no bias; outputs `y` [N, classes] (the logits), `top` [N, 1] (int64, each row's top class,
 * ties to the lower index) and `ptop` [N] (its probability at temperature t).
 */
export function linearModel(stage: LinearModelSpec): Uint8Array {
  const { classes, inputs, weight, bias, exitStats = true, inputDims = [inputs] } = stage;
  const flat = inputDims.length > 1;
  return new Writer()
    .int(1, 8) // ir_version
    .string(2, 'mrl-cascade')
    .message(8, (opset) => opset.string(1, '').int(2, 13))
    .message(7, (graph) => {
      if (flat) graph.message(1, (n) => node(n, 'Flatten', ['x'], ['flat'], { axis: 1 }));
      graph.message(1, (n) => node(n, 'MatMul', [flat ? 'flat' : 'x', 'wt'], ['xw']));
      graph.message(1, (n) => node(n, 'Add', ['xw', 'c'], ['y']));
      if (exitStats) {
        // TopK of one: ArgMax's class (ties go to the lower index), at a third of ArgMax's cost.
        graph.message(1, (n) => node(n, 'TopK', ['y', 'one'], ['ytop', 'top'], { axis: 1 }));
        graph.message(1, (n) => node(n, 'Div', ['y', 't'], ['scaled']));
        graph.message(1, (n) => node(n, 'Softmax', ['scaled'], ['p'], { axis: 1 }));
        graph.message(1, (n) => node(n, 'ReduceMax', ['p'], ['ptop'], { axes: [1], keepdims: 0 }));
      }
      graph.string(2, 'head');
      graph.message(5, (t) => initializer(t, 'wt', [inputs, classes], transpose(weight, classes, inputs)));
      if (bias) graph.message(5, (t) => initializer(t, 'c', [classes], bias));
      if (exitStats) graph.message(5, (t) => initializer(t, 'one', [1], BigInt64Array.of(1n)));
      graph.message(11, (v) => tensorInfo(v, 'x', ['N', ...inputDims]));
      if (exitStats) graph.message(11, (v) => tensorInfo(v, 't', ['N', 1]));
      if (!bias) graph.message(11, (v) => tensorInfo(v, 'c', ['N', classes]));
      graph.message(12, (v) => tensorInfo(v, 'y', ['N', classes]));
      if (exitStats) {
        graph.message(12, (v) => tensorInfo(v, 'top', ['N', 1], INT64));
        graph.message(12, (v) => tensorInfo(v, 'ptop', ['N']));
      }
    })
    .finish();
}
