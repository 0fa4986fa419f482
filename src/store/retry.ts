// Backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") around one attempt function.
import { setTimeout as sleep } from 'node:timers/promises';

import type { RetryPolicy } from './blob-store.js';

/** The wait before retry number `retry` (0-based): uniform in [0, min(maxMs, baseMs * 2^retry)]. */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(retry, 30));
  return Math.floor(random() * cap);
}

export function checkRetryPolicy(policy: RetryPolicy): RetryPolicy {
  const { attempts, baseMs, maxMs } = policy;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) throw new TypeError(`Expected \`retry.attempts\` to be an integer from 1 to 100, got ${String(attempts)}`);
  if (!Number.isFinite(baseMs) || baseMs < 0) throw new TypeError(`Expected \`retry.baseMs\` to be a non-negative number, got ${String(baseMs)}`);
  if (!Number.isFinite(maxMs) || maxMs < baseMs) throw new TypeError(`Expected \`retry.maxMs\` to be a number >= baseMs, got ${String(maxMs)}`);
  return { attempts, baseMs, maxMs };
}

/**
 * Runs `attempt` until it succeeds, `isRetryable` says no, or the attempts are spent; then throws the last error.
 * `onRetry` sees each error that will be retried (for a debug log), with the wait before the next try; `signal` ends
 * a wait between tries.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  isRetryable: (err: unknown) => boolean,
  onRetry?: (err: unknown, n: number, delayMs: number) => void,
  signal?: AbortSignal,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= policy.attempts || !isRetryable(err)) throw err;
      const delay = backoffDelay(policy, n - 1);
      onRetry?.(err, n, delay);
      // An abort ends the wait at once (with an AbortError; the caller names the signal's reason).
      await sleep(delay, undefined, signal === undefined ? undefined : { signal });
    }
  }
}
