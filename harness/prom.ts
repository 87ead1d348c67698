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

/** How many calls `mrl_<service>_requests_total` counted between two scrapes, by gRPC code (codes that grew only). */
export function codeDeltas(before: Map<string, number>, after: Map<string, number>, service: 'cascade' | 'encoder'): Record<string, number> {
  const counted: Record<string, number> = {};
  for (const series of after.keys()) {
    const code = new RegExp(`^mrl_${service}_requests_total\\{code="([A-Z_]+)"\\}$`).exec(series)?.[1];
    const n = code ? delta(before, after, series) : 0;
    if (n > 0) counted[code!] = n;
  }
  return counted;
}
