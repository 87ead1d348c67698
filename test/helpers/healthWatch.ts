import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

const healthProto = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
  grpc: { health: { v1: { Health: typeof grpc.Client } } };
};

export interface HealthWatch {
  /** Each status received, with when it arrived (ms since the epoch). */
  statuses: { status: string; at: number }[];
  /** Resolves when the stream ends: with its status code and when. */
  ended: Promise<{ code: grpc.status; at: number }>;
  close(): void;
}

/** Opens grpc.health.v1.Health/Watch for `service` on a plaintext port and records what it streams. */
export function watchHealth(port: number, service = ''): HealthWatch {
  const client = new healthProto.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & {
    Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
  };
  const stream = client.Watch({ service });
  const statuses: HealthWatch['statuses'] = [];
  stream.on('data', (m: { status: string }) => statuses.push({ status: m.status, at: Date.now() }));
  const ended = new Promise<{ code: grpc.status; at: number }>((resolve) => {
    stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, at: Date.now() }));
    // A stream that fails emits `error` before `status`; the status carries the code.
    stream.on('error', () => {});
  });
  return { statuses, ended, close: () => client.close() };
}
