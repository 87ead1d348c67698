import * as grpc from '@grpc/grpc-js';
import { callSignal, endedStatus } from './callEnd.js';
import { StatusError } from './statusError.js';
import type { Logger } from './logger.js';

/** Turns any thrown value into a status: StatusError keeps its code; others become a bland INTERNAL. */
export type ErrorMapper = (err: unknown) => { code: grpc.status; details: string };

export function baseErrorMapper(logger: Logger): ErrorMapper {
  return (err) => {
    if (err instanceof StatusError) return { code: err.code, details: err.message };
    logger.error('unexpected error in handler', { err: err instanceof Error ? err : String(err) });
    return { code: grpc.status.INTERNAL, details: 'internal error' };
  };
}

/** A request body that did not parse as its message (see `parseTolerantService`). */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/**
 * `definition` with request parsing that cannot fail: a body that does not parse becomes a
 * MalformedRequest, which `unary` answers with INVALID_ARGUMENT. grpc-js alone answers it with
 * INTERNAL "Error deserializing request", which reads as the server's fault and skips the metrics.
 * Every handler registered with it must expect one (`unary` handlers do, and so does HealthState's):
 * the type does not show the MalformedRequest.
 */
export function parseTolerantService<T extends grpc.ServiceDefinition>(definition: T): T {
  const methods = Object.entries(definition).map(([name, method]) => {
    // `/mrl.v1.Encoder/Encode` and a request type named EncodeRequest: mrl.v1.EncodeRequest.
    const pkg = method.path.split('/')[1]!.split('.').slice(0, -1).join('.');
    const type = (method as { requestType?: { type?: { name?: string } } }).requestType?.type?.name ?? 'request';
    const requestDeserialize = (bytes: Buffer) => {
      try {
        return method.requestDeserialize(bytes);
      } catch (err) {
        return new MalformedRequest(`request is not a valid ${pkg}.${type} message: ${(err as Error).message}`);
      }
    };
    return [name, { ...method, requestDeserialize }];
  });
  return Object.fromEntries(methods) as T;
}

/**
 * An async unary handler as grpc-js wants it: exactly one callback, errors mapped to a status,
 * and `observe(code, seconds, request, response)` called once per call for metrics (`request`
 * absent for a body that did not parse), with the code
 * the client got: a call whose deadline passed or that the client cancelled before the handler
 * answered counts as DEADLINE_EXCEEDED or CANCELLED, whatever the handler returns afterwards.
 * `response` is set only when the client got it. `signal` aborts if the call ends before the
 * handler answers (see `callSignal`).
 */
export function unary<Req, Res>(
  handle: (request: Req, signal: AbortSignal, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  mapError: ErrorMapper,
  observe: (code: grpc.status, seconds: number, request: Req | undefined, response?: Res) => void,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const start = process.hrtime.bigint();
    const request: unknown = call.request;
    if (request instanceof MalformedRequest) {
      observe(grpc.status.INVALID_ARGUMENT, Number(process.hrtime.bigint() - start) / 1e9, undefined);
      callback({ code: grpc.status.INVALID_ARGUMENT, details: request.reason });
      return;
    }
    const { signal, answered } = callSignal(call);
    // A call that already ended was answered by grpc-js (its deadline) or by no one (cancelled):
    // count what its client saw; the callback is then a no-op.
    const done = (code: grpc.status, res?: Res) => {
      answered();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (call.cancelled) observe(endedStatus(call).code, seconds, call.request);
      else observe(code, seconds, call.request, res);
    };
    handle(call.request, signal, call).then(
      (res) => {
        done(grpc.status.OK, res);
        callback(null, res);
      },
      (err: unknown) => {
        const { code, details } = mapError(err);
        done(code);
        callback({ code, details });
      },
    );
  };
}

/** Status code name as metrics label it (`OK`, `INVALID_ARGUMENT`, …). */
export const codeName = (code: grpc.status): string => grpc.status[code] ?? String(code);
