import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cascadeSettings } from '../services/cascade/settings.js';
import type { Setting, SettingsTable } from '../services/common/config.js';
import { encoderSettings } from '../services/encoder/settings.js';
import { PACKAGE_ROOT } from '../services/common/runtime.js';

/** The README's settings table sits between these markers (`npm run docs:settings` rewrites it). */
export const START = '<!-- settings: start -->';
export const END = '<!-- settings: end -->';
/** The README the table is written into. */
export const README = join(PACKAGE_ROOT, 'README.md');

const SERVICES: Record<string, SettingsTable> = { cascade: cascadeSettings, encoder: encoderSettings };

const cell = (s: string) => s.replace(/\|/g, '\\|');

/**
 * Every setting once, with the services that read it: shared ones ("both") first, then each
 * service's in table order. A variable both read with defaults of their own (one factory, two
 * calls) gets a row per service.
 */
function rows(): { setting: Setting; services: string[] }[] {
  const byName = new Map<string, { setting: Setting; services: string[] }>();
  for (const [service, table] of Object.entries(SERVICES))
    for (const setting of Object.values(table)) {
      const row = byName.get(setting.name);
      if (!row) byName.set(setting.name, { setting, services: [service] });
      else if (row.setting === setting) row.services.push(service);
      // Two declarations of one variable must at least parse it alike.
      else if (row.setting.type !== setting.type && row.setting.type.describe !== setting.type.describe)
        throw new Error(`${setting.name} is declared twice with different values: share one entry`);
      else byName.set(`${setting.name} ${service}`, { setting, services: [service] });
    }
  const all = [...byName.values()];
  return [...all.filter((r) => r.services.length > 1), ...all.filter((r) => r.services.length === 1)];
}

/** The settings table, as Markdown, from the services' setting tables. */
export function settingsTable(): string {
  const lines = ['| variable | service | value | default | meaning |', '| --- | --- | --- | --- | --- |'];
  for (const { setting: s, services } of rows()) {
    const value = s.unit ? `${s.type.describe}, ${s.unit}` : s.type.describe;
    const def = s.defaultDoc ?? (s.default !== undefined ? `\`${s.default}\`` : '(none)');
    const service = services.length === Object.keys(SERVICES).length ? 'both' : services.join(', ');
    lines.push(`| \`${s.name}\` | ${service} | ${cell(value)} | ${cell(def)} | ${cell(s.doc)} |`);
  }
  return lines.join('\n');
}

/** `readme` with the text between the markers replaced by the generated table. */
export function withSettingsTable(readme: string): string {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md needs ${START} and ${END} around the settings table`);
  return `${readme.slice(0, a + START.length)}\n${settingsTable()}\n${readme.slice(b)}`;
}

// Run as a script (`npm run docs:settings`): rewrite the README's table in place.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(README, withSettingsTable(readFileSync(README, 'utf8')));
}
