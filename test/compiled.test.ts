import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sliceTensor } from '../cli/clients.js';
import { loadTestSlice } from '../cli/testSlice.js';
import { killStarted, startMrl } from './helpers/mrlStart.js';
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
afterAll(async () => {
  killStarted();
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
    const mesh = await startMrl({ compiledApp: app });
    const { supervisor } = mesh;
    const bundle = await loadBundle();
    const tensor = sliceTensor(await loadTestSlice(bundle), 0, bundle);
    try {
      const answer = await mesh.answer({ tensor }, 30_000);
      expect(answer, `Classify to answer:\n${supervisor.output.join('\n')}`).toBeDefined();
      expect(bundle.labels).toContain(answer!.label);
      expect(bundle.nesting).toContain(answer!.dimension_used);

      expect((await commandLine(supervisor.pid)).join(' ')).not.toMatch(/tsx/);
      for (const name of ['encoder', 'cascade']) {
        const [pid] = mesh.pids(name);
        expect(pid, `${name} started:\n${supervisor.output.join('\n')}`).toBeGreaterThan(0);
        expect(await commandLine(pid!)).toEqual([process.execPath, join(app, 'dist', 'services', name, 'main.js')]);
      }
    } finally {
      await mesh.stop();
    }
    expect(await supervisor.exit, supervisor.output.join('\n')).toEqual({ code: 0, signal: null });
    expect(supervisor.output.filter((l) => /tsx|\.ts\b/.test(l)), 'no line names tsx or a .ts file').toEqual([]);
  }, 60_000);
});
