import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { END, README, START, settingsTable, withSettingsTable } from '../cli/settingsDocs.js';
import { cascadeSettings } from '../services/cascade/settings.js';
import { encoderSettings } from '../services/encoder/settings.js';

describe("the README's settings table", () => {
  it('is what the settings tables generate (run `npm run docs:settings` to update it)', () => {
    const readme = readFileSync(README, 'utf8');
    expect(readme).toBe(withSettingsTable(readme));
  });

  it('lists every declared setting once per service reading it (once as "both" when they share its entry), and only those', () => {
    const rows = (service: string, table: typeof encoderSettings | typeof cascadeSettings) => Object.values(table).map((s) => `${s.name} ${service}`);
    const declared = [...rows('encoder', encoderSettings), ...rows('cascade', cascadeSettings)];
    const listed = [...settingsTable().matchAll(/^\| `(MRL_[A-Z_]+)` \| (both|cascade|encoder) \|/gm)].flatMap((m) =>
      m[2] === 'both' ? [`${m[1]} encoder`, `${m[1]} cascade`] : [`${m[1]} ${m[2]}`],
    );
    expect(listed.sort()).toEqual(declared.sort());
  });

  it('is replaced between the markers, and nothing else changes', () => {
    const doc = `before\n${START}\nstale\n${END}\nafter\n`;
    expect(withSettingsTable(doc)).toBe(`before\n${START}\n${settingsTable()}\n${END}\nafter\n`);
    expect(() => withSettingsTable('no markers')).toThrow(/needs <!-- settings: start -->/);
  });
});
