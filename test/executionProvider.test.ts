import { describe, expect, it } from 'vitest';
import { loadBundle } from '../services/common/bundle.js';
import { createLogger } from '../services/common/logger.js';
import { EncoderSession } from '../services/encoder/session.js';

describe('execution providers', () => {
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
});
