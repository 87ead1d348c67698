import { setMaxListeners } from 'node:events';
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
 * A signal that aborts, with `endedStatus` as its reason, if the call ends (its deadline passed,
 * or the client cancelled) before `answered` is called. grpc-js emits `cancelled` at the end of
 * every call, answered or not (and after answering DEADLINE_EXCEEDED itself), so the handler's
 * answer must stop listening first. Work queued for an aborted call has no one to answer.
 */
export function callSignal(call: Call): { signal: AbortSignal; answered: () => void } {
  const controller = new AbortController();
  // Every input of a batch call waits on this one signal: many listeners are by design.
  setMaxListeners(0, controller.signal);
  const ended = () => controller.abort(endedStatus(call));
  call.once('cancelled', ended);
  return { signal: controller.signal, answered: () => call.removeListener('cancelled', ended) };
}
