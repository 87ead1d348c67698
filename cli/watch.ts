import { wilsonInterval } from '../matryoshka/binomial.js';
import { scrapeUrl } from './metrics.js';

/** What `mrl watch` shows: from one scrape, and the average dimension since the one before. */
export interface WatchView {
  /** Average dimension used since the previous scrape (since the cascade started, on the first). */
  avgDimension: number | null;
  /** Shadow samples since the cascade started: overall and per answering stage, with a 90% Wilson interval. */
  shadow: { dimension: string; samples: number; disagreement: number; low: number; high: number }[];
  certificate?: { risk: string; epsilon: number; delta: number };
}

const SHADOW = /^mrl_cascade_shadow_total\{dimension="(\d+)",agreed="(true|false)"\}$/;
const EPSILON = /^mrl_cascade_certificate_epsilon\{risk="([^"]+)"\}$/;

/** The view of `now`, with `before` the previous scrape (or none). */
export function watchView(now: Map<string, number>, before?: Map<string, number>): WatchView {
  const d = (name: string) => (now.get(name) ?? 0) - (before?.get(name) ?? 0);
  const count = d('mrl_cascade_dimension_used_count');
  const per = new Map<string, { samples: number; disagreements: number }>();
  let certificate: WatchView['certificate'];
  for (const [series, value] of now) {
    const m = SHADOW.exec(series);
    if (m) {
      const s = per.get(m[1]!) ?? { samples: 0, disagreements: 0 };
      s.samples += value;
      if (m[2] === 'false') s.disagreements += value;
      per.set(m[1]!, s);
    }
    const e = EPSILON.exec(series);
    if (e) certificate = { risk: e[1]!, epsilon: value, delta: now.get(`mrl_cascade_certificate_delta{risk="${e[1]}"}`) ?? NaN };
  }
  const total = [...per.values()].reduce((a, s) => ({ samples: a.samples + s.samples, disagreements: a.disagreements + s.disagreements }), { samples: 0, disagreements: 0 });
  const row = (dimension: string, s: { samples: number; disagreements: number }) => {
    const ci = wilsonInterval(s.disagreements, s.samples);
    return { dimension, samples: s.samples, disagreement: s.samples ? s.disagreements / s.samples : 0, low: ci.low, high: ci.high };
  };
  return {
    avgDimension: count > 0 ? d('mrl_cascade_dimension_used_sum') / count : null,
    shadow: [
      row('all', total),
      ...[...per.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).filter(([, s]) => s.samples > 0).map(([m, s]) => row(m, s)),
    ],
    certificate,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function formatWatchView(v: WatchView, url: string): string {
  const cert = v.certificate;
  return [
    `${new Date().toISOString()}  ${url}`,
    `average dimension used: ${v.avgDimension === null ? '— (no answers)' : v.avgDimension.toFixed(2)}`,
    cert ? `certificate: ${cert.risk} <= ${pct(cert.epsilon)} with probability >= ${1 - cert.delta}` : 'certificate: none (the served thresholds are uncertified)',
    'shadow disagreement with the full size (90% interval), since the cascade started:',
    ...v.shadow.map(
      (s) =>
        `  ${s.dimension === 'all' ? 'overall' : `${s.dimension}-d`.padStart(7)}  ${pct(s.disagreement).padStart(7)}  [${pct(s.low)}, ${pct(s.high)}]  of ${s.samples}` +
        // ε bounds the overall disagreement; one stage's own share may exceed it.
        (cert && s.dimension === 'all' && s.low > cert.epsilon ? '  ABOVE the certified bound' : ''),
    ),
  ].join('\n');
}

/** `mrl watch`: prints the view every `intervalS` seconds (once with `once`). */
export async function watchCommand(options: { url: string; intervalS: number; once: boolean; json: boolean }): Promise<number> {
  let before: Map<string, number> | undefined;
  for (;;) {
    const now = await scrapeUrl(options.url);
    const view = watchView(now, before);
    console.log(options.json ? JSON.stringify(view) : formatWatchView(view, options.url) + '\n');
    if (options.once) return 0;
    before = now;
    await new Promise((r) => setTimeout(r, options.intervalS * 1000));
  }
}
