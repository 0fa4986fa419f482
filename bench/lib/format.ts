// How the benchmark reports print a figure: one form for every table, and one mark for a figure the run has not.

/** A figure this run did not measure. */
export const NONE = '—';

const missing = (x: number | null | undefined): x is null | undefined => x === null || x === undefined || !Number.isFinite(x);

/** Milliseconds, rounded; from 10 s on, seconds with one decimal. */
export function formatMs(x: number | null | undefined): string {
  if (missing(x)) return NONE;
  return x >= 10_000 ? formatSeconds(x) : `${Math.round(x)} ms`;
}

/** Milliseconds as seconds with one decimal. */
export function formatSeconds(x: number | null | undefined): string {
  return missing(x) ? NONE : `${(x / 1000).toFixed(1)} s`;
}

/** A ratio to its floor or baseline, two decimals. */
export function formatRatio(x: number | null | undefined): string {
  return missing(x) ? NONE : `${x.toFixed(2)}×`;
}
