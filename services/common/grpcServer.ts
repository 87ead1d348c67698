import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthState } from './health.js';
import type { Logger } from './logger.js';

export interface GrpcServerOptions {
  /** Fully qualified service names (e.g. `mrl.v1.Encoder`) whose health this server reports. */
  serviceNames: string[];
  /** For server reflection. */
  packageDefinition: PackageDefinition;
  /** Adds the service implementations. */
  register: (server: grpc.Server) => void;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Default: plaintext. */
  credentials?: grpc.ServerCredentials;
  /**
   * A second, plaintext port that serves only grpc.health.v1 (0 picks a free one; default: none).
   * For probes that cannot speak TLS (Kubernetes' gRPC probes) when `credentials` are TLS.
   */
  healthPort?: number;
  /** Channel options such as `grpc.max_receive_message_length`. */
  channelOptions?: grpc.ChannelOptions;
  logger: Logger;
}

export interface RunningGrpcServer {
  server: grpc.Server;
  port: number;
  /** The plaintext health port, when one was asked for. */
  healthPort?: number;
  health: HealthState;
  /** Marks every service SERVING (call once the model is loaded). */
  setServing(serving: boolean): void;
  /**
   * Graceful stop: report NOT_SERVING (and end health Watch streams), refuse new calls, let
   * in-flight ones finish, then close; calls still running after `graceMs` are cancelled.
   */
  shutdown(graceMs: number): Promise<void>;
}

const bind = (server: grpc.Server, address: string, credentials: grpc.ServerCredentials) =>
  new Promise<number>((resolve, reject) => server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound))));

/** Stops accepting calls and resolves once the running ones have finished. */
const stopServer = (server: grpc.Server) => new Promise<void>((resolve) => server.tryShutdown(() => resolve()));

/** A gRPC server with standard health (NOT_SERVING until `setServing`) and reflection. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new grpc.Server(options.channelOptions);
  const health = new HealthState(options.serviceNames);
  health.addTo(server);
  // The package definition holds both services' protos: reflection lists only what this server serves.
  new ReflectionService(options.packageDefinition, { services: options.serviceNames }).addToServer(server);
  options.register(server);
  const port = await bind(server, `${options.host}:${options.port}`, options.credentials ?? grpc.ServerCredentials.createInsecure());
  let healthServer: grpc.Server | undefined;
  let healthPort: number | undefined;
  if (options.healthPort !== undefined) {
    healthServer = new grpc.Server();
    health.addTo(healthServer);
    healthPort = await bind(healthServer, `${options.host}:${options.healthPort}`, grpc.ServerCredentials.createInsecure());
  }
  const setServing = (serving: boolean) => health.setServing(serving);
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs: number) =>
    (stopping ??= new Promise<void>((resolve) => {
      setServing(false);
      health.endWatches();
      const force = setTimeout(() => {
        options.logger.warn('grace period over: cancelling the calls still running', { grace_ms: graceMs });
        server.forceShutdown();
        healthServer?.forceShutdown();
      }, graceMs);
      force.unref();
      // The health port keeps answering NOT_SERVING until the calls have drained, so probes see
      // a draining server rather than a refused connection.
      void stopServer(server)
        .then(() => {
          health.endWatches(); // any opened on the health port while the calls drained
          return healthServer && stopServer(healthServer);
        })
        .then(() => {
          clearTimeout(force);
          resolve();
        });
    }));
  return { server, port, healthPort, health, setServing, shutdown };
}
