import { fileURLToPath } from 'node:url';
import { readBundle, requireHeads } from '../matryoshka/bundle.js';
import { readSettings } from '../services/common/config.js';
import { createLogger } from '../services/common/logger.js';
import { modelDir } from '../services/common/settings.js';
import { moduleUrl, nodeArgs } from '../services/common/runtime.js';
import { prettyLogLine } from './prettyLog.js';
import { type Exit, supervise } from './supervisor.js';

/** Each service's entry: compiled, `node dist/services/<name>/main.js`; from source, main.ts through tsx. */
const SERVICES = {
  encoder: fileURLToPath(moduleUrl('../services/encoder/main', import.meta.url)),
  cascade: fileURLToPath(moduleUrl('../services/cascade/main', import.meta.url)),
};
type ServiceName = keyof typeof SERVICES;
const NAMES = Object.keys(SERVICES) as ServiceName[];

const COLOURS = { encoder: '\x1b[36m', cascade: '\x1b[35m', supervisor: '\x1b[33m' };

/**
 * `mrl start [encoder|cascade]`: runs the named services (none named: both, or the cascade alone
 * for an embeddings-only bundle) as processes, settings from the environment, each supervised
 * (`supervise`, default backoff): one that exits is restarted while the other keeps serving. A
 * bundle without heads is refused before anything runs. Their JSON logs and the supervisor's are
 * shown as prefixed readable lines, or as they are with `json`. Ctrl-C or SIGTERM stops them
 * gracefully (a second one kills them); resolves 0 when every service's last exit was a clean one
 * (code 0).
 */
export async function start(options: { services: string[]; json: boolean }): Promise<number> {
  const unknown = options.services.filter((s) => !NAMES.includes(s as ServiceName));
  if (unknown.length > 0)
    throw new Error(`start: unknown service ${unknown.map((s) => JSON.stringify(s)).join(', ')}; valid services: ${NAMES.join(', ')} (no name runs both)`);
  // Refused here rather than restarted in a loop: no restart gives a bundle heads or an encoder.
  const bundle = requireHeads(await readBundle(readSettings({ modelDir }, process.env).modelDir));
  if (bundle.input === undefined && options.services.includes('encoder'))
    throw new Error(`start: bundle ${bundle.dir} is embeddings-only (no encoder.onnx): there is no encoder to run; \`mrl start\` runs its cascade alone`);
  const runnable: ServiceName[] = bundle.input === undefined ? ['cascade'] : NAMES;
  const names = options.services.length > 0 ? NAMES.filter((n) => options.services.includes(n)) : runnable;
  const colour = process.stdout.isTTY;
  const printer = (source: ServiceName | 'supervisor') => {
    const prefix = colour ? `${COLOURS[source]}[${source}]\x1b[0m` : `[${source}]`;
    return (line: string) => console.log(options.json ? line : `${prefix} ${prettyLogLine(line)}`);
  };
  if (bundle.input === undefined) createLogger('supervisor', 'info', printer('supervisor')).info('embeddings-only bundle: running the cascade alone', { model: bundle.id });
  const supervisors = names.map((name) =>
    supervise({
      name,
      command: process.execPath,
      args: nodeArgs(SERVICES[name]),
      logger: createLogger(name, 'info', printer('supervisor')),
      output: printer(name),
    }),
  );
  const exits = await new Promise<Exit[]>((resolve) => {
    let signals = 0;
    const onSignal = () => {
      const all = Promise.all(supervisors.map((s) => s.stop(signals === 0 ? 'SIGTERM' : 'SIGKILL')));
      if (signals++ === 0) resolve(all);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return exits.every((e) => e.code === 0) ? 0 : 1;
}
