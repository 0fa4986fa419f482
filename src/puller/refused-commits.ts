// Commits the stager gave up on, by container and blob digest, so a bad blob costs a bounded number of downloads:
// refused for good (the changeset itself was refused: hostile, or beyond the limits), or failed after it was
// downloaded (its bytes do not match the record, or applying it failed) and tried again only after a backoff that
// doubles up to a cap. The daemon's polls wait the backoff out; an explicit poll (a finalize, an operator's) tries
// again at once. Bounded memory: beyond `maxRemembered` the oldest are forgotten.

/** The first wait after a failed download, doubled after each further failure up to `maxBackoffMs`. */
export const firstBackoffMs = 2_000;
export const maxBackoffMs = 60_000;
/** Commits remembered; the oldest are forgotten beyond this. */
export const maxRemembered = 1024;

export type Verdict =
  | { kind: 'refused'; reason: string }
  | { kind: 'backoff'; reason: string; failures: number; retryAt: number };

interface Entry {
  refused: boolean;
  reason: string;
  failures: number;
  retryAt: number;
}

function keyOf(name: string, digest: string): string {
  return `${name}\n${digest}`;
}

export class RefusedCommits {
  readonly #byKey = new Map<string, Entry>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The changeset of `digest` was refused for what it holds or declares: never fetched again for `name`. */
  refuse(name: string, digest: string, reason: string): void {
    this.#set(keyOf(name, digest), { refused: true, reason, failures: 0, retryAt: Number.POSITIVE_INFINITY });
  }

  /** A download of `digest` for `name` did not stage; returns when it may be fetched again (epoch ms). */
  failed(name: string, digest: string, reason: string): number {
    const key = keyOf(name, digest);
    const known = this.#byKey.get(key);
    if (known?.refused === true) return known.retryAt;
    const failures = (known?.failures ?? 0) + 1;
    const wait = Math.min(maxBackoffMs, firstBackoffMs * 2 ** Math.min(failures - 1, 30));
    const retryAt = this.#now() + wait;
    this.#set(key, { refused: false, reason, failures, retryAt });
    return retryAt;
  }

  /** Staged after all: forgotten. */
  staged(name: string, digest: string): void {
    this.#byKey.delete(keyOf(name, digest));
  }

  /** Why `digest` is not to be fetched for `name` now, or null. `retryNow` (an explicit poll) ignores a backoff,
   *  never a refusal. */
  verdict(name: string, digest: string, retryNow: boolean): Verdict | null {
    const e = this.#byKey.get(keyOf(name, digest));
    if (e === undefined) return null;
    if (e.refused) return { kind: 'refused', reason: e.reason };
    if (retryNow || this.#now() >= e.retryAt) return null;
    return { kind: 'backoff', reason: e.reason, failures: e.failures, retryAt: e.retryAt };
  }

  get size(): number {
    return this.#byKey.size;
  }

  #set(key: string, e: Entry): void {
    // Most recent last in insertion order: the first key is the one forgotten.
    this.#byKey.delete(key);
    this.#byKey.set(key, e);
    while (this.#byKey.size > maxRemembered) {
      const oldest = this.#byKey.keys().next();
      if (oldest.done === true) break;
      this.#byKey.delete(oldest.value);
    }
  }
}
