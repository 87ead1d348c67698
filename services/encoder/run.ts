import { createLogger } from '../common/logger.js';
import { runService } from '../common/processLifecycle.js';
import { encoderConfig } from './config.js';
import { type EncoderHooks, startEncoder } from './server.js';

/** Runs this process as the encoder: settings from the environment, graceful stop on SIGTERM. */
export function runEncoder(hooks: EncoderHooks = {}): Promise<void> {
  return runService(createLogger('encoder'), async () => {
    const config = encoderConfig(process.env);
    return startEncoder(config, createLogger('encoder', config.logLevel), hooks);
  });
}
