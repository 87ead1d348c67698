/**
 * `npm run chaos`: the fault matrix of test/faults-netns.test.ts (kill -9, SIGSTOP, partition and
 * a slow link, each on one of two encoder replicas on hosts of their own in network namespaces)
 * under a steady Classify load, printed as a table: per fault and phase, the OK answers and the
 * others by gRPC code, and the times to recover. Needs root (about a minute).
 */
import { FAULTS, type FaultReport, faultTable, netnsUnavailable, runFault, startNetnsMesh, sweepLeftovers } from '../harness/netns.js';

const unavailable = netnsUnavailable();
if (unavailable) {
  console.error(`chaos: cannot make network namespaces here: ${unavailable}`);
  process.exit(1);
}

await sweepLeftovers();
const mesh = await startNetnsMesh();
// Ctrl-C must not leave namespaces or processes behind.
process.once('SIGINT', () => void mesh.destroy().then(() => process.exit(130)));
const reports: FaultReport[] = [];
try {
  for (const fault of FAULTS) {
    console.error(`chaos: ${fault.name} on ${fault.replica}…`);
    reports.push(await runFault(mesh, fault));
  }
} finally {
  await mesh.destroy();
}
console.log(faultTable(reports));
