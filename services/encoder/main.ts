import { runEncoder } from './run.js';

await runEncoder();
