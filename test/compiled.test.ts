import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifierClient, classify, sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { loopbackStartEnv } from './helpers/ports.js';
import { loadBundle } from '../matryoshka/bundle.js';
import { ROOT } from './helpers/deploy.js';

const run = promisify(execFile);


/** A process's command line, from /proc. */
const commandLine = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);

/**
 * The compiled package laid out as the images hold it: `npm run build` into app/dist, package.json,
 * the bin, protos and models beside it, and node_modules without tsx (each other package linked
 * from the repository's), so nothing started from here can run TypeScript.
 */
let app: string;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mrl-compiled-'));
  app = join(dir, 'app');
  await run('npm', ['run', 'build', '--', '--outDir', join(app, 'dist')], { cwd: ROOT });
  await mkdir(join(app, 'bin'));
  await copyFile(join(ROOT, 'bin', 'mrl.js'), join(app, 'bin', 'mrl.js'));
  await copyFile(join(ROOT, 'package.json'), join(app, 'package.json'));
  for (const folder of ['protos', 'models']) await symlink(join(ROOT, folder), join(app, folder));
  await mkdir(join(app, 'node_modules'));
  for (const entry of await readdir(join(ROOT, 'node_modules')))
    if (entry !== 'tsx' && entry !== '.bin') await symlink(join(ROOT, 'node_modules', entry), join(app, 'node_modules', entry));
}, 60_000);
/** Every pid the test saw started, SIGKILLed afterwards in case it failed halfway. */
const started = new Set<number>();
afterAll(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(dir, { recursive: true, force: true });
});

describe('the compiled build (what npm start, the mrl bin and the images run)', () => {
  it('holds JavaScript only, and tsx cannot be found from it', async () => {
    const files = (await readdir(join(app, 'dist'), { recursive: true })) as string[];
    expect(files).toContain(join('services', 'encoder', 'inferenceWorker.js'));
    expect(files).toContain(join('services', 'cascade', 'main.js'));
    expect(files).toContain(join('cli', 'main.js'));
    expect(files.filter((f) => f.endsWith('.ts'))).toEqual([]);
    expect(() => createRequire(join(app, 'package.json')).resolve('tsx')).toThrow();
  });

  it('mrl --help lists the commands', async () => {
    const { stdout } = await run(process.execPath, [join(app, 'bin', 'mrl.js'), '--help'], { cwd: app });
    for (const c of ['start', 'classify', 'calibrate', 'eval', 'report']) expect(stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('mrl start runs dist/services/<name>/main.js without tsx, and Classify answers', async () => {
    const { env, ports } = await loopbackStartEnv({}, ['NODE_OPTIONS']);
    const supervisor: ChildProcess = spawn(process.execPath, [join(app, 'bin', 'mrl.js'), 'start'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(supervisor.pid!);
    const lines: string[] = [];
    for (const stream of [supervisor.stdout!, supervisor.stderr!]) createInterface({ input: stream }).on('line', (l) => lines.push(l));
    let exited = false;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      supervisor.on('exit', (code, signal) => ((exited = true), resolve({ code, signal }))),
    );
    const pid = (name: string) => Number(new RegExp(`^\\[supervisor\\] .* ${name} started pid=(\\d+)`).exec(lines.find((l) => l.includes(`${name} started`)) ?? '')?.[1]);

    const bundle = await loadBundle();
    const tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
    const client = classifierClient(`127.0.0.1:${ports.cascade}`);
    try {
      let answer: Awaited<ReturnType<typeof classify>> | undefined;
      const until = Date.now() + 30_000;
      while (!answer && Date.now() < until && !exited) {
        try {
          answer = await classify(client, { tensor }, 1000);
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code !== status.UNAVAILABLE && code !== status.DEADLINE_EXCEEDED) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(answer, `Classify to answer:\n${lines.join('\n')}`).toBeDefined();
      expect(bundle.labels).toContain(answer!.label);
      expect(bundle.nesting).toContain(answer!.dimension_used);

      expect((await commandLine(supervisor.pid!)).join(' ')).not.toMatch(/tsx/);
      for (const name of ['encoder', 'cascade']) {
        expect(pid(name), `${name} started:\n${lines.join('\n')}`).toBeGreaterThan(0);
        started.add(pid(name));
        expect(await commandLine(pid(name))).toEqual([process.execPath, join(app, 'dist', 'services', name, 'main.js')]);
      }
    } finally {
      client.close();
      supervisor.kill('SIGINT');
    }
    expect(await exit, lines.join('\n')).toEqual({ code: 0, signal: null });
    expect(lines.filter((l) => /tsx|\.ts\b/.test(l)), 'no line names tsx or a .ts file').toEqual([]);
  }, 60_000);
});
