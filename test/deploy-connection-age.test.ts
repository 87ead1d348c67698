import { connectivityState } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classify, encode, sliceTensor } from '../cli/clients.js';
import { loadTestSlice, type TestSlice } from '../cli/testSlice.js';
import { encoderConfig } from '../services/encoder/config.js';
import { startMesh, type TestMesh } from '../harness/mesh.js';
import { waitFor } from './helpers/prometheusServer.js';

// The k8s manifests set MRL_MAX_CONNECTION_AGE_MS so that the cascade's dns:/// channel
// re-resolves and reaches encoder pods added by a scale-up; here with a short age on loopback.
const AGE_MS = 300;

let mesh: TestMesh;
let bundle: Bundle;
let slice: TestSlice;
const tensorOf = (i: number) => sliceTensor(slice, i, bundle);

beforeAll(async () => {
  bundle = await loadBundle();
  slice = await loadTestSlice(bundle);
  mesh = await startMesh({ MRL_MAX_CONNECTION_AGE_MS: String(AGE_MS) });
});
afterAll(() => mesh?.stop());

describe('MRL_MAX_CONNECTION_AGE_MS', () => {
  it('is off (0) unless set, and refuses a value that is not a duration', () => {
    expect(encoderConfig({}).maxConnectionAgeMs).toBe(0);
    expect(encoderConfig({ MRL_MAX_CONNECTION_AGE_MS: '60000' }).maxConnectionAgeMs).toBe(60_000);
    expect(() => encoderConfig({ MRL_MAX_CONNECTION_AGE_MS: '-1' })).toThrow(/MRL_MAX_CONNECTION_AGE_MS="-1": must be an integer/);
  });

  it('the encoder closes a client connection once it is that old; the client reconnects for the next call', async () => {
    const channel = mesh.encoderClient.getChannel();
    await encode(mesh.encoderClient, { tensor: tensorOf(0) });
    expect(channel.getConnectivityState(false)).toBe(connectivityState.READY);
    await waitFor('the connection to be closed', async () => (channel.getConnectivityState(false) !== connectivityState.READY ? true : undefined), 5000);
    await encode(mesh.encoderClient, { tensor: tensorOf(1) });
    expect(channel.getConnectivityState(false)).toBe(connectivityState.READY);
  });

  it('calls through the cascade keep succeeding across several connection ages', async () => {
    const started = Date.now();
    let calls = 0;
    while (Date.now() - started < 4 * AGE_MS) {
      await classify(mesh.classifier, { tensor: tensorOf(calls % 10) });
      calls++;
      await sleep(AGE_MS / 6);
    }
    expect(calls).toBeGreaterThan(6);
  });
});
