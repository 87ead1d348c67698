import type * as ort from 'onnxruntime-node';

/**
 * The onnxruntime session options the encoder serves with (the benchmark measures the same
 * session beside the default one). `intraOpThreads` 0 lets onnxruntime choose.
 */
export function servingSessionOptions(intraOpThreads: number): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    // onnxruntime's threads spin between runs by default; beside gRPC on a few cores that
    // spinning takes the CPU the event loop needs to decode requests and fill batches.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    ...(intraOpThreads > 0 ? { intraOpNumThreads: intraOpThreads } : {}),
  };
}
