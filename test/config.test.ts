import { describe, expect, it } from 'vitest';
import { cascadeConfig } from '../services/cascade/config.js';
import { ConfigError } from '../services/common/config.js';
import { encoderConfig } from '../services/encoder/config.js';
import { encoderSettings } from '../services/encoder/settings.js';

describe('configuration', () => {
  it('defaults to the contract ports', () => {
    expect(encoderConfig({})).toMatchObject({ port: 50052, metricsPort: 9465, executionProviders: ['cpu'] });
    expect(cascadeConfig({})).toMatchObject({ port: 50051, metricsPort: 9464, encoderTarget: 'localhost:50052' });
  });

  it('takes the table default for an unset or blank variable', () => {
    expect(encoderConfig({ MRL_MAX_BATCH: '  ' }).maxBatch).toBe(Number(encoderSettings.maxBatch.default));
  });

  it.each([
    [() => encoderConfig({ MRL_ENCODER_PORT: 'http' }), /MRL_ENCODER_PORT="http": must be an integer from 0 to 65535/],
    [() => encoderConfig({ MRL_MAX_BATCH: '0' }), /MRL_MAX_BATCH="0": must be an integer from 1/],
    [() => encoderConfig({ MRL_EXECUTION_PROVIDERS: 'cuda,tpu' }), /MRL_EXECUTION_PROVIDERS="cuda,tpu": must list cuda and\/or cpu/],
    [() => cascadeConfig({ MRL_LOG_LEVEL: 'loud' }), /MRL_LOG_LEVEL="loud": must be one of debug, info, warn, error/],
    [() => cascadeConfig({ MRL_BREAKER_ERROR_PERCENT: '150' }), /MRL_BREAKER_ERROR_PERCENT="150"/],
  ])('refuses a bad setting with a message that names it (%#)', (read, message) => {
    expect(read).toThrow(ConfigError);
    expect(read).toThrow(message);
  });
});
