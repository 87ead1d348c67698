import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { type ClassifierBundle, validateTemperatures, validateThresholds } from '../../matryoshka/bundle.js';
import type { Logger } from '../common/logger.js';

/**
 * A thresholds file, as `mrl calibrate --out` writes it: the model it was calibrated for
 * (`name@version`), the thresholds, the temperatures they were calibrated under (default: the
 * bundle's) and the calibration record (kept as it is).
 */
export interface ThresholdsFile {
  model: string;
  thresholds: number[];
  temperatures?: number[];
  calibration?: object;
}

/** The part of a calibration record's certificate the service acts on. */
export interface CertificateTerms {
  risk: string;
  epsilon: number;
  delta: number;
}

/** What the cascade's exit rule runs with, and the certificate the thresholds carry (absent: uncertified). */
export interface ExitSettings {
  thresholds: readonly number[];
  temperatures: readonly number[];
  certificate?: CertificateTerms;
}

/** The certificate terms of a calibration record, when it has well-formed ones. */
function certificateOf(calibration: unknown): CertificateTerms | undefined {
  const c = (calibration as { certificate?: Partial<CertificateTerms> } | undefined)?.certificate;
  return c && typeof c.risk === 'string' && typeof c.epsilon === 'number' && typeof c.delta === 'number'
    ? { risk: c.risk, epsilon: c.epsilon, delta: c.delta }
    : undefined;
}

/** Why a thresholds file was not taken. `wrong_model`: it is valid, but calibrated for another model. */
export class ThresholdsFileError extends Error {
  constructor(
    readonly reason: 'error' | 'wrong_model',
    message: string,
  ) {
    super(message);
    this.name = 'ThresholdsFileError';
  }
}

/** Reads and validates a thresholds file against the bundle it is to serve; throws with the reason. */
export function readThresholdsFile(path: string, bundle: Pick<ClassifierBundle, 'id' | 'nesting'>): ThresholdsFile {
  const invalid = (why: string) => new ThresholdsFileError('error', `thresholds file ${path}: ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw invalid((err as Error).message);
  }
  const file = (parsed ?? {}) as Partial<ThresholdsFile>;
  const bad = validateThresholds(file.thresholds, bundle.nesting);
  if (bad) throw invalid(bad);
  if (file.temperatures !== undefined) {
    const badT = validateTemperatures(file.temperatures, bundle.nesting);
    if (badT) throw invalid(badT);
  }
  if (typeof file.model !== 'string') throw invalid(`it names no model ("model": "name@version"); this cascade serves ${bundle.id}`);
  if (file.model !== bundle.id)
    throw new ThresholdsFileError('wrong_model', `thresholds file ${path}: calibrated for ${file.model}, but this cascade serves ${bundle.id}`);
  return file as ThresholdsFile;
}

/** The settings a thresholds file gives a bundle: its thresholds, its temperatures or the bundle's. */
export function exitSettings(bundle: ClassifierBundle, file?: ThresholdsFile): ExitSettings {
  return file
    ? { thresholds: file.thresholds, temperatures: file.temperatures ?? bundle.temperatures, certificate: certificateOf(file.calibration) }
    : { thresholds: bundle.thresholds, temperatures: bundle.temperatures, certificate: certificateOf(bundle.meta.calibration) };
}

export interface ThresholdStoreOptions {
  /** Override file; when set it must be valid at start, and later changes are picked up. */
  path?: string;
  /** How often the file's stat is polled, ms (default 1000). Polling, not inotify: a Kubernetes
   * ConfigMap update swaps a symlink, which stat follows and file watches miss. */
  pollMs?: number;
  /**
   * Called after every change or refused change, with the settings then in force: `ok` (the file
   * reloaded), why the file was refused, or `recertified` (thresholds re-certified on shadow samples).
   */
  onChange?: (result: 'ok' | 'recertified' | ThresholdsFileError['reason'], settings: ExitSettings) => void;
}

/**
 * The cascade's current thresholds: the bundle's, or an override file's, reloaded when it changes,
 * or ones re-certified on live traffic. A file that changes wins over re-certified thresholds.
 */
export class ThresholdStore {
  #current: ExitSettings;

  constructor(
    private readonly bundle: ClassifierBundle,
    private readonly options: ThresholdStoreOptions,
    private readonly logger: Logger,
  ) {
    this.#current = exitSettings(bundle, options.path ? readThresholdsFile(options.path, bundle) : undefined);
    if (options.path) {
      watchFile(options.path, { interval: options.pollMs ?? 1000, persistent: false }, () => this.reload());
      logger.info('thresholds loaded', { path: options.path, ...this.#current });
    }
  }

  get current(): ExitSettings {
    return this.#current;
  }

  /** Re-reads the override file; a broken file, or one for another model, is logged and the last good settings stay. */
  reload(): void {
    if (!this.options.path) return;
    try {
      this.#current = exitSettings(this.bundle, readThresholdsFile(this.options.path, this.bundle));
      this.logger.info('thresholds reloaded', { path: this.options.path, ...this.#current });
      this.options.onChange?.('ok', this.#current);
    } catch (err) {
      const reason = err instanceof ThresholdsFileError ? err.reason : 'error';
      this.logger.error('thresholds file refused; keeping the previous ones', { reason, message: (err as Error).message });
      this.options.onChange?.(reason, this.#current);
    }
  }

  /** Serves thresholds certified on live traffic, at the current temperatures. */
  recertified(thresholds: readonly number[], certificate: CertificateTerms): void {
    this.#current = { ...this.#current, thresholds, certificate };
    this.options.onChange?.('recertified', this.#current);
  }

  close(): void {
    if (this.options.path) unwatchFile(this.options.path);
  }
}
