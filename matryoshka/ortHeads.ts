import * as ort from 'onnxruntime-node';
import type { Cascade, HeadKernel, StageOutput, StageWork } from './cascade.js';
import { linearModel } from './linearModel.js';

/**
 * Heads of at least this many multiply-adds a request at full size (classes × d) run on
 * onnxruntime; smaller ones in JavaScript, where a stage costs less than a call into onnxruntime.
 */
export const ORT_HEADS_MIN_MACS = 1 << 16;

const FETCH = ['top', 'ptop'];
const FETCH_WITH_LOGITS = [...FETCH, 'y'];

export type OrtHeadKernel = HeadKernel & {
  /** Refuses stages from now on, lets those running finish, then releases the sessions and their weights. */
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
      const model = linearModel({ classes: L, inputs: width, weight: columns, bias: prev ? undefined : bias });
      s = ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      // A session that failed to load is tried again next time, not kept failing.
      const made = s;
      made.catch(() => sessions.get(key) === made && sessions.delete(key));
      sessions.set(key, made);
    }
    return s;
  };
  let released = false;
  const running = new Set<Promise<StageOutput>>();
  const stage = async (work: StageWork): Promise<StageOutput> => {
    const { rows, x, prev, temperatures, from, to, keepLogits } = work;
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [rows, to - from]),
      t: new ort.Tensor('float32', Float32Array.from(temperatures), [rows, 1]),
    };
    if (prev) {
      // Logits carried from the stage before are this kernel's own output.
      if (!(prev instanceof Float32Array)) throw new TypeError('onnxruntime heads carry float32 logits: a stage was given logits another kernel made');
      feeds.c = new ort.Tensor('float32', prev, [rows, L]);
    }
    // The logits stay inside onnxruntime unless asked for: copying them out cost as much as the stage's product at 8 columns.
    const out = await (await session(work)).run(feeds, keepLogits ? FETCH_WITH_LOGITS : FETCH);
    return {
      logits: keepLogits ? (out.y!.data as Float32Array) : undefined,
      top: Int32Array.from(out.top!.data as BigInt64Array, Number),
      topProbability: Float64Array.from(out.ptop!.data as Float32Array),
    };
  };
  const kernel: HeadKernel = async (work) => {
    if (released) throw new Error("the cascade's onnxruntime heads were released: it is shutting down");
    const run = stage(work);
    running.add(run);
    try {
      return await run;
    } finally {
      running.delete(run);
    }
  };
  return Object.assign(kernel, {
    async release() {
      released = true;
      await Promise.allSettled([...running]);
      const made = [...sessions.values()];
      sessions.clear();
      await Promise.all(made.map(async (pending) => (await pending.catch(() => undefined))?.release()));
    },
  });
}
