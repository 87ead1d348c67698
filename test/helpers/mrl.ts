import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * The node arguments that run the `mrl` CLI from its TypeScript source, through tsx, from the
 * repository root: tests exercise the code as it stands, not whatever dist/ was last built. The
 * `mrl` bin itself runs the compiled CLI; test/compiled.test.ts covers that.
 */
export const MRL = ['--import', 'tsx', 'cli/main.ts'];

const run = promisify(execFile);

/** Runs `mrl ARGS…` to completion: its stdout and stderr; rejects when it exits non-zero. */
export const mrl = (...args: string[]) => run(process.execPath, [...MRL, ...args], { maxBuffer: 1 << 26 });
