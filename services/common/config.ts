import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { LOG_LEVELS, type LogLevel } from './logger.js';

/** A setting that failed validation; the message names the variable and what it must be. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

/** A DNS name: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** An IP address or a DNS name. */
export const isHost = (v: string): boolean => isIP(v) !== 0 || HOSTNAME.test(v);

/**
 * A gRPC target the encoder client can dial: `host:port`, `[ipv6]:port`, or the same after `dns:`
 * or `dns:///` (which resolve every address and balance over them).
 */
export function isGrpcTarget(v: string): boolean {
  const m = /^(?:dns:(?:\/\/[^/]*\/)?)?(?:\[([0-9a-f:.]+)\]|([^:/[\]]+)):(\d{1,5})$/i.exec(v);
  if (!m) return false;
  const host = m[1] ?? m[2]!;
  return (m[1] !== undefined ? isIP(host) === 6 : isHost(host)) && Number(m[3]) >= 1 && Number(m[3]) <= 65535;
}

export type EnvReader = ReturnType<typeof envReader>;

/** Refuses two settings that name the same port (0, a free port each, may repeat). */
export function distinctPorts(ports: Record<string, number | undefined>): void {
  const seen = new Map<number, string>();
  for (const [name, port] of Object.entries(ports)) {
    if (port === undefined || port === 0) continue;
    const other = seen.get(port);
    if (other) throw new ConfigError(`${name}=${port}: the same port as ${other}`);
    seen.set(port, name);
  }
}

/** Reads typed settings from an environment map; each getter names the variable when it fails. */
export function envReader(env: Env) {
  const raw = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === '' ? undefined : v;
  };
  return {
    string(name: string, fallback: string): string {
      return raw(name) ?? fallback;
    },
    optionalString(name: string): string | undefined {
      return raw(name);
    },
    /** A string that must pass `valid`; `what` says what it must be. */
    checked(name: string, fallback: string, valid: (v: string) => boolean, what: string): string {
      const v = raw(name);
      if (v === undefined) return fallback;
      if (!valid(v)) throw new ConfigError(`${name}=${JSON.stringify(v)}: must be ${what}`);
      return v;
    },
    int(name: string, fallback: number, min: number, max: number): number {
      return this.optionalInt(name, min, max) ?? fallback;
    },
    optionalInt(name: string, min: number, max: number): number | undefined {
      const v = raw(name);
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!/^-?\d+$/.test(v) || n < min || n > max)
        throw new ConfigError(`${name}=${JSON.stringify(v)}: must be an integer from ${min} to ${max}`);
      return n;
    },
    /** A number from 0 to 1. */
    fraction(name: string, fallback: number): number {
      const v = raw(name);
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!/^\d*\.?\d+(e-?\d+)?$/i.test(v) || !(n >= 0 && n <= 1)) throw new ConfigError(`${name}=${JSON.stringify(v)}: must be a number from 0 to 1`);
      return n;
    },
    /** A folder that must exist. */
    dir(name: string, fallback: string): string {
      const v = raw(name) ?? fallback;
      let isDir = false;
      try {
        isDir = statSync(v).isDirectory();
      } catch {
        // reported below
      }
      if (!isDir) throw new ConfigError(`${name}=${JSON.stringify(v)}: must be an existing folder`);
      return v;
    },
    /** The contents of the file the variable names, or undefined when it is unset. */
    file(name: string): { path: string; contents: Buffer } | undefined {
      const path = raw(name);
      if (path === undefined) return undefined;
      try {
        return { path, contents: readFileSync(path) };
      } catch (err) {
        throw new ConfigError(`${name}=${JSON.stringify(path)}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    },
    bool(name: string, fallback: boolean): boolean {
      const v = raw(name)?.toLowerCase();
      if (v === undefined) return fallback;
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new ConfigError(`${name}=${JSON.stringify(v)}: must be true or false`);
    },
    oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
      const v = raw(name);
      if (v === undefined) return fallback;
      if (!allowed.includes(v as T)) throw new ConfigError(`${name}=${JSON.stringify(v)}: must be one of ${allowed.join(', ')}`);
      return v as T;
    },
    logLevel(): LogLevel {
      return this.oneOf('MRL_LOG_LEVEL', 'info', LOG_LEVELS);
    },
  };
}
