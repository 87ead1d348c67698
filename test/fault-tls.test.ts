import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bundle, loadBundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, encode, encoderClient, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { makeTestPki, pem, type TestPki } from './helpers/certs.js';
import { healthCheck } from '../harness/health.js';
import { outcome } from '../harness/load.js';
import { killAll } from '../harness/processes.js';
import { delta, scrape } from '../harness/prom.js';
import { type ServiceProcess, spawnService } from '../harness/services.js';

let pki: TestPki;
let bundle: Bundle;
let encoder: ServiceProcess;
let cascade: ServiceProcess;
let tensor: { shape: number[]; raw: Buffer };
let label: number;
/** What a client trusting the mesh CA uses, without a certificate of its own. */
let tlsOnly: grpc.ChannelCredentials;

beforeAll(async () => {
  pki = await makeTestPki();
  bundle = await loadBundle();
  const slice = await loadTestSlice(bundle);
  tensor = sliceTensor(slice, 0, bundle);
  label = slice.labels[0]!;
  tlsOnly = grpc.credentials.createSsl(await pem(pki.ca.cert));
  // The encoder speaks only mutual TLS; probes use its plaintext health port.
  encoder = await spawnService('encoder', {
    MRL_TLS_CERT_FILE: pki.encoder.cert,
    MRL_TLS_KEY_FILE: pki.encoder.key,
    MRL_TLS_CLIENT_CA_FILE: pki.ca.cert,
    MRL_ENCODER_HEALTH_PORT: '0',
  });
  // The cascade: TLS to its clients, mutual TLS to the encoder.
  cascade = await spawnService('cascade', {
    MRL_TLS_CERT_FILE: pki.cascade.cert,
    MRL_TLS_KEY_FILE: pki.cascade.key,
    MRL_CASCADE_HEALTH_PORT: '0',
    MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`,
    MRL_ENCODER_TLS_CA_FILE: pki.ca.cert,
    MRL_ENCODER_TLS_CERT_FILE: pki.cascadeClient.cert,
    MRL_ENCODER_TLS_KEY_FILE: pki.cascadeClient.key,
  });
});
afterAll(async () => {
  await killAll();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

const encodeWith = async (credentials: grpc.ChannelCredentials) => {
  const client = encoderClient(`127.0.0.1:${encoder.port}`, credentials);
  try {
    return await outcome((d) => encode(client, { tensor }, d.getTime() - Date.now()), 5000);
  } finally {
    client.close();
  }
};

describe('wire security (certificates generated at test time)', () => {
  it('a TLS client classifies through the cascade, which reaches the encoder over mutual TLS', async () => {
    const client = classifierClient(`127.0.0.1:${cascade.port}`, tlsOnly);
    const res = await classify(client, { tensor, policy: 'POLICY_FULL' });
    client.close();
    expect(res.class_index).toBe(label);
    expect(cascade.output.some((l) => l.includes('"tls":"server"') && l.includes('"encoder_tls":"mutual"'))).toBe(true);
    expect(encoder.output.some((l) => l.includes('"tls":"mutual"'))).toBe(true);
  });

  it('the encoder refuses clients without a valid certificate, before any call reaches it', async () => {
    const before = await scrape(encoder.metricsPort);
    const refused = {
      plaintext: await encodeWith(grpc.credentials.createInsecure()),
      'TLS, no client certificate': await encodeWith(tlsOnly),
      'certificate from another CA': await encodeWith(
        grpc.credentials.createSsl(await pem(pki.ca.cert), await pem(pki.rogueClient.key), await pem(pki.rogueClient.cert)),
      ),
      "server not trusted (the client trusts another CA)": await encodeWith(
        grpc.credentials.createSsl(await pem(pki.rogueCa.cert), await pem(pki.cascadeClient.key), await pem(pki.cascadeClient.cert)),
      ),
    };
    console.log('refused by the encoder:', JSON.stringify(Object.fromEntries(Object.entries(refused).map(([k, o]) => [k, `${grpc.status[o.code]}: ${o.details}`]))));
    for (const [what, o] of Object.entries(refused)) expect(grpc.status[o.code], what).toBe('UNAVAILABLE');
    const after = await scrape(encoder.metricsPort);
    expect([...after].filter(([k]) => k.startsWith('mrl_encoder_requests_total{')).every(([k]) => delta(before, after, k) === 0)).toBe(true);

    // With the mesh's client certificate the same call goes through: the refusals were the certificates'.
    const admitted = await encodeWith(
      grpc.credentials.createSsl(await pem(pki.ca.cert), await pem(pki.cascadeClient.key), await pem(pki.cascadeClient.cert)),
    );
    expect(grpc.status[admitted.code]).toBe('OK');
  });

  it('a cascade without a client certificate cannot use the encoder: its callers get UNAVAILABLE', async () => {
    const certless = await spawnService('cascade', {
      MRL_ENCODER_TARGET: `127.0.0.1:${encoder.port}`,
      MRL_ENCODER_TLS_CA_FILE: pki.ca.cert,
    });
    const client = classifierClient(`127.0.0.1:${certless.port}`);
    const o = await outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), 5000);
    client.close();
    expect(grpc.status[o.code]).toBe('UNAVAILABLE');
    expect(o.details).toMatch(/^encoder unavailable: /);
    expect(await certless.stop()).toEqual({ code: 0, signal: null });
  });

  it('the cascade refuses plaintext clients', async () => {
    const client = classifierClient(`127.0.0.1:${cascade.port}`);
    const o = await outcome((d) => classify(client, { tensor }, d.getTime() - Date.now()), 5000);
    client.close();
    expect(grpc.status[o.code]).toBe('UNAVAILABLE');
  });

  it('probes still reach health (plaintext health ports) and metrics (plaintext HTTP)', async () => {
    expect(await healthCheck(encoder.healthPort!, 'mrl.v1.Encoder')).toBe('SERVING');
    expect(await healthCheck(cascade.healthPort!, 'mrl.v1.Classifier')).toBe('SERVING');
    // The health port serves health only: no Encode there.
    const viaHealthPort = encoderClient(`127.0.0.1:${encoder.healthPort}`);
    const o = await outcome((d) => encode(viaHealthPort, { tensor }, d.getTime() - Date.now()), 5000);
    viaHealthPort.close();
    expect(grpc.status[o.code]).toBe('UNIMPLEMENTED');
    // On the TLS port, health answers a TLS client too.
    expect(await healthCheck(cascade.port, 'mrl.v1.Classifier', tlsOnly)).toBe('SERVING');
    expect((await scrape(encoder.metricsPort)).has('mrl_encoder_requests_total{code="OK"}')).toBe(true);
    expect((await scrape(cascade.metricsPort)).has('mrl_cascade_requests_total{code="OK"}')).toBe(true);
  });
});
