import * as ort from 'onnxruntime-node';
import type { Cascade, HeadKernel, StageOutput, StageWork } from './cascade.js';
import { gemmModel } from './gemmModel.js';

/**
 * Heads of at least this many multiply-adds a request at full size (classes × d) run on
 * onnxruntime; smaller ones in JavaScript, where a stage costs less than a call into onnxruntime.
 */
export const ORT_HEADS_MIN_MACS = 1 << 16;

const FETCH = ['topv', 'topi', 'ptop'];
const FETCH_CARRIED = [...FETCH, 'y'];

export type OrtHeadKernel = HeadKernel & {
  /** Releases the onnxruntime sessions and their weights; a stage run afterwards makes its session again. */
  release(): Promise<void>;
};

/**
 * A cascade's stages as matrix products on onnxruntime (one thread: the cascade shares its cores),
 * a session per stage shape (head, columns, carried logits or bias), made on first use.
 */
export function ortHeadKernel(cascade: Cascade): OrtHeadKernel {
  const L = cascade.classes;
  const sessions = new Map<string, Promise<ort.InferenceSession>>();
  const session = ({ head, from, to, prev }: StageWork) => {
    const key = `${head}:${from}:${to}:${prev ? 'carried' : 'bias'}`;
    let s = sessions.get(key);
    if (!s) {
      const { weight, bias, size } = cascade.heads[head]!;
      const width = to - from;
      // Columns from..to of the head's classes × size weight.
      const columns = new Float32Array(L * width);
      for (let c = 0; c < L; c++) columns.set(weight.subarray(c * size + from, c * size + to), c * width);
      const model = gemmModel({ classes: L, inputs: width, weight: columns, bias: prev ? undefined : bias });
      s = ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      // A session that failed to load is tried again next time, not kept failing.
      s.catch(() => sessions.delete(key));
      sessions.set(key, s);
    }
    return s;
  };
  const kernel: HeadKernel = async (work): Promise<StageOutput> => {
    const { rows, x, prev, temperatures, from, to, k, keepLogits } = work;
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [rows, to - from]),
      t: new ort.Tensor('float32', Float32Array.from(temperatures), [rows, 1]),
      k: new ort.Tensor('int64', BigInt64Array.of(BigInt(k)), [1]),
    };
    if (prev) feeds.c = new ort.Tensor('float32', prev instanceof Float32Array ? prev : Float32Array.from(prev), [rows, L]);
    // The logits stay inside onnxruntime unless carried: copying them out cost as much as the stage's product at 8 columns.
    const out = await (await session(work)).run(feeds, keepLogits ? FETCH_CARRIED : FETCH);
    return {
      logits: keepLogits ? (out.y!.data as Float32Array) : undefined,
      topClasses: Int32Array.from(out.topi!.data as BigInt64Array, Number),
      topLogits: out.topv!.data as Float32Array,
      topProbability: Float64Array.from(out.ptop!.data as Float32Array),
    };
  };
  return Object.assign(kernel, {
    async release() {
      const made = [...sessions.values()];
      sessions.clear();
      await Promise.all(made.map(async (pending) => (await pending.catch(() => undefined))?.release()));
    },
  });
}
