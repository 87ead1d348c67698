import type { Logger } from './logger.js';

/**
 * Runs a service's `main`: starts it, and on SIGTERM or SIGINT shuts it down gracefully and
 * exits 0. A start-up failure (a bad setting, a missing model) is logged and exits 1.
 */
export async function runService(logger: Logger, start: () => Promise<{ shutdown(): Promise<void> }>): Promise<void> {
  let running: { shutdown(): Promise<void> };
  try {
    running = await start();
  } catch (err) {
    logger.error('failed to start', { err: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    running.shutdown().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error('shutdown failed', { err: err instanceof Error ? err : String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
