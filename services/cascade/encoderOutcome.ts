import { status } from '@grpc/grpc-js';
import { StatusError } from '../common/statusError.js';

/**
 * Whose doing an encoder call's failure is. Only the encoder's counts against its breaker:
 *
 * | what happened | whose | the caller gets |
 * | --- | --- | --- |
 * | refused, reset, `UNAVAILABLE`, `INTERNAL`, any other code, an answer from another model or of another size, every input failing for the encoder's reasons | encoder | `UNAVAILABLE` `encoder unavailable: …` |
 * | the encoder had the call at least `MRL_BREAKER_MIN_TIMEOUT_MS` (every call gets that long, see EncoderGateway) and did not answer by its deadline | encoder | `DEADLINE_EXCEEDED` |
 * | the same, but the cascade saw the deadline late (its own event loop was busy, so an answer may have waited unread) | cascade | `DEADLINE_EXCEEDED` |
 * | `RESOURCE_EXHAUSTED` from the encoder | backpressure | `RESOURCE_EXHAUSTED`, the encoder's message |
 * | `INVALID_ARGUMENT` from the encoder (the input) | caller | `INVALID_ARGUMENT`, the encoder's message |
 * | the caller's deadline or cancel while its job waited in the cascade, or a job refused there (admission) | caller | never reaches the encoder: no call, nothing counted |
 */
export type Party = 'encoder' | 'caller' | 'backpressure' | 'cascade';

const PARTY_BY_CODE: Partial<Record<status, Party>> = {
  [status.INVALID_ARGUMENT]: 'caller',
  [status.RESOURCE_EXHAUSTED]: 'backpressure',
};

/** An encoder call (or one of its inputs) that failed, with the status its callers get and whose doing it was. */
export class EncoderFailure extends StatusError {
  constructor(
    code: status,
    message: string,
    readonly party: Party,
  ) {
    super(code, message);
  }
}

/**
 * The encoder's status for a call or an input, as the table above classifies it; `call`, for a
 * whole call's status: when it was sent and its deadline.
 */
export function encoderFailure(err: { code: status; details: string }, call?: { sentAt: number; deadline: number }): EncoderFailure {
  const party = PARTY_BY_CODE[err.code] ?? 'encoder';
  if (party !== 'encoder') return new EncoderFailure(err.code, err.details, party);
  if (err.code === status.DEADLINE_EXCEEDED) return call ? timedOut(call.sentAt, call.deadline) : new EncoderFailure(err.code, err.details, party);
  return unavailable(err.details || status[err.code] || String(err.code));
}

/**
 * Past a call's deadline by more than this (ms, or this share of the call's time if more), the
 * cascade was too busy to have read an answer that came in time: a timeout says nothing then.
 */
const LATE = { ms: 50, share: 0.25 };

/** A call sent at `sentAt` with the given deadline timed out, noticed at `now` (all ms since the epoch). */
export function timedOut(sentAt: number, deadline: number, now = Date.now()): EncoderFailure {
  const late = now - deadline > Math.max(LATE.ms, LATE.share * (deadline - sentAt));
  return new EncoderFailure(status.DEADLINE_EXCEEDED, 'deadline exceeded waiting for the encoder', late ? 'cascade' : 'encoder');
}

/** The encoder failed in a way its status does not say (a wrong answer): `why` completes "encoder unavailable: …". */
export const unavailable = (why: string) => new EncoderFailure(status.UNAVAILABLE, `encoder unavailable: ${why}`, 'encoder');

/** opossum's errorFilter: true for what is not the encoder's fault, which then does not count against it. */
export const notTheEncoders = (err: unknown): boolean => err instanceof EncoderFailure && err.party !== 'encoder';
