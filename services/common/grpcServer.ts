import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
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
  credentials?: grpc.ServerCredentials;
  /** Channel options such as `grpc.max_receive_message_length`. */
  channelOptions?: grpc.ChannelOptions;
  logger: Logger;
}

export interface RunningGrpcServer {
  server: grpc.Server;
  port: number;
  health: HealthImplementation;
  /** Marks every service SERVING (call once the model is loaded). */
  setServing(serving: boolean): void;
  /**
   * Graceful stop: report NOT_SERVING, refuse new calls, let in-flight ones finish, then
   * close; calls still running after `graceMs` are cancelled.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** A gRPC server with standard health (NOT_SERVING until `setServing`) and reflection. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new grpc.Server(options.channelOptions);
  const names = ['', ...options.serviceNames];
  const health = new HealthImplementation(Object.fromEntries(names.map((n) => [n, 'NOT_SERVING' as const])));
  health.addToServer(server);
  new ReflectionService(options.packageDefinition).addToServer(server);
  options.register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host}:${options.port}`,
      options.credentials ?? grpc.ServerCredentials.createInsecure(),
      (err, bound) => (err ? reject(err) : resolve(bound)),
    ),
  );
  const setServing = (serving: boolean) => names.forEach((n) => health.setStatus(n, serving ? 'SERVING' : 'NOT_SERVING'));
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs: number) =>
    (stopping ??= new Promise<void>((resolve) => {
      setServing(false);
      const force = setTimeout(() => {
        options.logger.warn('grace period over: cancelling the calls still running', { grace_ms: graceMs });
        server.forceShutdown();
      }, graceMs);
      force.unref();
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    }));
  return { server, port, health, setServing, shutdown };
}
