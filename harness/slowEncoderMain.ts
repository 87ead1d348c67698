// The encoder process with every batch slowed by argv[2] ms, for tests that need a slow model in
// a real process; an argument of this harness entry, so no environment can turn it on in production.
import { runEncoder } from '../services/encoder/run.js';
import { slowBatches } from './slowEncoder.js';

await runEncoder(slowBatches(Number(process.argv[2])));
