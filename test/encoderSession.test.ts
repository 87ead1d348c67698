import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { loadBundle } from '../matryoshka/bundle.js';
import { createLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';

describe('encoder session', () => {
  it('asked for CUDA where it is not available, the encoder falls back to CPU and logs why', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('encoder', 'info', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    const session = await EncoderSession.create(await loadBundle(), { executionProviders: ['cuda', 'cpu'], intraOpThreads: 1 }, logger);
    try {
      // This machine has no CUDA provider binaries (npm ci skips them); a GPU image would pick cuda here.
      expect(session.provider).toBe('cpu');
      const warn = lines.find((l) => l.level === 'warn');
      expect(warn?.msg).toMatch(/execution provider cuda is not available; falling back/);
      expect(typeof warn?.reason).toBe('string');
      expect(lines.find((l) => l.msg === 'encoder loaded')).toMatchObject({ execution_provider: 'cpu' });
      const out = await session.encode([new Float32Array(784)]);
      expect(out[0]).toHaveLength(512);
    } finally {
      await session.dispose();
    }
  });

  it('the model runs on a worker thread: batches answer in order, and a closed session refuses with UNAVAILABLE', async () => {
    const session = await EncoderSession.create(await loadBundle(), { executionProviders: ['cpu'], intraOpThreads: 1 }, createLogger('encoder', 'error', () => {}));
    const images = [0, 0.5, 1].map((v) => new Float32Array(784).fill(v));
    const one = await Promise.all(images.map((img) => session.encode([img])));
    const together = await session.encode(images);
    together.forEach((z, i) => z.forEach((v, k) => expect(v).toBeCloseTo(one[i]![0]![k]!, 4)));
    expect(one[0]![0]).not.toEqual(one[2]![0]);
    await session.dispose();
    const err = await session.encode(images).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.UNAVAILABLE, message: 'the encoder model is not running (the encoder is shutting down)' });
  });
});
