import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface RunningMetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `registry` at `GET /metrics` on its own HTTP port (0 picks a free one), followed by what
 * `more` gives (metrics kept on another thread).
 */
export async function startMetricsServer(registry: Registry, host: string, port: number, more?: () => Promise<string>): Promise<RunningMetricsServer> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    Promise.all([registry.metrics(), more?.() ?? '']).then(
      ([text, extra]) => res.writeHead(200, { 'content-type': registry.contentType }).end(text + extra),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
