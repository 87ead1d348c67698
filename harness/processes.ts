import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Env } from '../services/common/config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** An entry of this repository (or of a build of it) running as a Node process of its own. */
export interface NodeProcess {
  child: ChildProcess;
  pid: number;
  /** Every line it wrote, stdout and stderr. */
  output: string[];
  /** Resolves when it exits. */
  exit: Promise<Exit>;
  exited(): boolean;
  /** `signal` (default SIGTERM) unless it has exited, then its exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
  /** SIGKILL (unless it has exited), then its exit. */
  kill(): Promise<Exit>;
  /**
   * The first JSON line it wrote or writes that `match` accepts. Rejects, with its output, if it
   * exits first or after `timeoutMs` (45,000 by default), which SIGKILLs it.
   */
  jsonLine(what: string, match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export interface SpawnOptions {
  /** Arguments after the entry (default none). */
  args?: string[];
  /** Set on top of this process's environment less its MRL_ settings, so a developer's own cannot leak in. */
  env?: Env;
  /** Other variables of this process's environment it does not get (default none). */
  unset?: string[];
  /** The entry is compiled JavaScript, run by node alone, not through tsx (default false). */
  compiled?: boolean;
  /** Where it runs, and what `entry` is relative to (default the repository root). */
  cwd?: string;
  /**
   * A command that runs node for us, such as `['ip', 'netns', 'exec', NS]` (default none). It must
   * exec node, so that the pid is node's, for signals and /proc.
   */
  prefix?: string[];
}

const running = new Set<ChildProcess>();

const parse = (line: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

/** Runs `node --import tsx <entry>` (a path from the repository root; compiled: `node <entry>`) and collects its output lines. */
export function spawnNode(entry: string, options: SpawnOptions = {}): NodeProcess {
  const [command, ...prefixArgs] = [...(options.prefix ?? []), process.execPath];
  const shown = [...(options.prefix ?? []), entry].join(' ');
  const inherited = Object.entries(process.env).filter(([k]) => !k.startsWith('MRL_') && !options.unset?.includes(k));
  const child = spawn(command!, [...prefixArgs, ...(options.compiled ? [] : ['--import', 'tsx']), entry, ...(options.args ?? [])], {
    cwd: options.cwd ?? ROOT,
    env: { ...Object.fromEntries(inherited), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const output: string[] = [];
  const listeners = new Set<(line: string) => void>();
  for (const stream of [child.stdout!, child.stderr!])
    createInterface({ input: stream }).on('line', (line) => {
      output.push(line);
      for (const listener of listeners) listener(line);
    });
  let exited = false;
  const exit = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => {
      exited = true;
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const signal = (sig: NodeJS.Signals) => {
    if (!exited) child.kill(sig);
    return exit;
  };
  const jsonLine: NodeProcess['jsonLine'] = (what, match, timeoutMs = 45_000) =>
    new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      const check = (line: string) => {
        const parsed = parse(line);
        if (parsed && match(parsed)) {
          done();
          resolve(parsed);
        }
      };
      const fail = (why: string) => {
        done();
        reject(new Error(`${shown} ${why} ${what}:\n${output.join('\n')}`));
      };
      const timer = setTimeout(() => {
        fail(`did not write within ${timeoutMs} ms that it was`);
        child.kill('SIGKILL');
      }, timeoutMs);
      listeners.add(check);
      for (const line of output) check(line);
      void exit.then((e) => fail(`exited (${e.signal ?? e.code}) before it was`));
    });
  return { child, pid: child.pid!, output, exit, exited: () => exited, stop: (sig = 'SIGTERM') => signal(sig), kill: () => signal('SIGKILL'), jsonLine };
}

/** SIGKILLs every process spawned here that is still running, and waits for them (for afterAll). */
export async function killAll(): Promise<void> {
  const exits = [...running].map((child) => new Promise((resolve) => child.once('exit', resolve)));
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(exits);
}
