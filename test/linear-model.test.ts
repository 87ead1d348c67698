import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { linearModel } from '../matryoshka/linearModel.js';

/** X · Wᵀ + C in float64, row by row: what the model must give. */
function reference(x: Float32Array, n: number, w: Float32Array, classes: number, inputs: number, c: (row: number, cls: number) => number): Float64Array {
  const y = new Float64Array(n * classes);
  for (let r = 0; r < n; r++)
    for (let k = 0; k < classes; k++) {
      let acc = c(r, k);
      for (let j = 0; j < inputs; j++) acc += w[k * inputs + j]! * x[r * inputs + j]!;
      y[r * classes + k] = acc;
    }
  return y;
}

const values = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
const maxError = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a, (v, i) => Math.abs(v - b[i]!)).reduce((m, e) => Math.max(m, e), 0);

/** Each row's top class (ties to the lower index) and its probability at temperature t, in float64. */
function exitStats(y: Float64Array, n: number, classes: number, t: number) {
  return Array.from({ length: n }, (_, r) => {
    const row = y.subarray(r * classes, (r + 1) * classes);
    let top = 0;
    for (let k = 1; k < classes; k++) if (row[k]! > row[top]!) top = k;
    const max = row[top]! / t;
    let sum = 0;
    for (const v of row) sum += Math.exp(v / t - max);
    return { top, ptop: 1 / sum };
  });
}

describe('linearModel: a stage head as an ONNX model written as protobuf', () => {
  const classes = 37;
  const inputs = 19;
  const w = values(classes * inputs, (i) => Math.sin(i * 0.7));
  const x = (n: number) => values(n * inputs, (i) => Math.cos(i * 0.3));

  it.each([1, 5, 64])('with its bias, over a batch of %i, equals X · Wᵀ + b, its top class and that class\'s probability', async (n) => {
    const bias = values(classes, (i) => i / 10 - 1);
    const session = await ort.InferenceSession.create(linearModel({ classes, inputs, weight: w, bias }));
    expect([...session.inputNames].sort()).toEqual(['t', 'x']);
    const t = 1.7;
    const out = await session.run({ x: new ort.Tensor('float32', x(n), [n, inputs]), t: new ort.Tensor('float32', new Float32Array(n).fill(t), [n, 1]) });
    expect(out.y!.dims).toEqual([n, classes]);
    const want = reference(x(n), n, w, classes, inputs, (_, c) => bias[c]!);
    expect(maxError(out.y!.data as Float32Array, want)).toBeLessThan(1e-5);
    const stats = exitStats(want, n, classes, t);
    expect(out.top!.dims).toEqual([n, 1]);
    expect(Array.from(out.top!.data as BigInt64Array, Number)).toEqual(stats.map((s) => s.top));
    expect(maxError(out.ptop!.data as Float32Array, stats.map((s) => s.ptop))).toBeLessThan(1e-6);
  });

  it('ranks tied logits by the lower class first, as ArgMax does', async () => {
    // Two identical weight rows: classes 3 and 9 always tie.
    const tied = Float32Array.from(w);
    tied.fill(5, 3 * inputs, 4 * inputs);
    tied.fill(5, 9 * inputs, 10 * inputs);
    const session = await ort.InferenceSession.create(linearModel({ classes, inputs, weight: tied, bias: new Float32Array(classes) }));
    const n = 3;
    const positive = values(n * inputs, (i) => 1 + (i % 5) / 10);
    const out = await session.run({ x: new ort.Tensor('float32', positive, [n, inputs]), t: new ort.Tensor('float32', new Float32Array(n).fill(1), [n, 1]) });
    const y = out.y!.data as Float32Array;
    expect(y[3]).toBe(y[9]);
    expect(Array.from(out.top!.data as BigInt64Array, Number)).toEqual([3, 3, 3]);
  });

  it('without a bias, adds the logits it is given (an MRL-E stage adding its columns)', async () => {
    const n = 4;
    const prev = values(n * classes, (i) => i * 0.01);
    const session = await ort.InferenceSession.create(linearModel({ classes, inputs, weight: w }));
    expect([...session.inputNames].sort()).toEqual(['c', 't', 'x']);
    const feeds = { x: new ort.Tensor('float32', x(n), [n, inputs]), c: new ort.Tensor('float32', prev, [n, classes]), t: new ort.Tensor('float32', new Float32Array(n).fill(1), [n, 1]) };
    const y = (await session.run(feeds)).y!;
    expect(maxError(y.data as Float32Array, reference(x(n), n, w, classes, inputs, (r, k) => prev[r * classes + k]!))).toBeLessThan(1e-5);
  });
});
