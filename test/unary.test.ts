import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ECHO_SERVICE } from '../bench/echoServer.js';
import { silentLogger } from '../services/common/logger.js';
import type { StatusError } from '../services/common/statusError.js';
import { baseErrorMapper, unary } from '../services/common/unary.js';
import { waitFor } from '../harness/load.js';

/** A real grpc-js server on loopback whose one handler answers when the test says so. */
let server: grpc.Server;
let client: grpc.Client & { Echo: (req: Buffer, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall };
const signals: AbortSignal[] = [];
let release: (() => void) | undefined;
const observed: grpc.status[] = [];

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    Echo: unary<Buffer, Buffer>(
      async (req, signal) => {
        signals.push(signal);
        if (req.length > 0) await new Promise<void>((r) => (release = r));
        return req;
      },
      baseErrorMapper(silentLogger),
      (code) => observed.push(code),
    ),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const Echo = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
  client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as typeof client;
});
afterAll(() => {
  client.close();
  server.forceShutdown();
});

const call = (req: Buffer, deadlineMs = 5_000) => {
  let handle!: grpc.ClientUnaryCall;
  const ended = new Promise<grpc.status>((resolve) => {
    handle = client.Echo(req, { deadline: Date.now() + deadlineMs }, (err) => resolve(err?.code ?? grpc.status.OK));
  });
  return { handle, ended };
};

describe("unary handlers' call signal", () => {
  it('stays quiet for a call its handler answered (grpc-js still emits cancelled when the stream closes)', async () => {
    signals.length = 0;
    expect(await call(Buffer.alloc(0)).ended).toBe(grpc.status.OK);
    await new Promise((r) => setTimeout(r, 50)); // past the stream's close
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
  });

  it('aborts with CANCELLED when the client cancels before the answer, and the call counts as CANCELLED', async () => {
    signals.length = 0;
    observed.length = 0;
    const c = call(Buffer.from('wait'));
    await waitFor('the handler to start', () => signals.length === 1, 5_000);
    c.handle.cancel();
    expect(await c.ended).toBe(grpc.status.CANCELLED);
    await waitFor('the signal to abort', () => signals[0]!.aborted, 5_000);
    expect((signals[0]!.reason as StatusError).code).toBe(grpc.status.CANCELLED);
    release!();
    await waitFor('the handler to finish', () => observed.length === 1, 5_000);
    expect(observed).toEqual([grpc.status.CANCELLED]);
  });

  it('aborts with DEADLINE_EXCEEDED when the deadline passes first', async () => {
    signals.length = 0;
    const c = call(Buffer.from('wait'), 200);
    expect(await c.ended).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor('the signal to abort', () => signals[0]?.aborted === true, 5_000);
    expect((signals[0]!.reason as StatusError).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    release!();
  });
});
