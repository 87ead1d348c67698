import type { EncoderHooks } from '../services/encoder/server.js';

/** Encoder hooks that add `ms` to every batch run: a slow model, for tests only (none for 0 or undefined). */
export const slowBatches = (ms = 0): EncoderHooks =>
  ms > 0 ? { beforeBatch: () => new Promise((resolve) => setTimeout(resolve, ms)) } : {};
