import { type ServiceError, status } from '@grpc/grpc-js';

/** How one call ended, as its client saw it. */
export interface Outcome {
  /** gRPC status code (0 = OK). */
  code: status;
  details: string;
  /** When the call was sent (ms since the epoch). */
  startedAt: number;
  /** When it ended (ms since the epoch). */
  endedAt: number;
  /** The deadline it was sent with, ms after `startedAt`. */
  deadlineMs: number;
}

/** Runs one call and records how it ended; never rejects. */
export async function outcome(call: (deadline: Date) => Promise<unknown>, deadlineMs: number): Promise<Outcome> {
  const startedAt = Date.now();
  try {
    await call(new Date(startedAt + deadlineMs));
    return { code: status.OK, details: '', startedAt, endedAt: Date.now(), deadlineMs };
  } catch (err) {
    const e = err as ServiceError;
    return { code: e.code ?? status.UNKNOWN, details: e.details ?? String(err), startedAt, endedAt: Date.now(), deadlineMs };
  }
}

/** Outcomes counted by status name (`OK`, `UNAVAILABLE`, …). */
export function tally(outcomes: Outcome[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) out[status[o.code]!] = (out[status[o.code]!] ?? 0) + 1;
  return out;
}

/** The outcomes that ended later than their deadline plus `marginMs`. */
export const late = (outcomes: Outcome[], marginMs: number): Outcome[] =>
  outcomes.filter((o) => o.endedAt - o.startedAt > o.deadlineMs + marginMs);

export interface ClosedLoop {
  /** Every outcome so far, in the order the calls ended. */
  outcomes: Outcome[];
  /** Calls sent so far. */
  sent(): number;
  /** Stops sending and resolves once every call sent has ended. */
  stop(): Promise<Outcome[]>;
}

/**
 * `concurrency` workers, each sending one call at a time with `deadlineMs` and pausing `pauseMs`
 * between calls, until stopped or `maxCalls` have been sent: a bounded, paced load.
 */
export function closedLoop(options: {
  call: (deadline: Date) => Promise<unknown>;
  concurrency: number;
  deadlineMs: number;
  pauseMs: number;
  maxCalls: number;
}): ClosedLoop {
  const outcomes: Outcome[] = [];
  let sent = 0;
  let stopped = false;
  const worker = async () => {
    while (!stopped && sent < options.maxCalls) {
      sent++;
      outcomes.push(await outcome(options.call, options.deadlineMs));
      await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  };
  const workers = Promise.all(Array.from({ length: options.concurrency }, worker));
  return {
    outcomes,
    sent: () => sent,
    stop: async () => {
      stopped = true;
      await workers;
      return outcomes;
    },
  };
}

/** Polls `check` every `everyMs` until it returns true; fails after `timeoutMs` with `what`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** The median of `values` (their 50th percentile: of an even count, the lower middle one). */
export const median = (values: number[]): number => percentile(values, 50);
