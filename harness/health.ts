import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

const healthProto = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
  grpc: { health: { v1: { Health: typeof grpc.Client } } };
};

/** Asks grpc.health.v1.Health/Check for `service` at `host:port` (default host 127.0.0.1); resolves to the status name. */
export function healthCheck(port: number, service = '', credentials = grpc.credentials.createInsecure(), host = '127.0.0.1'): Promise<string> {
  const client = new healthProto.grpc.health.v1.Health(`${host}:${port}`, credentials) as grpc.Client & {
    Check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  };
  return new Promise((resolve, reject) =>
    client.Check({ service }, { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res!.status);
    }),
  );
}
