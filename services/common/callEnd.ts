import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { StatusError } from './statusError.js';

type Call = ServerUnaryCall<unknown, unknown>;

/**
 * What the client of a call that ended before its handler answered was told: DEADLINE_EXCEEDED
 * once the deadline has passed, else CANCELLED (the client cancelled or went away).
 */
export function endedStatus(call: Call): StatusError {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Date.now() >= ms
    ? new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded before the call was served')
    : new StatusError(status.CANCELLED, 'call cancelled by the client');
}

/**
 * Aborts, with `endedStatus` as its reason, when the call ends: its deadline passed or the
 * client cancelled. Work queued for a call whose signal is aborted has no one to answer.
 */
export function callSignal(call: Call): AbortSignal {
  const controller = new AbortController();
  // grpc-js emits `cancelled` when the deadline passes too (after answering DEADLINE_EXCEEDED).
  call.once('cancelled', () => controller.abort(endedStatus(call)));
  return controller.signal;
}
