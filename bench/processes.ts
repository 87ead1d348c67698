import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface Spawned {
  child: ChildProcess;
  /** The first stdout JSON line for which `ready` returns a value. */
  ready: Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Runs `node --import tsx <entry>` from the repository root and watches its JSON stdout lines. */
export function spawnTs(entry: string, env: Record<string, string>, ready: (line: Record<string, unknown>) => boolean): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const readyPromise = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${entry} exited (${code}) before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (ready(parsed)) resolve(parsed);
      } catch {
        // not JSON: ignore
      }
    });
  });
  return {
    child,
    ready: readyPromise,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Runs one load point in a separate client process and returns its parsed JSON result. */
export function runInChild<T>(entry: string, arg: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, JSON.stringify(arg)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!) as T) : reject(new Error(`${entry} exited ${code}`))));
  });
}
