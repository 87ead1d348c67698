import * as grpc from '@grpc/grpc-js';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { ConfigError, type FileContents as PemFile, type Setting } from './config.js';
import { serverTlsSettings } from './settings.js';

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
 * A server's TLS from its files (`serverTlsSettings`): certificate and key both or neither (neither:
 * plaintext), and a client CA (mutual TLS) only with them.
 */
export function serverTls(files: { tlsCertFile?: PemFile; tlsKeyFile?: PemFile; tlsClientCaFile?: PemFile }): ServerTls | undefined {
  const names = { cert: serverTlsSettings.tlsCertFile.name, key: serverTlsSettings.tlsKeyFile.name, ca: serverTlsSettings.tlsClientCaFile.name };
  const { tlsCertFile: cert, tlsKeyFile: key, tlsClientCaFile: clientCa } = files;
  if (!cert && !key) {
    if (clientCa) throw new ConfigError(`${names.ca} is set but ${names.cert} and ${names.key} are not: mutual TLS needs TLS`);
    return undefined;
  }
  if (clientCa) certificate(names.ca, clientCa);
  return { ...keyPair(names.cert, cert, names.key, key), clientCa: clientCa?.contents };
}

/** The settings of a client channel's TLS: CA, client certificate and key, server name. */
export interface ClientTlsSettings {
  ca: Setting<PemFile>;
  cert: Setting<PemFile>;
  key: Setting<PemFile>;
  serverName: Setting<string>;
}

/**
 * A client channel's TLS from its settings' values: the CA set, TLS (unset: plaintext); a client
 * certificate and key (mutual TLS) and a server name only with it.
 */
export function clientTls(settings: ClientTlsSettings, v: { ca?: PemFile; cert?: PemFile; key?: PemFile; serverName?: string }): ClientTls | undefined {
  if (!v.ca) {
    const stray = (['cert', 'key', 'serverName'] as const).find((k) => v[k] !== undefined);
    if (stray) throw new ConfigError(`${settings[stray].name} is set but ${settings.ca.name} is not: TLS to the server needs the CA its certificate chains to`);
    return undefined;
  }
  certificate(settings.ca.name, v.ca);
  const pair = v.cert || v.key ? keyPair(settings.cert.name, v.cert, settings.key.name, v.key) : undefined;
  return { ca: v.ca.contents, ...pair, serverName: v.serverName };
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
