import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PrometheusOptions {
  /** Scrape targets on loopback: one job per entry. */
  targets: { job: string; port: number }[];
  /** Rules files to load (absolute paths). */
  ruleFiles: string[];
  /** Scrape and rule evaluation interval, seconds (default 1). */
  intervalS?: number;
}

export interface Sample {
  metric: Record<string, string>;
  value: number;
  /** Evaluation time, seconds since the epoch. */
  time: number;
}

export interface RunningPrometheus {
  url: string;
  /** An instant query; rejects on a PromQL error with Prometheus's message. */
  query(expr: string): Promise<Sample[]>;
  /** Kills the server and removes its storage. */
  stop(): Promise<void>;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/**
 * A real Prometheus server (Debian's `prometheus`, which .ci/run installs) on a free loopback
 * port, with its storage in a temporary folder, scraping the given targets and evaluating the
 * given rules. Resolves once it reports ready.
 */
export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  const interval = `${options.intervalS ?? 1}s`;
  const dir = await mkdtemp(join(tmpdir(), 'mrl-prometheus-'));
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: options.ruleFiles,
    scrape_configs: options.targets.map((t) => ({ job_name: t.job, static_configs: [{ targets: [`127.0.0.1:${t.port}`] }] })),
  };
  // JSON is YAML: no serializer needed.
  await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killed);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (spawnError) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot run prometheus (apt-get install prometheus, or run .ci/run): ${spawnError.message}`);
    }
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${child.exitCode}:\n${log}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready in 30 s:\n${log}`);
    }
    await sleep(100);
  }

  const query = async (expr: string): Promise<Sample[]> => {
    const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] | [number, string] };
    };
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
    const { resultType, result } = body.data!;
    if (resultType === 'scalar') {
      const [time, value] = result as [number, string];
      return [{ metric: {}, value: Number(value), time }];
    }
    return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({
      metric: r.metric,
      value: Number(r.value[1]),
      time: r.value[0],
    }));
  };

  return { url, query, stop };
}

/** Polls `check` until it returns a value (not undefined); fails after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
