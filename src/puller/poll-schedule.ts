// When the daemon's next poll starts. The interval runs from one poll's start to the next: counted from a poll's end,
// a change that landed in the bucket right after a head read waited the rest of that poll (its journal reads and the
// keeper's checks, 15-25 ms on the bench) on top of a whole interval. A poll that took the interval or longer is
// followed at once, yet never without yielding (a timer of 0 ms): a standby whose bucket answers slowly polls no more
// often than it answers.

/** Milliseconds to wait before the next poll, given the interval and how long the poll just done took. */
export function pollDelayMs(intervalMs: number, pollTookMs: number): number {
  if (!Number.isFinite(pollTookMs) || pollTookMs < 0) return intervalMs;
  return Math.max(0, intervalMs - pollTookMs);
}
