import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';

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

/** How a setting's value is read: what the docs say it is, and its parser. */
export interface SettingType<T> {
  /** What a value must be, as the README's settings table says it. */
  readonly describe: string;
  /** The value of a set variable (trimmed, not empty), or a ConfigError naming the variable. */
  parse(name: string, value: string): T;
}

/** One environment variable: the single place its name, type, default, unit and doc are written. */
export interface Setting<T = unknown> {
  readonly name: string;
  readonly type: SettingType<T>;
  /** Used when the variable is unset or empty, and parsed as a set value is; without one, the value is undefined. */
  readonly default?: string;
  /** What the docs show as the default, where `default` is absent or is not what a reader should see. */
  readonly defaultDoc?: string;
  readonly unit?: string;
  /** One line for the README's settings table. */
  readonly doc: string;
}

/** A service's settings, keyed by the config field each becomes. */
export type SettingsTable = Readonly<Record<string, Setting>>;

/** The typed values of a table's settings: undefined where a setting without a default is unset. */
export type SettingValues<T extends SettingsTable> = {
  -readonly [K in keyof T]: T[K] extends Setting<infer V> ? (T[K] extends { default: string } ? V : V | undefined) : never;
};

/** Reads every setting of `table` from `env`, and only those (the deploy test records what is read). */
export function readSettings<T extends SettingsTable>(table: T, env: Env): SettingValues<T> {
  const values: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(table)) {
    const raw = env[s.name]?.trim() || s.default;
    values[key] = raw === undefined ? undefined : s.type.parse(s.name, raw);
  }
  return values as SettingValues<T>;
}

const refusal = (name: string, value: string, what: string) => new ConfigError(`${name}=${JSON.stringify(value)}: must be ${what}`);

/** An integer from `min` to `max`, both included. */
export const int = (min: number, max: number): SettingType<number> => ({
  describe: `integer ${min}–${max}`,
  parse(name, v) {
    const n = Number(v);
    if (!/^-?\d+$/.test(v) || n < min || n > max) throw refusal(name, v, `an integer from ${min} to ${max}`);
    return n;
  },
});

/** A number from 0 to 1. */
export const fraction: SettingType<number> = {
  describe: 'number 0–1',
  parse(name, v) {
    const n = Number(v);
    if (!/^\d*\.?\d+(e-?\d+)?$/i.test(v) || !(n >= 0 && n <= 1)) throw refusal(name, v, 'a number from 0 to 1');
    return n;
  },
};

/** `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case. */
export const bool: SettingType<boolean> = {
  describe: '`true` or `false` (or `1`/`0`, `yes`/`no`, `on`/`off`)',
  parse(name, value) {
    const v = value.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw refusal(name, v, 'true or false');
  },
};

const code = (v: string) => `\`${v}\``;

/** One of `allowed`, exactly. */
export const oneOf = <T extends string>(allowed: readonly T[]): SettingType<T> => ({
  describe: `one of ${allowed.map(code).join(', ')}`,
  parse(name, v) {
    if (!allowed.includes(v as T)) throw refusal(name, v, `one of ${allowed.join(', ')}`);
    return v as T;
  },
});

/** A comma-separated list of `allowed` values, in the order given. */
export const listOf = <T extends string>(allowed: readonly T[]): SettingType<T[]> => ({
  describe: `comma-separated ${allowed.map(code).join(' and/or ')}`,
  parse(name, v) {
    const items = v.split(',').map((p) => p.trim());
    if (!items.every((p) => allowed.includes(p as T)))
      throw new ConfigError(`${name}=${JSON.stringify(items.join(','))}: must list ${allowed.join(' and/or ')}`);
    return items as T[];
  },
});

/** A path checked where it is used (the thresholds file, against the bundle), not here. */
export const filePath: SettingType<string> = { describe: 'file path', parse: (_, v) => v };

/** A string that passes `valid`; `what` says what it must be. */
const checked = (describe: string, what: string, valid: (v: string) => boolean): SettingType<string> => ({
  describe,
  parse(name, v) {
    if (!valid(v)) throw refusal(name, v, what);
    return v;
  },
});

/** Where a server binds. */
export const host: SettingType<string> = checked('IP address or host name', 'an IP address or a host name', isHost);

/** A name a TLS certificate carries. */
export const hostName: SettingType<string> = checked('host name', 'a host name', isHost);

/** A model's name or version on an inference server. */
export const modelName: SettingType<string> = checked('name', 'a name of letters, digits, `.`, `_` or `-`', (v) => /^[\w.-]+$/.test(v));

/** An address the gRPC client can dial (`isGrpcTarget`). */
export const grpcTarget: SettingType<string> = checked(
  '`host:port`, `[ipv6]:port` or `dns:///host:port`',
  'host:port, [ipv6]:port or dns:///host:port',
  isGrpcTarget,
);

/** A folder that exists when the setting is read (its default too). */
export const existingFolder: SettingType<string> = {
  describe: 'existing folder',
  parse(name, v) {
    let isDir = false;
    try {
      isDir = statSync(v).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) throw refusal(name, v, 'an existing folder');
    return v;
  },
};

/** A file read at start-up, with the path it came from (for later messages). */
export interface FileContents {
  path: string;
  contents: Buffer;
}

/** A file read whole when the setting is read; the value is its contents. */
export const readableFile: SettingType<FileContents> = {
  describe: 'readable file',
  parse(name, path) {
    try {
      return { path, contents: readFileSync(path) };
    } catch (err) {
      throw new ConfigError(`${name}=${JSON.stringify(path)}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  },
};
