// A time bound on one request attempt whose timer goes when the attempt ends. AbortSignal.timeout's timer cannot be
// cleared: each of the standby's head polls (four a second) left one that woke the idle process two seconds later to
// abort a request long done. Measured on a 304 GET at the 250 ms poll, that wake-up cost about 200 µs of CPU a
// request (1.0-1.2 ms → 0.8-1.0 ms, ~0.08 % of a core); a hot loop never shows it.
/** Runs `attempt` with a signal that aborts after `ms` as AbortSignal.timeout(ms) would (a DOMException named
 *  TimeoutError, which the store's retry rules treat as a network failure); the timer is cleared once it settles. */
export async function withAttemptTimeout<T>(ms: number, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
  try {
    return await attempt(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
