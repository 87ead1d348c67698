import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of one certificate and its key (PEM). */
export interface CertPair {
  cert: string;
  key: string;
}

/** Throw-away PKI for the TLS tests, made with the `openssl` CLI in a temporary folder. */
export interface TestPki {
  dir: string;
  /** The mesh's CA: it signs the servers' and the clients' certificates. */
  ca: CertPair;
  /** Server certificates for 127.0.0.1 and localhost. */
  encoder: CertPair;
  cascade: CertPair;
  /** The cascade's client certificate for the encoder (mutual TLS). */
  cascadeClient: CertPair;
  /** Another CA, and a client certificate it signed: well-formed, but not trusted by the mesh. */
  rogueCa: CertPair;
  rogueClient: CertPair;
  /** A key that belongs to no certificate here. */
  strayKey: string;
}

const openssl = (args: string[], cwd: string) => run('openssl', args, { cwd });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl(['req', '-x509', ...EC, '-keyout', pair.key, '-out', pair.cert, '-days', '2', '-subj', `/CN=${name}`], dir);
  return pair;
}

async function makeLeaf(dir: string, name: string, ca: CertPair, usage: 'serverAuth' | 'clientAuth'): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await openssl(['req', '-new', ...EC, '-keyout', pair.key, '-out', csr, '-subj', `/CN=${name}`], dir);
  await writeFile(
    ext,
    usage === 'serverAuth'
      ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
      : 'extendedKeyUsage=clientAuth\n',
  );
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', ext, '-out', pair.cert], dir);
  return pair;
}

/** Generates the PKI (a second or so); nothing of it outlives the temporary folder. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'mrl-pki-'));
  const [ca, rogueCa] = await Promise.all([makeCa(dir, 'mesh-ca'), makeCa(dir, 'rogue-ca')]);
  const [encoder, cascade, cascadeClient, rogueClient] = await Promise.all([
    makeLeaf(dir, 'encoder', ca, 'serverAuth'),
    makeLeaf(dir, 'cascade', ca, 'serverAuth'),
    makeLeaf(dir, 'cascade-client', ca, 'clientAuth'),
    makeLeaf(dir, 'rogue-client', rogueCa, 'clientAuth'),
  ]);
  const strayKey = join(dir, 'stray.key');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', strayKey], dir);
  return { dir, ca, encoder, cascade, cascadeClient, rogueCa, rogueClient, strayKey };
}

/** A PEM file's contents, for client credentials. */
export const pem = (path: string): Promise<Buffer> => readFile(path);
