#!/usr/bin/env node
// The `mrl` command: runs the compiled CLI in dist/, which `npm run build` writes (`npm ci` runs it
// through the prepare script, `npm start` through prestart). No TypeScript at run time.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('mrl: dist/cli/main.js is missing; run `npm run build` first');
  process.exit(1);
}
await import(main.href);
