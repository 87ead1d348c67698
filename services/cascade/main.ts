import { createLogger } from '../common/logger.js';
import { runService } from '../common/processLifecycle.js';
import { cascadeConfig } from './config.js';
import { startCascade } from './server.js';

const bootLogger = createLogger('cascade');
await runService(bootLogger, async () => {
  const config = cascadeConfig(process.env);
  return startCascade(config, createLogger('cascade', config.logLevel));
});
