import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { type Bundle, validateThresholds } from '../common/bundle.js';
import type { Logger } from '../common/logger.js';

/** A thresholds file, as `mrl calibrate` writes it (extra fields, like the calibration record, are kept). */
export interface ThresholdsFile {
  thresholds: number[];
  calibration?: Record<string, unknown>;
}

/** Reads and validates a thresholds file against the bundle's nesting; throws with the reason. */
export function readThresholdsFile(path: string, nesting: number[]): ThresholdsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`thresholds file ${path}: ${(err as Error).message}`);
  }
  const thresholds = (parsed as { thresholds?: unknown } | null)?.thresholds;
  const bad = validateThresholds(thresholds, nesting);
  if (bad) throw new Error(`thresholds file ${path}: ${bad}`);
  return parsed as ThresholdsFile;
}

export interface ThresholdStoreOptions {
  /** Override file; when set it must be valid at start, and later changes are picked up. */
  path?: string;
  /** How often the file's stat is polled, ms (default 1000). Polling, not inotify: a Kubernetes
   * ConfigMap update swaps a symlink, which stat follows and file watches miss. */
  pollMs?: number;
  /** Called after every reload attempt. */
  onReload?: (ok: boolean, thresholds: readonly number[]) => void;
}

/** The cascade's current thresholds: the bundle's, or an override file's, reloaded when it changes. */
export class ThresholdStore {
  #current: readonly number[];

  constructor(
    private readonly bundle: Bundle,
    private readonly options: ThresholdStoreOptions,
    private readonly logger: Logger,
  ) {
    this.#current = options.path ? readThresholdsFile(options.path, bundle.nesting).thresholds : bundle.thresholds;
    if (options.path) {
      watchFile(options.path, { interval: options.pollMs ?? 1000, persistent: false }, () => this.reload());
      logger.info('thresholds loaded', { path: options.path, thresholds: this.#current });
    }
  }

  get current(): readonly number[] {
    return this.#current;
  }

  /** Re-reads the override file; a broken file is logged and the last good thresholds stay. */
  reload(): void {
    if (!this.options.path) return;
    try {
      this.#current = readThresholdsFile(this.options.path, this.bundle.nesting).thresholds;
      this.logger.info('thresholds reloaded', { path: this.options.path, thresholds: this.#current });
      this.options.onReload?.(true, this.#current);
    } catch (err) {
      this.logger.error('thresholds reload failed; keeping the previous ones', { reason: (err as Error).message });
      this.options.onReload?.(false, this.#current);
    }
  }

  close(): void {
    if (this.options.path) unwatchFile(this.options.path);
  }
}
