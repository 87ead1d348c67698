import { status } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { baseErrorMapper, type ErrorMapper } from '../common/unary.js';

/** opossum's error codes (of those its settings can raise: no timeout, no capacity) and what a Classify caller is told. */
const BREAKER_ERRORS: Record<string, { code: status; details: string }> = {
  EOPENBREAKER: { code: status.UNAVAILABLE, details: 'encoder circuit breaker is open after repeated encoder failures; retry later' },
  ESHUTDOWN: { code: status.UNAVAILABLE, details: 'the cascade is shutting down' },
};

/** The cascade's error-to-status mapper: breaker codes first, then StatusError, else INTERNAL. */
export function cascadeErrorMapper(logger: Logger): ErrorMapper {
  const base = baseErrorMapper(logger);
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && code in BREAKER_ERRORS) return BREAKER_ERRORS[code]!;
    return base(err);
  };
}
