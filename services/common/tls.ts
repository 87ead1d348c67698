import * as grpc from '@grpc/grpc-js';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { ConfigError, type EnvReader, isHost } from './config.js';

type PemFile = { path: string; contents: Buffer };

/** A server's TLS: its certificate chain and key, and the CA client certificates must chain to (mutual TLS). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** Set: every client must present a certificate signed by this CA, or the handshake fails. */
  clientCa?: Buffer;
}

/** A client channel's TLS: the CA the server's certificate must chain to, and a client certificate for mutual TLS. */
export interface ClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Name the server's certificate must carry when it is not the target's host. */
  serverName?: string;
}

/** The first certificate in a PEM file, or a ConfigError naming the variable. */
function certificate(name: string, file: PemFile): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(file.contents);
  } catch {
    throw new ConfigError(`${name}=${JSON.stringify(file.path)}: not a PEM certificate`);
  }
  if (Date.parse(cert.validTo) < Date.now()) throw new ConfigError(`${name}=${JSON.stringify(file.path)}: the certificate expired on ${cert.validTo}`);
  return cert;
}

/** Checks a certificate and key pair: both set, each parseable, and matching. */
function keyPair(certName: string, cert: PemFile | undefined, keyName: string, key: PemFile | undefined): { cert: Buffer; key: Buffer } {
  if (!cert || !key) throw new ConfigError(`${cert ? keyName : certName} is not set: ${certName} and ${keyName} go together`);
  certificate(certName, cert);
  try {
    createPrivateKey(key.contents);
  } catch {
    throw new ConfigError(`${keyName}=${JSON.stringify(key.path)}: not a PEM private key`);
  }
  try {
    createSecureContext({ cert: cert.contents, key: key.contents });
  } catch (err) {
    throw new ConfigError(`${certName} and ${keyName}: the key does not match the certificate (${(err as Error).message})`);
  }
  return { cert: cert.contents, key: key.contents };
}

/**
 * A server's TLS settings: MRL_TLS_CERT_FILE and MRL_TLS_KEY_FILE (PEM; both or neither; unset:
 * plaintext) and MRL_TLS_CLIENT_CA_FILE (PEM; set: mutual TLS, client certificates required).
 */
export function serverTlsSettings(r: EnvReader): ServerTls | undefined {
  const cert = r.file('MRL_TLS_CERT_FILE');
  const key = r.file('MRL_TLS_KEY_FILE');
  const clientCa = r.file('MRL_TLS_CLIENT_CA_FILE');
  if (!cert && !key) {
    if (clientCa) throw new ConfigError('MRL_TLS_CLIENT_CA_FILE is set but MRL_TLS_CERT_FILE and MRL_TLS_KEY_FILE are not: mutual TLS needs TLS');
    return undefined;
  }
  if (clientCa) certificate('MRL_TLS_CLIENT_CA_FILE', clientCa);
  return { ...keyPair('MRL_TLS_CERT_FILE', cert, 'MRL_TLS_KEY_FILE', key), clientCa: clientCa?.contents };
}

/**
 * The TLS of a client channel whose settings are named `${prefix}_CA_FILE` (PEM; set: TLS,
 * unset: plaintext), `${prefix}_CERT_FILE` and `${prefix}_KEY_FILE` (PEM client certificate
 * for mutual TLS) and `${prefix}_SERVER_NAME`.
 */
export function clientTlsSettings(r: EnvReader, prefix: string): ClientTls | undefined {
  const ca = r.file(`${prefix}_CA_FILE`);
  const cert = r.file(`${prefix}_CERT_FILE`);
  const key = r.file(`${prefix}_KEY_FILE`);
  const serverName = r.optionalString(`${prefix}_SERVER_NAME`);
  if (serverName !== undefined && !isHost(serverName))
    throw new ConfigError(`${prefix}_SERVER_NAME=${JSON.stringify(serverName)}: must be a host name`);
  if (!ca) {
    const stray = [cert && '_CERT_FILE', key && '_KEY_FILE', serverName && '_SERVER_NAME'].find(Boolean);
    if (stray) throw new ConfigError(`${prefix}${stray} is set but ${prefix}_CA_FILE is not: TLS to the server needs the CA its certificate chains to`);
    return undefined;
  }
  certificate(`${prefix}_CA_FILE`, ca);
  const pair = cert || key ? keyPair(`${prefix}_CERT_FILE`, cert, `${prefix}_KEY_FILE`, key) : undefined;
  return { ca: ca.contents, ...pair, serverName };
}

/** Server credentials: TLS (mutual when `clientCa` is set) or, without settings, plaintext. */
export function serverCredentials(tls: ServerTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

/** Channel credentials and the options they need: TLS or, without settings, plaintext. */
export function channelCredentials(tls: ClientTls | undefined): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  return {
    credentials: grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null),
    options: tls.serverName ? { 'grpc.ssl_target_name_override': tls.serverName } : {},
  };
}
