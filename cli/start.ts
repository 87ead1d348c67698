import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { prettyLogLine } from './prettyLog.js';

const SERVICES = {
  encoder: fileURLToPath(new URL('../services/encoder/main.ts', import.meta.url)),
  cascade: fileURLToPath(new URL('../services/cascade/main.ts', import.meta.url)),
};

const COLOURS = { encoder: '\x1b[36m', cascade: '\x1b[35m' };

/**
 * `mrl start`: runs the encoder and the cascade as two processes (settings from the environment),
 * their JSON logs shown as prefixed readable lines. Ctrl-C or SIGTERM stops both gracefully;
 * if either exits, the other is stopped too.
 */
export async function start(options: { json: boolean }): Promise<number> {
  const colour = process.stdout.isTTY;
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    for (const child of children.values()) if (child.exitCode === null) child.kill('SIGTERM');
  };
  const exits = Object.entries(SERVICES).map(([name, entry]) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    children.set(name, child);
    const prefix = colour ? `${COLOURS[name as keyof typeof COLOURS]}[${name}]\x1b[0m` : `[${name}]`;
    for (const stream of [child.stdout!, child.stderr!])
      createInterface({ input: stream }).on('line', (line) => console.log(options.json ? line : `${prefix} ${prettyLogLine(line)}`));
    return new Promise<number>((resolve) =>
      child.on('exit', (code, signal) => {
        if (!stopping) console.log(`[${name}] exited (${signal ?? code}); stopping the others`);
        stopAll();
        resolve(code ?? 1);
      }),
    );
  });
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  const codes = await Promise.all(exits);
  return codes.every((c) => c === 0) ? 0 : 1;
}
