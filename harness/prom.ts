import { scrapeUrl } from '../cli/metrics.js';

/** Fetches a service's Prometheus exposition on loopback: `name{labels}` → value. */
export function scrape(port: number): Promise<Map<string, number>> {
  return scrapeUrl(`http://127.0.0.1:${port}/metrics`);
}

/** after − before for one series (absent counts as 0). */
export const delta = (before: Map<string, number>, after: Map<string, number>, series: string): number =>
  (after.get(series) ?? 0) - (before.get(series) ?? 0);

/** A histogram's mean over what it observed between two scrapes, or null if it observed nothing. */
export function histogramMean(before: Map<string, number>, after: Map<string, number>, histogram: string): number | null {
  const count = delta(before, after, `${histogram}_count`);
  return count ? delta(before, after, `${histogram}_sum`) / count : null;
}
