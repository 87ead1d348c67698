import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascadeConfig } from '../services/cascade/config.js';
import { cascadeSettings } from '../services/cascade/settings.js';
import { ConfigError, type Env } from '../services/common/config.js';
import { encoderConfig } from '../services/encoder/config.js';
import { encoderSettings } from '../services/encoder/settings.js';
import { makeTestPki, type TestPki } from './helpers/certs.js';
import { runToExit } from '../harness/services.js';

let pki: TestPki;
/** A valid thresholds file for the default bundle's nesting, calibrated for another model. */
const WRONG_MODEL = join(tmpdir(), `mrl-wrong-model-thresholds-${process.pid}.json`);

beforeAll(async () => {
  pki = await makeTestPki();
  const { nesting } = JSON.parse(readFileSync(new URL('../models/fashion-mnist-mrl/model.json', import.meta.url), 'utf8')) as { nesting: number[] };
  writeFileSync(WRONG_MODEL, JSON.stringify({ model: 'some-other-model@1.0.0', thresholds: nesting.slice(1).map(() => 0.9) }));
});
afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  await rm(WRONG_MODEL, { force: true });
});

type Read = (env: Env) => unknown;
/** For each setting: a bad value (with whatever it needs alongside) and what the refusal must say. */
type BadSetting = [name: string, read: Read, env: () => Env, message: RegExp];

const tls = (extra: Env = {}): Env => ({ MRL_TLS_CERT_FILE: pki.encoder.cert, MRL_TLS_KEY_FILE: pki.encoder.key, ...extra });
const encoderTls = (extra: Env = {}): Env => ({ MRL_ENCODER_TLS_CA_FILE: pki.ca.cert, ...extra });

const serverSide = (read: Read, service: 'ENCODER' | 'CASCADE'): BadSetting[] => [
  ['MRL_MODEL_DIR', read, () => ({ MRL_MODEL_DIR: '/nonexistent/bundle' }), /^MRL_MODEL_DIR="\/nonexistent\/bundle": must be an existing folder$/],
  [`MRL_${service}_HOST`, read, () => ({ [`MRL_${service}_HOST`]: 'not a host!' }), /must be an IP address or a host name/],
  [`MRL_${service}_PORT`, read, () => ({ [`MRL_${service}_PORT`]: '70000' }), /must be an integer from 0 to 65535/],
  [`MRL_${service}_METRICS_PORT`, read, () => ({ [`MRL_${service}_METRICS_PORT`]: '-1' }), /must be an integer from 0 to 65535/],
  [`MRL_${service}_HEALTH_PORT`, read, () => ({ [`MRL_${service}_PORT`]: '7000', [`MRL_${service}_HEALTH_PORT`]: '7000' }), new RegExp(`MRL_${service}_HEALTH_PORT=7000: the same port as MRL_${service}_PORT`)],
  ['MRL_TLS_CERT_FILE', read, () => tls({ MRL_TLS_CERT_FILE: '/nonexistent/cert.pem' }), /^MRL_TLS_CERT_FILE="\/nonexistent\/cert.pem": cannot read the file \(ENOENT\)$/],
  ['MRL_TLS_KEY_FILE', read, () => tls({ MRL_TLS_KEY_FILE: pki.strayKey }), /^MRL_TLS_CERT_FILE and MRL_TLS_KEY_FILE: the key does not match the certificate/],
  ['MRL_TLS_CLIENT_CA_FILE', read, () => tls({ MRL_TLS_CLIENT_CA_FILE: pki.ca.key }), /^MRL_TLS_CLIENT_CA_FILE=".*": not a PEM certificate$/],
  ['MRL_MAX_MESSAGE_BYTES', read, () => ({ MRL_MAX_MESSAGE_BYTES: '1e6' }), /must be an integer from 1024/],
  ['MRL_MAX_CONCURRENT_STREAMS', read, () => ({ MRL_MAX_CONCURRENT_STREAMS: '0' }), /^MRL_MAX_CONCURRENT_STREAMS="0": must be an integer from 1 to 1000000$/],
  ['MRL_MAX_IMAGE_PIXELS', read, () => ({ MRL_MAX_IMAGE_PIXELS: 'lots' }), /must be an integer from 1/],
  ['MRL_SHUTDOWN_GRACE_MS', read, () => ({ MRL_SHUTDOWN_GRACE_MS: 'soon' }), /must be an integer from 0/],
  ['MRL_LOG_LEVEL', read, () => ({ MRL_LOG_LEVEL: 'loud' }), /must be one of debug, info, warn, error/],
];

const BAD: BadSetting[] = [
  ...serverSide(encoderConfig, 'ENCODER'),
  ['MRL_EXECUTION_PROVIDERS', encoderConfig, () => ({ MRL_EXECUTION_PROVIDERS: 'cuda,' }), /must list cuda and\/or cpu/],
  ['MRL_INTRA_OP_THREADS', encoderConfig, () => ({ MRL_INTRA_OP_THREADS: '1.5' }), /must be an integer from 0 to 256/],
  ['MRL_MAX_BATCH', encoderConfig, () => ({ MRL_MAX_BATCH: '0' }), /must be an integer from 1/],
  ['MRL_MAX_BATCH_DELAY_MS', encoderConfig, () => ({ MRL_MAX_BATCH_DELAY_MS: '5000' }), /must be an integer from 0 to 1000/],
  ['MRL_MAX_QUEUE', encoderConfig, () => ({ MRL_MAX_QUEUE: '0' }), /must be an integer from 1/],
  ['MRL_MAX_CONNECTION_AGE_MS', encoderConfig, () => ({ MRL_MAX_CONNECTION_AGE_MS: '-5' }), /must be an integer from 0/],
  ...serverSide(cascadeConfig, 'CASCADE'),
  ['MRL_ENCODER_PROTOCOL', cascadeConfig, () => ({ MRL_ENCODER_PROTOCOL: 'grpc' }), /^MRL_ENCODER_PROTOCOL="grpc": must be one of mrl, kserve-v2$/],
  ['MRL_ENCODER_MODEL', cascadeConfig, () => ({ MRL_ENCODER_MODEL: 'my model' }), /^MRL_ENCODER_MODEL="my model": must be a name of letters, digits/],
  ['MRL_ENCODER_MODEL_VERSION', cascadeConfig, () => ({ MRL_ENCODER_MODEL_VERSION: '1/2' }), /^MRL_ENCODER_MODEL_VERSION="1\/2": must be a name of letters, digits/],
  ['MRL_ENCODER_KEEPALIVE_MS', cascadeConfig, () => ({ MRL_ENCODER_KEEPALIVE_MS: '50' }), /^MRL_ENCODER_KEEPALIVE_MS="50": must be an integer from 100 to 3600000$/],
  ['MRL_ENCODER_TARGET', cascadeConfig, () => ({ MRL_ENCODER_TARGET: 'http://encoder:50052' }), /must be host:port, \[ipv6\]:port or dns:\/\/\/host:port/],
  ['MRL_ENCODER_TLS_CA_FILE', cascadeConfig, () => encoderTls({ MRL_ENCODER_TLS_CA_FILE: pki.dir }), /^MRL_ENCODER_TLS_CA_FILE=".*": cannot read the file \(EISDIR\)$/],
  ['MRL_ENCODER_TLS_CERT_FILE', cascadeConfig, () => ({ MRL_ENCODER_TLS_CERT_FILE: pki.cascadeClient.cert, MRL_ENCODER_TLS_KEY_FILE: pki.cascadeClient.key }), /^MRL_ENCODER_TLS_CERT_FILE is set but MRL_ENCODER_TLS_CA_FILE is not/],
  ['MRL_ENCODER_TLS_KEY_FILE', cascadeConfig, () => encoderTls({ MRL_ENCODER_TLS_CERT_FILE: pki.cascadeClient.cert }), /^MRL_ENCODER_TLS_KEY_FILE is not set: MRL_ENCODER_TLS_CERT_FILE and MRL_ENCODER_TLS_KEY_FILE go together$/],
  ['MRL_ENCODER_TLS_SERVER_NAME', cascadeConfig, () => encoderTls({ MRL_ENCODER_TLS_SERVER_NAME: 'encoder/x' }), /^MRL_ENCODER_TLS_SERVER_NAME="encoder\/x": must be a host name$/],
  ['MRL_ENCODER_TIMEOUT_MS', cascadeConfig, () => ({ MRL_ENCODER_TIMEOUT_MS: '0' }), /must be an integer from 1/],
  ['MRL_ENCODER_BATCH', cascadeConfig, () => ({ MRL_ENCODER_BATCH: '0' }), /must be an integer from 1 to 4096/],
  ['MRL_ENCODER_BATCH_DELAY_MS', cascadeConfig, () => ({ MRL_ENCODER_BATCH_DELAY_MS: '-1' }), /must be an integer from 0 to 1000/],
  ['MRL_ENCODER_CALLS_IN_FLIGHT', cascadeConfig, () => ({ MRL_ENCODER_CALLS_IN_FLIGHT: '0.5' }), /must be an integer from 1/],
  ['MRL_ENCODER_QUEUE', cascadeConfig, () => ({ MRL_ENCODER_QUEUE: 'many' }), /must be an integer from 1/],
  ['MRL_MAX_BATCH_REQUESTS', cascadeConfig, () => ({ MRL_MAX_BATCH_REQUESTS: '0' }), /must be an integer from 1/],
  ['MRL_THRESHOLDS_POLL_MS', cascadeConfig, () => ({ MRL_THRESHOLDS_POLL_MS: '1' }), /must be an integer from 10/],
  ['MRL_SHADOW_RATE', cascadeConfig, () => ({ MRL_SHADOW_RATE: '1.5' }), /^MRL_SHADOW_RATE="1.5": must be a number from 0 to 1$/],
  ['MRL_SHADOW_RECALIBRATE', cascadeConfig, () => ({ MRL_SHADOW_RECALIBRATE: 'sometimes' }), /must be true or false/],
  ['MRL_SHADOW_RESERVOIR', cascadeConfig, () => ({ MRL_SHADOW_RESERVOIR: '10' }), /must be an integer from 100/],
  ['MRL_SHADOW_RECALIBRATE_MS', cascadeConfig, () => ({ MRL_SHADOW_RECALIBRATE_MS: '5' }), /must be an integer from 1000/],
  ['MRL_BREAKER_ERROR_PERCENT', cascadeConfig, () => ({ MRL_BREAKER_ERROR_PERCENT: '0' }), /must be an integer from 1 to 100/],
  ['MRL_BREAKER_VOLUME', cascadeConfig, () => ({ MRL_BREAKER_VOLUME: 'five' }), /must be an integer from 1/],
  ['MRL_BREAKER_RESET_MS', cascadeConfig, () => ({ MRL_BREAKER_RESET_MS: '1' }), /must be an integer from 10/],
  ['MRL_BREAKER_WINDOW_MS', cascadeConfig, () => ({ MRL_BREAKER_WINDOW_MS: '50' }), /must be an integer from 100/],
  ['MRL_BREAKER_MIN_TIMEOUT_MS', cascadeConfig, () => ({ MRL_BREAKER_MIN_TIMEOUT_MS: '-1' }), /must be an integer from 0/],
];

/** Each service's declared settings, from its table: the read function its refusal cases use. */
const DECLARED: [read: Read, names: string[]][] = [
  [encoderConfig, Object.values(encoderSettings).map((s) => s.name)],
  [cascadeConfig, Object.values(cascadeSettings).map((s) => s.name)],
];

describe('configuration is validated at start-up', () => {
  it.each(DECLARED.map(([read, names]) => [read === encoderConfig ? 'encoder' : 'cascade', read, names] as const))(
    'every setting the %s declares has a refusal test below',
    (_, read, names) => {
      // MRL_THRESHOLDS_FILE is checked against the bundle when the cascade starts: a process test below.
      const tested = [...BAD.filter((b) => b[1] === read).map(([name]) => name), 'MRL_THRESHOLDS_FILE'];
      expect(names.filter((n) => !tested.includes(n))).toEqual([]);
    },
  );

  it('refusal tests name only declared settings', () => {
    for (const [name, read] of BAD) expect(DECLARED.find(([r]) => r === read)![1]).toContain(name);
  });

  it.each(BAD.map((b, i) => [`${b[0]} (${b[1] === encoderConfig ? 'encoder' : 'cascade'})`, i] as const))(
    'refuses a bad %s with a message that names it',
    (_, i) => {
      const [name, read, env, message] = BAD[i]!;
      let err: unknown;
      try {
        read(env());
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(name);
      expect((err as Error).message).toMatch(message);
    },
  );

  it('TLS settings that go together are refused alone', () => {
    expect(() => encoderConfig({ MRL_TLS_CERT_FILE: pki.encoder.cert })).toThrow(/^MRL_TLS_KEY_FILE is not set/);
    expect(() => encoderConfig({ MRL_TLS_CLIENT_CA_FILE: pki.ca.cert })).toThrow(/MRL_TLS_CLIENT_CA_FILE is set but MRL_TLS_CERT_FILE and MRL_TLS_KEY_FILE are not/);
    expect(encoderConfig(tls({ MRL_TLS_CLIENT_CA_FILE: pki.ca.cert })).tls?.clientCa).toBeInstanceOf(Buffer);
    expect(cascadeConfig(encoderTls({ MRL_ENCODER_TLS_CERT_FILE: pki.cascadeClient.cert, MRL_ENCODER_TLS_KEY_FILE: pki.cascadeClient.key })).encoderTls?.cert).toBeInstanceOf(Buffer);
  });

  it.each([
    ['encoder', { MRL_MAX_QUEUE: '0' }, /MRL_MAX_QUEUE="0": must be an integer from 1/],
    ['encoder', { MRL_TLS_CERT_FILE: '/nonexistent/cert.pem', MRL_TLS_KEY_FILE: '/nonexistent/key.pem' }, /MRL_TLS_CERT_FILE="\/nonexistent\/cert.pem": cannot read the file/],
    ['cascade', { MRL_ENCODER_TARGET: 'http://encoder:50052' }, /MRL_ENCODER_TARGET="http:\/\/encoder:50052": must be host:port/],
    ['cascade', { MRL_MODEL_DIR: '/nonexistent/bundle' }, /MRL_MODEL_DIR="\/nonexistent\/bundle": must be an existing folder/],
    ['cascade', { MRL_THRESHOLDS_FILE: '/nonexistent/thresholds.json' }, /^MRL_THRESHOLDS_FILE: thresholds file \/nonexistent\/thresholds.json: ENOENT/],
    ['cascade', { MRL_SHADOW_RECALIBRATE: '1', MRL_SHADOW_RATE: '0' }, /^MRL_SHADOW_RECALIBRATE: needs MRL_SHADOW_RATE above 0/],
    ['cascade', { MRL_SHADOW_RECALIBRATE: '1', MRL_SHADOW_RESERVOIR: '100' }, /^MRL_SHADOW_RECALIBRATE: MRL_SHADOW_RESERVOIR=100 holds too few samples to certify disagreement <= 0\.005 with delta 0\.05: it needs at least \d+$/],
    ['cascade', { MRL_THRESHOLDS_FILE: WRONG_MODEL }, /^MRL_THRESHOLDS_FILE: thresholds file .*: calibrated for some-other-model@1.0.0, but this cascade serves fashion-mnist-mrl@/],
  ] as const)('the %s process refuses to start on %j: exit 1, the reason logged, nothing served', async (name, env, message) => {
    const { code, output } = await runToExit(name, env);
    expect(code).toBe(1);
    const failure = output.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'failed to start');
    expect(failure?.level).toBe('error');
    expect(String(failure?.err)).toMatch(message);
    expect(output).not.toMatch(/ serving"/);
  });
});
