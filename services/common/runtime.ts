import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Whether this code runs compiled (`npm run build` writes `dist/`, what production runs) rather
 * than as TypeScript source (vitest, or tsx in the benchmark and dev scripts). All modules run
 * the same way, so this module's own file tells.
 */
export const COMPILED = import.meta.url.endsWith('.js');

/** The extension of this code's own modules: `.js` compiled, `.ts` from source. */
export const MODULE_EXT = COMPILED ? '.js' : '.ts';

/** The nearest folder at or above `dir` that holds a package.json. */
function packageRootOf(dir: string): string {
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, 'package.json'))) return at;
    if (dirname(at) === at) throw new Error(`no package.json at or above ${dir}`);
  }
}

/**
 * The package's root folder (the one with package.json, protos/ and models/), from source and
 * from `dist/` alike: the one place that knows where the files read at run time live.
 */
export const PACKAGE_ROOT = packageRootOf(dirname(fileURLToPath(import.meta.url)));

/**
 * The module `path` (relative to `base`, an `import.meta.url`, without extension) as the file
 * that runs beside `base`: `path.js` compiled, `path.ts` from source.
 */
export function moduleUrl(path: string, base: string): URL {
  return new URL(`${path}${MODULE_EXT}`, base);
}

/**
 * The `--import` URL of tsx's loader, which runs TypeScript source in a child process or worker.
 * From source only: tsx is a dev dependency, absent where compiled code runs.
 */
export function tsxLoaderUrl(): string {
  if (COMPILED) throw new Error('compiled code runs without tsx');
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

/** The node arguments that run module `file` in a process of its own: itself compiled, through tsx from source. */
export function nodeArgs(file: string): string[] {
  return COMPILED ? [file] : ['--import', tsxLoaderUrl(), file];
}

/**
 * Starts module `path` (relative to `base`, without extension) on a worker thread: compiled, its
 * .js file. From TypeScript source (tests, tsx) the worker registers tsx itself before it imports
 * the .ts file, since loader hooks do not reach worker threads on Node 20; tsx is a dev
 * dependency and production never takes this path.
 */
export function startModuleWorker(path: string, base: string, options: WorkerOptions): Worker {
  const worker = moduleUrl(path, base);
  if (COMPILED) return new Worker(worker, options);
  const tsxPackage = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = JSON.parse(readFileSync(tsxPackage, 'utf8')) as { exports: { './esm/api': { import: { default: string } } } };
  const tsxApi = pathToFileURL(join(dirname(tsxPackage), api.exports['./esm/api'].import.default)).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(worker.href)}); });`;
  return new Worker(boot, { ...options, eval: true });
}
