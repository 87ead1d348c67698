import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { classify, sliceTensor } from '../cli/clients.js';
import { type Exit, supervise } from '../cli/supervisor.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { killStarted, startMrl } from './helpers/mrlStart.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { createLogger } from '../services/common/logger.js';
import { closedLoop, late, percentile, tally, waitFor } from '../harness/load.js';
import { MRL } from './helpers/mrl.js';

const run = promisify(execFile);


const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterAll(killStarted);

describe('mrl start', () => {
  it('restarts a killed encoder while the cascade keeps running, and stops both on SIGINT', async () => {
    // Default settings: the breaker opens while the encoder is down and probes it every 5 s.
    const mesh = await startMrl();
    const { supervisor, client } = mesh;
    const lines = supervisor.output;
    const bundle = await loadBundle();
    const tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
    /** When Classify answered OK, trying for at most `withinMs`, or undefined. */
    const answers = async (withinMs: number) => ((await mesh.answer({ tensor }, withinMs)) ? Date.now() : undefined);
    try {
      expect(await answers(60_000), `the mesh to answer:\n${lines.join('\n')}`).toBeDefined();
      const [encoderPid] = mesh.pids('encoder');
      const [cascadePid] = mesh.pids('cascade');
      expect(encoderPid).toBeDefined();
      expect(cascadePid).toBeDefined();

      // Under load: 16 callers, one call each at a time with a 1 s deadline, through the kill.
      const load = closedLoop({ call: (d) => classify(client, { tensor }, d.getTime() - Date.now()), concurrency: 16, deadlineMs: 1000, pauseMs: 5, maxCalls: 1_000_000 });
      await new Promise((r) => setTimeout(r, 500));
      process.kill(encoderPid!, 'SIGKILL');
      const killedAt = Date.now();
      const answeredAt = await answers(10_000);
      await new Promise((r) => setTimeout(r, 500));
      const outcomes = await load.stop();
      console.log(
        'mrl start: Classify answered again',
        answeredAt === undefined ? 'never' : `${answeredAt - killedAt} ms after the encoder was killed;`,
        'under load:',
        JSON.stringify(tally(outcomes)),
      );
      expect(answeredAt, `Classify to answer within 10 s of the kill:\n${lines.join('\n')}`).toBeDefined();
      // Every call ended by its deadline, answered, refused as unavailable, or timed out; while the
      // encoder was down, refusals came fast.
      expect(outcomes.filter((o) => ![status.OK, status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(o.code))).toEqual([]);
      expect(late(outcomes, 500)).toEqual([]);
      const unavailable = outcomes.filter((o) => o.code === status.UNAVAILABLE);
      expect(unavailable.length).toBeGreaterThan(0);
      expect(percentile(unavailable.map((o) => o.endedAt - o.startedAt), 50)).toBeLessThan(500);

      // The supervisor logged the restart with its count, and started a second encoder.
      const restart = lines.find((l) => /^\[supervisor\] .* encoder exited; restarting /.test(l));
      expect(restart).toMatch(new RegExp(`pid=${encoderPid} signal=SIGKILL .*restarts=1 backoff_ms=250`));
      await waitFor('the new encoder to be logged', () => mesh.pids('encoder').length === 2, 5000);
      // The cascade ran throughout: started once, never exited.
      expect(mesh.pids('cascade')).toEqual([cascadePid]);
      expect(lines.filter((l) => /^\[supervisor\] .* cascade (exited|stopped)/.test(l))).toEqual([]);
      expect(alive(cascadePid!)).toBe(true);
    } finally {
      await mesh.stop();
    }
    expect(await supervisor.exit, lines.join('\n')).toEqual({ code: 0, signal: null });
    for (const name of ['encoder', 'cascade']) expect(lines.some((l) => new RegExp(`^\\[supervisor\\] .* ${name} stopped .*exit_code=0`).test(l))).toBe(true);
    for (const pid of [...mesh.pids('encoder'), ...mesh.pids('cascade')]) expect(alive(pid), `pid ${pid} gone`).toBe(false);
    expect(lines.filter((l) => /restarting/.test(l))).toHaveLength(1);
  }, 120_000);

  it('refuses an unknown service, naming the valid ones', async () => {
    const refused = run(process.execPath, [...MRL, 'start', 'bogus']);
    await expect(refused).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/unknown service "bogus"; valid services: encoder, cascade/) });
  });
});

/** Supervises `args` (run by node) with a fast backoff; collects the supervisor's log lines. */
function superviseNode(args: string[], backoff: { initialMs: number; maxMs: number; resetAfterMs: number }) {
  const log: Record<string, unknown>[] = [];
  const output: string[] = [];
  const supervisor = supervise({
    name: 'quitter',
    command: process.execPath,
    args,
    backoff: { ...backoff, factor: 2 },
    logger: createLogger('quitter', 'info', (line) => log.push(JSON.parse(line) as Record<string, unknown>)),
    output: (line) => output.push(line),
  });
  const restarts = () => log.filter((l) => l.msg === 'quitter exited; restarting');
  const starts = () => log.filter((l) => l.msg === 'quitter started');
  return { supervisor, output, restarts, starts };
}

describe('supervise', () => {
  it('restarts a process that keeps exiting, the delay doubling up to its cap, and none after stop', async () => {
    const { supervisor, restarts, starts } = superviseNode(['-e', 'process.exit(3)'], { initialMs: 20, maxMs: 160, resetAfterMs: 60_000 });
    await waitFor('7 restarts', () => restarts().length >= 7, 30_000);
    expect(await supervisor.stop()).toEqual({ code: 3, signal: null });
    const seen = restarts().slice(0, 7);
    expect(seen.map((l) => l.restarts)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(seen.map((l) => l.backoff_ms)).toEqual([20, 40, 80, 160, 160, 160, 160]);
    expect(seen.every((l) => l.exit_code === 3 && l.service === 'quitter' && typeof l.pid === 'number')).toBe(true);
    // Each restart waited at least its delay (a lower bound only: the machine may be slow).
    for (const [i, l] of seen.entries()) {
      const next = starts()[i + 1];
      if (next) expect(Date.parse(next.time as string) - Date.parse(l.time as string)).toBeGreaterThanOrEqual((l.backoff_ms as number) - 5);
    }
    // Stopped: nothing more starts, even after longer than the longest delay.
    const count = starts().length;
    await new Promise((r) => setTimeout(r, 500));
    expect(starts()).toHaveLength(count);
  });

  it('resets the delay after a run that stayed up long enough', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mrl-supervisor-'));
    try {
      // Runs 0 to 2 and 4 on exit at once; run 3 stays up 2.5 s.
      const script =
        "const fs = require('node:fs'); const f = process.argv[1]; const n = fs.existsSync(f) ? Number(fs.readFileSync(f, 'utf8')) : 0;" +
        "fs.writeFileSync(f, String(n + 1)); setTimeout(() => process.exit(3), n === 3 ? 2500 : 0);";
      const { supervisor, restarts } = superviseNode(['-e', script, join(dir, 'runs')], { initialMs: 20, maxMs: 10_000, resetAfterMs: 2000 });
      await waitFor('6 restarts', () => restarts().length >= 6, 30_000);
      await supervisor.stop();
      const seen = restarts().slice(0, 6);
      expect(seen.map((l) => l.restarts)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(seen.map((l) => l.backoff_ms)).toEqual([20, 40, 80, 20, 40, 80]);
      expect(seen[3]!.uptime_ms).toBeGreaterThanOrEqual(2000);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('stops with SIGTERM, and a second stop with SIGKILL forces a child that ignores it', async () => {
    const script = "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 1000);";
    const { supervisor, output, restarts } = superviseNode(['-e', script], { initialMs: 20, maxMs: 160, resetAfterMs: 60_000 });
    await waitFor('the child to be ready', () => output.includes('ready'), 30_000);
    let exit: Exit | undefined;
    void supervisor.stop().then((e) => (exit = e));
    await waitFor('the child to get SIGTERM', () => output.includes('ignoring SIGTERM'), 30_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(exit).toBeUndefined();
    expect(await supervisor.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(restarts()).toEqual([]);
  });
});
