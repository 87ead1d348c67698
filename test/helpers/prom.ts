/** Fetches a Prometheus text exposition and returns `name{labels}` → value (comments skipped). */
export async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

/** after − before for one series (absent counts as 0). */
export const delta = (before: Map<string, number>, after: Map<string, number>, series: string): number =>
  (after.get(series) ?? 0) - (before.get(series) ?? 0);

/** A histogram's mean over what it observed between two scrapes, or null if it observed nothing. */
export function histogramMean(before: Map<string, number>, after: Map<string, number>, histogram: string): number | null {
  const count = delta(before, after, `${histogram}_count`);
  return count ? delta(before, after, `${histogram}_sum`) / count : null;
}
