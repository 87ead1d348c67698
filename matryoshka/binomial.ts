/** P(X ≤ k) for X ~ Binomial(n, p), summed in log space so that large n does not underflow. */
export function binomialCdf(k: number, n: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n || p <= 0) return 1;
  if (p >= 1) return 0;
  let logTerm = n * Math.log1p(-p); // log P(X = 0)
  const logRatio = Math.log(p) - Math.log1p(-p);
  let max = logTerm;
  const logs = [logTerm];
  for (let i = 0; i < k; i++) {
    logTerm += Math.log(n - i) - Math.log(i + 1) + logRatio;
    logs.push(logTerm);
    if (logTerm > max) max = logTerm;
  }
  let sum = 0;
  for (const l of logs) sum += Math.exp(l - max);
  return Math.min(1, Math.exp(max) * sum);
}

/**
 * The exact (Clopper-Pearson) upper confidence bound at level 1 − δ for a binomial proportion
 * with k successes in n: the p at which P(X ≤ k) = δ, by bisection.
 */
export function binomialUpperBound(k: number, n: number, delta: number): number {
  if (k >= n) return 1;
  let lo = k / n;
  let hi = 1;
  for (let it = 0; it < 100; it++) {
    const mid = (lo + hi) / 2;
    if (binomialCdf(k, n, mid) > delta) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * The Wilson score interval for a proportion with k successes in n, at normal quantile z
 * (1.645: one-sided 95%): well-behaved for proportions near 0, unlike the normal approximation.
 */
export function wilsonInterval(k: number, n: number, z = 1.645): { low: number; high: number } {
  if (n === 0) return { low: 0, high: 1 };
  const p = k / n;
  const centre = p + (z * z) / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  const scale = 1 + (z * z) / n;
  return { low: Math.max(0, (centre - spread) / scale), high: Math.min(1, (centre + spread) / scale) };
}

/**
 * The most losses among n that still pass the test of "risk > ε" at level δ (P(X ≤ k) ≤ δ for
 * X ~ Binomial(n, ε)), or -1 when none do: how tight a bound a sample of n can certify.
 */
export function mostPassingLosses(n: number, epsilon: number, delta: number): number {
  let k = -1;
  while (k < n && binomialCdf(k + 1, n, epsilon) <= delta) k++;
  return k;
}
