import * as grpc from '@grpc/grpc-js';
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

/**
 * An async unary handler as grpc-js wants it: exactly one callback, errors mapped to a status,
 * and `observe(code, seconds)` called once per call for metrics.
 */
export function unary<Req, Res>(
  handle: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  mapError: ErrorMapper,
  observe: (code: grpc.status, seconds: number) => void,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const start = process.hrtime.bigint();
    const done = (code: grpc.status) => observe(code, Number(process.hrtime.bigint() - start) / 1e9);
    handle(call.request, call).then(
      (res) => {
        done(grpc.status.OK);
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
