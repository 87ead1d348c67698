import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * h2load (Debian's nghttp2-client) as an independent load generator for unary gRPC, as ghz would
 * be: it sends one prepared request body over HTTP/2 and costs far less CPU than a grpc-js client.
 * It does not read gRPC statuses (they are in trailers): the servers' own request counters say
 * how calls ended.
 */
export interface H2loadRun {
  /** `http://127.0.0.1:PORT`. */
  origin: string;
  /** `/mrl.v1.Classifier/Classify`. */
  path: string;
  /** The request message, serialized. */
  message: Buffer;
  /** Connections, and streams in flight on each: connections × streams are the concurrent calls. */
  connections: number;
  streams: number;
  /** Seconds of load after `warmupSeconds`. */
  seconds: number;
  warmupSeconds: number;
  /** The calls' gRPC deadline. */
  deadlineMs: number;
}

export interface H2loadResult {
  /** Calls h2load saw finish over the measured time. */
  calls: number;
  /** What h2load printed. */
  output: string;
}

/** The message in gRPC's length-prefixed framing: uncompressed flag, 4-byte big-endian length. */
export function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export async function h2load(run: H2loadRun): Promise<H2loadResult> {
  const body = join(tmpdir(), `mrl-h2load-${process.pid}-${Date.now()}.bin`);
  await writeFile(body, grpcFrame(run.message));
  const args = [
    '-c', String(run.connections),
    '-m', String(run.streams),
    '-t', '1',
    '-D', String(run.seconds),
    `--warm-up-time=${run.warmupSeconds}`,
    '-d', body,
    '-H', 'content-type: application/grpc',
    '-H', 'te: trailers',
    '-H', `grpc-timeout: ${run.deadlineMs}m`,
    `${run.origin}${run.path}`,
  ];
  const output = await new Promise<string>((resolve, reject) =>
    execFile('h2load', args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`h2load failed: ${stderr || err.message}`)) : resolve(stdout))),
  );
  const done = /requests: \d+ total, \d+ started, (\d+) done/.exec(output);
  if (!done) throw new Error(`h2load printed no request counts:\n${output}`);
  return { calls: Number(done[1]), output };
}
