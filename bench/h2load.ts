import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { childrenCpuSeconds, cpuSeconds } from './procStats.js';

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
  /** Seconds of load after `warmupSeconds` (whole milliseconds). */
  seconds: number;
  warmupSeconds: number;
  /** The calls' gRPC deadline. */
  deadlineMs: number;
  /**
   * An open loop: calls per second each connection sends, whatever the answers, with at most
   * `streams` in flight on it (default none: a closed loop, `streams` always in flight).
   */
  rpsPerConnection?: number;
}

export interface H2loadResult<T> {
  /** Calls answered in the measured window (an HTTP/2 response, whatever its gRPC status). */
  calls: number;
  /** Their latencies, ms. */
  latenciesMs: number[];
  /** How long the measured window lasted, s. */
  seconds: number;
  /** h2load's own CPU over the measured window (and the few ms it takes to stop), s. */
  clientCpuSeconds: number;
  /** What the probe returned as the measured window began and as it ended. */
  window: { start: T; end: T };
  /** What h2load printed. */
  output: string;
}

/** The message in gRPC's length-prefixed framing: uncompressed flag, 4-byte big-endian length. */
export function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

let runs = 0;

/**
 * Runs h2load; `probe` is called as its measured window begins and ends (h2load says when), so
 * that what it reads (servers' CPU, metrics) covers the same window. h2load's CPU is read from
 * /proc as the window begins and from this process's reaped children once it exits, so no other
 * child of this process may exit meanwhile.
 */
export async function h2load<T = undefined>(run: H2loadRun, probe: () => T = () => undefined as T): Promise<H2loadResult<T>> {
  const base = join(tmpdir(), `mrl-h2load-${process.pid}-${runs++}`);
  await writeFile(`${base}.bin`, grpcFrame(run.message));
  const ms = (s: number) => `${Math.round(s * 1000)}ms`;
  const args = [
    '-c', String(run.connections),
    '-m', String(run.streams),
    '-t', '1',
    '-D', ms(run.seconds),
    `--warm-up-time=${ms(run.warmupSeconds)}`,
    ...(run.rpsPerConnection === undefined ? [] : [`--rps=${run.rpsPerConnection}`]),
    `--log-file=${base}.log`,
    '-d', `${base}.bin`,
    '-H', 'content-type: application/grpc',
    '-H', 'te: trailers',
    '-H', `grpc-timeout: ${run.deadlineMs}m`,
    `${run.origin}${run.path}`,
  ];
  try {
    const reapedBefore = childrenCpuSeconds();
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    let started: { at: number; cpu: number; probe: T } | undefined;
    let ended: { at: number; probe: T } | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      if (line.startsWith('Main benchmark duration is started')) started = { at: performance.now(), cpu: cpuSeconds(child.pid!), probe: probe() };
      else if (line.startsWith('Main benchmark duration is over')) ended = { at: performance.now(), probe: probe() };
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', (err) => reject(new Error(`h2load failed: ${err.message} (is nghttp2-client installed?)`)));
      child.on('close', resolve);
    });
    const printed = output.join('\n');
    if (code !== 0) throw new Error(`h2load failed (exit ${code}): ${stderr || printed}`);
    if (!started || !ended) throw new Error(`h2load did not say when it measured:\n${printed}`);
    // Rows: start (µs since the epoch), HTTP status (0: not ended when the window closed, −1: failed), µs to the end.
    const answered = (await readFile(`${base}.log`, 'utf8'))
      .split('\n')
      .map((row) => row.split('\t'))
      .filter((cols) => Number(cols[1]) > 0);
    return {
      calls: answered.length,
      latenciesMs: answered.map((cols) => Number(cols[2]) / 1000),
      seconds: (ended.at - started.at) / 1000,
      clientCpuSeconds: childrenCpuSeconds() - reapedBefore - started.cpu,
      window: { start: started.probe, end: ended.probe },
      output: printed,
    };
  } finally {
    await rm(`${base}.bin`, { force: true });
    await rm(`${base}.log`, { force: true });
  }
}
