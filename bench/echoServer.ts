import * as grpc from '@grpc/grpc-js';

/**
 * The transport limit: a bare grpc-js unary service that answers every request at once with a
 * fixed reply of a Classify response's size. Bytes pass through unparsed. Prints its port.
 */
const identity = (b: Buffer) => b;
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Echo: {
    path: '/bench.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'Echo',
  },
};

const REPLY = Buffer.alloc(Number(process.env.ECHO_REPLY_BYTES ?? 160), 1);

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, { Echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, REPLY) });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    console.log(JSON.stringify({ port }));
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}
