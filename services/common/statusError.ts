import { status } from '@grpc/grpc-js';

/**
 * An error meant for the client: its gRPC code and message are sent as they are.
 * Anything else thrown in a handler is logged and answered with a bland INTERNAL.
 */
export class StatusError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

export const invalidArgument = (message: string): StatusError =>
  new StatusError(status.INVALID_ARGUMENT, message);
