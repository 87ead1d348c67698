import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { MalformedRequest, parseTolerantService } from './unary.js';

type Status = 'SERVING' | 'NOT_SERVING';
type WatchCall = grpc.ServerWritableStream<{ service: string } | MalformedRequest, { status: string }>;

/** A body that did not parse, as the status a client gets: its fault, not the server's. */
const malformed = (request: MalformedRequest) => ({ code: grpc.status.INVALID_ARGUMENT, details: request.reason });

/**
 * grpc.health.v1 (Check, Watch, List) for a fixed set of service names, shareable by several
 * servers (the main port and a plaintext health port). Unlike grpc-health-check's own
 * implementation it can end its Watch streams: an open stream keeps a gracefully stopping
 * server waiting until the grace period runs out and in-flight calls are cancelled.
 */
export class HealthState {
  readonly #status = new Map<string, Status>();
  readonly #watches = new Set<{ service: string; call: WatchCall }>();

  /** @param services names reported (`''`, the whole server, is always added); all start NOT_SERVING. */
  constructor(services: string[]) {
    for (const name of ['', ...services]) this.#status.set(name, 'NOT_SERVING');
  }

  /** Sets every service's status and tells the watchers. */
  setServing(serving: boolean): void {
    const status: Status = serving ? 'SERVING' : 'NOT_SERVING';
    for (const name of this.#status.keys()) this.#status.set(name, status);
    for (const w of this.#watches) if (this.#status.has(w.service)) w.call.write({ status });
  }

  /** Ends every Watch stream with OK; clients see the stream close after the last status sent. */
  endWatches(): void {
    for (const w of this.#watches) w.call.end();
    this.#watches.clear();
  }

  /** Adds grpc.health.v1.Health, answering from this state, to `server`. */
  addTo(server: grpc.Server): void {
    server.addService(parseTolerantService(healthService as unknown as grpc.ServiceDefinition), {
      check: (call: grpc.ServerUnaryCall<{ service: string } | MalformedRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (call.request instanceof MalformedRequest) return callback(malformed(call.request));
        const status = this.#status.get(call.request.service);
        if (status) callback(null, { status });
        else callback({ code: grpc.status.NOT_FOUND, details: `health status unknown for service "${call.request.service}"` });
      },
      watch: (call: WatchCall) => {
        if (call.request instanceof MalformedRequest) return void call.emit('error', malformed(call.request));
        const watch = { service: call.request.service, call };
        this.#watches.add(watch);
        call.on('cancelled', () => this.#watches.delete(watch));
        call.write({ status: this.#status.get(watch.service) ?? 'SERVICE_UNKNOWN' });
      },
      list: (call: grpc.ServerUnaryCall<object | MalformedRequest, unknown>, callback: grpc.sendUnaryData<unknown>) =>
        call.request instanceof MalformedRequest
          ? callback(malformed(call.request))
          : callback(null, { statuses: Object.fromEntries([...this.#status].map(([name, status]) => [name, { status }])) }),
    });
  }
}
