import { LOG_LEVELS, type LogLevel } from './logger.js';

/** A setting that failed validation; the message names the variable and what it must be. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

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
    int(name: string, fallback: number, min: number, max: number): number {
      const v = raw(name);
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!/^-?\d+$/.test(v) || n < min || n > max)
        throw new ConfigError(`${name}=${JSON.stringify(v)}: must be an integer from ${min} to ${max}`);
      return n;
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
