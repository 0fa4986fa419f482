// Bucket objects this host refused (unsigned, badly signed, replayed, not parsing): each logged once per key and
// reason, kept for status while it is still there (an accepted read of the same key clears it), in bounded memory.
import type { Logger } from '../log/logger.js';
import type { SignedKind } from './canonical.js';

export interface Refusal {
  key: string;
  /** What the object was read as; `generation` for a generation found in a listing with neither claim nor head. */
  kind: SignedKind | 'generation';
  reason: string;
  /** Reads refused since the first. */
  count: number;
  firstAt: string;
  lastAt: string;
}

export interface RefusalsView {
  /** Refusals since the start (every read counted). */
  total: number;
  /** What needs an operator now beyond single objects (many refused generations hiding the group's); null if none. */
  alert: string | null;
  /** The most recent refused keys, newest first. */
  recent: Refusal[];
}

/** Keys kept for status; older ones are forgotten (still counted in `total`). */
const MAX_KEPT = 100;

export class Refusals {
  readonly #log: Logger;
  readonly #byKey = new Map<string, Refusal>();
  #total = 0;
  #alert: string | null = null;

  constructor(log: Logger) {
    this.#log = log;
  }

  note(key: string, kind: Refusal['kind'], reason: string): void {
    this.#total++;
    const now = new Date().toISOString();
    const known = this.#byKey.get(key);
    if (known !== undefined && known.reason === reason) {
      known.count++;
      known.lastAt = now;
      // Most recent last in insertion order.
      this.#byKey.delete(key);
      this.#byKey.set(key, known);
      return;
    }
    this.#byKey.delete(key);
    this.#byKey.set(key, { key, kind, reason, count: 1, firstAt: now, lastAt: now });
    if (this.#byKey.size > MAX_KEPT) {
      const oldest = this.#byKey.keys().next();
      if (oldest.done !== true) this.#byKey.delete(oldest.value);
    }
    // JSON.stringify keeps control characters in a key from reaching the terminal raw.
    this.#log.error('bucket object refused: nothing is staged, booted or decided from it', { key: JSON.stringify(key), kind, reason });
  }

  /** Sets (logged once per text) or clears the alert. */
  alert(text: string | null): void {
    if (text !== null && text !== this.#alert) this.#log.error('bucket alert', { alert: text });
    this.#alert = text;
  }

  clear(key: string): void {
    if (this.#byKey.delete(key)) this.#log.info('bucket object accepted again', { key: JSON.stringify(key) });
  }

  view(): RefusalsView {
    return { total: this.#total, alert: this.#alert, recent: [...this.#byKey.values()].reverse().slice(0, 20).map((r) => ({ ...r })) };
  }
}
