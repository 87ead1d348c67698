import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** grpc.reflection.v1, from the proto @grpc/reflection ships: what grpcurl and similar tools speak. */
const REFLECTION_PROTO = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One reflection request on `port`, as a client tool sends it; resolves with the first response. */
export function reflect(port: number, request: Record<string, unknown>): Promise<ReflectionResponse> {
  const def = protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };
  const client = new pkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    ServerReflectionInfo(): grpc.ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
  };
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo();
    stream.once('data', (res: ReflectionResponse) => {
      stream.end();
      client.close();
      resolve(res);
    });
    stream.once('error', (err) => {
      client.close();
      reject(err);
    });
    stream.write(request);
  });
}

/** The services reflection lists on `port`, sorted. */
export const listedServices = async (port: number): Promise<string[]> =>
  ((await reflect(port, { list_services: '' })).list_services_response?.service ?? []).map((s) => s.name).sort();
