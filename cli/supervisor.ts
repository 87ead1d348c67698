import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../services/common/logger.js';

/** How long a supervisor waits before each restart. */
export interface Backoff {
  /** Delay before the first restart, ms (default 250). */
  initialMs: number;
  /** Each further restart waits this many times longer than the last (default 2). */
  factor: number;
  /** The longest delay, ms (default 10000). */
  maxMs: number;
  /** A run that lasted at least this long, ms, resets the next delay to `initialMs` (default 30000). */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, factor: 2, maxMs: 10_000, resetAfterMs: 30_000 };

/** How a child process ended: its exit code, or the signal that ended it. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SupervisorOptions {
  /** The service's name, in the supervisor's log messages. */
  name: string;
  /** The program to run (such as `process.execPath`), with this process's environment. */
  command: string;
  args: string[];
  /** Overrides of `DEFAULT_BACKOFF`. */
  backoff?: Partial<Backoff>;
  /**
   * Where the supervisor's own lines go: `<name> started` (pid, restarts), `<name> exited;
   * restarting` (pid, exit_code or signal, uptime_ms, restarts, backoff_ms), `stopping <name>`
   * (pid, signal) and `<name> stopped` (pid, exit_code or signal, uptime_ms).
   */
  logger: Logger;
  /** Each line the child writes on stdout or stderr. */
  output: (line: string) => void;
}

export interface Supervisor {
  /**
   * Ends supervision: no restart happens after it, a pending one is cancelled, and `signal`
   * (default SIGTERM) goes to the running child. Call again with SIGKILL to force it. Resolves
   * with the last child's exit once no child is running.
   */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/**
 * Runs `command` as a child process and keeps it running, as an orchestrator would: whenever it
 * exits (crash, signal, any exit code) while not stopping, it is started again after a delay that
 * begins at `backoff.initialMs` and grows by `backoff.factor` up to `backoff.maxMs`, back to the
 * start after a run of `backoff.resetAfterMs`. Each restart is logged with the running count.
 */
export function supervise(options: SupervisorOptions): Supervisor {
  const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  const { name, logger } = options;
  let child: ChildProcess | undefined;
  let pending: NodeJS.Timeout | undefined;
  let stopping = false;
  let restarts = 0;
  /** The exponent of the next delay: restarts since the last run of `resetAfterMs`, until the cap. */
  let streak = 0;
  let lastExit: Exit = { code: null, signal: null };
  let stopped!: (exit: Exit) => void;
  const done = new Promise<Exit>((resolve) => (stopped = resolve));

  const run = () => {
    pending = undefined;
    const startedAt = Date.now();
    const current = spawn(options.command, options.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = current;
    current.on('spawn', () => logger.info(`${name} started`, { pid: current.pid, restarts }));
    current.on('error', (err) => logger.error(`${name}: ${err.message}`, { pid: current.pid }));
    for (const stream of [current.stdout!, current.stderr!]) createInterface({ input: stream }).on('line', options.output);
    // 'close' comes after the child's last output, and also after a failed spawn.
    current.on('close', (code, signal) => {
      child = undefined;
      lastExit = { code, signal };
      const uptimeMs = Date.now() - startedAt;
      const fields = { pid: current.pid, ...(signal ? { signal } : { exit_code: code }), uptime_ms: uptimeMs };
      if (stopping) {
        logger.info(`${name} stopped`, fields);
        stopped(lastExit);
        return;
      }
      if (uptimeMs >= backoff.resetAfterMs) streak = 0;
      const delayMs = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** streak);
      if (delayMs < backoff.maxMs) streak++;
      restarts++;
      logger.warn(`${name} exited; restarting`, { ...fields, restarts, backoff_ms: delayMs });
      pending = setTimeout(run, delayMs);
    });
  };
  run();

  return {
    stop(signal = 'SIGTERM') {
      if (!stopping) {
        stopping = true;
        clearTimeout(pending);
        if (!child) stopped(lastExit);
      }
      if (child) {
        logger.info(`stopping ${name}`, { pid: child.pid, signal });
        child.kill(signal);
      }
      return done;
    },
  };
}
