import { createLogger } from '../common/logger.js';
import { runService } from '../common/processLifecycle.js';
import { encoderConfig } from './config.js';
import { startEncoder } from './server.js';

const bootLogger = createLogger('encoder');
await runService(bootLogger, async () => {
  const config = encoderConfig(process.env);
  return startEncoder(config, createLogger('encoder', config.logLevel));
});
