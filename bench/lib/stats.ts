// Order statistics of a sample: what the report prints for every point.

export interface Summary {
  n: number;
  median: number;
  p90: number;
  max: number;
  min: number;
  mean: number;
}

/** Nearest-rank percentile (p in 0..100) of an ascending array. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

const round = (x: number): number => Math.round(x * 10) / 10;

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return { n: 0, median: Number.NaN, p90: Number.NaN, max: Number.NaN, min: Number.NaN, mean: Number.NaN };
  const mid = Math.floor(n / 2);
  const median = n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const mean = sorted.reduce((a, b) => a + b, 0) / n;
  return { n, median: round(median), p90: round(percentile(sorted, 90)), max: round(sorted[n - 1]!), min: round(sorted[0]!), mean: round(mean) };
}

export function median(values: readonly number[]): number {
  return summarize(values).median;
}

/** a / b rounded to two decimals; NaN when b is not positive. */
export function ratio(a: number, b: number): number {
  return b > 0 && Number.isFinite(a) ? Math.round((a / b) * 100) / 100 : Number.NaN;
}
