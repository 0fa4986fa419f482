// Collects the paths of one write burst per container. A burst is a run of events less than `quietMs` apart. Its
// first event is flushed at once (leading edge: a small change is not held back by the debounce); everything after
// it in the same burst is flushed together once `quietMs` passed without a new event, or at the latest `maxMs`
// after the first of those (trailing edge). So a burst short of `maxMs` gives at most two flushes, the first one
// right away. Memory is bounded: past `maxPaths` distinct paths the pending set collapses into a full reconcile of
// the container, which needs no path list.
export type BurstScope = ReadonlySet<string> | 'reconcile';

export interface Burst {
  scope: BurstScope;
  /** When the first event of this burst arrived (ms since epoch). */
  firstEventAt: number;
  /** When the first change of this burst was seen (a path event or a lost watch); null for a scheduled reconcile
   *  alone, which may find nothing (the replication lag counts from here). */
  firstChangeAt?: number | null;
}

export interface BurstTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: BurstTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class BurstCollector {
  #paths = new Set<string>();
  #reconcile = false;
  #firstEventAt: number | null = null;
  #firstChangeAt: number | null = null;
  /** Runs while a burst lasts: an event (or a retry) came less than quietMs ago. */
  #quietTimer: unknown = null;
  #maxTimer: unknown = null;
  /** After close(): a ship still in flight may hand back torn paths; nothing starts a timer any more. */
  #closed = false;
  readonly #quietMs: number;
  readonly #maxMs: number;
  readonly #maxPaths: number;
  readonly #onFlush: (burst: Burst) => void;
  readonly #timers: BurstTimers;

  constructor(opts: { quietMs: number; maxMs: number; maxPaths?: number; onFlush: (burst: Burst) => void; timers?: BurstTimers }) {
    this.#quietMs = opts.quietMs;
    this.#maxMs = opts.maxMs;
    this.#maxPaths = opts.maxPaths ?? 50_000;
    this.#onFlush = opts.onFlush;
    this.#timers = opts.timers ?? realTimers;
  }

  /** When the first change of the burst being collected was seen (ms since epoch); null when none was. */
  get firstChangeAt(): number | null {
    return this.#firstChangeAt;
  }

  get pending(): boolean {
    return this.#firstEventAt !== null;
  }

  /** Records an event for a path relative to the upper dir ('' is the root); the first of a burst flushes now. */
  add(path: string): void {
    if (this.#closed) return;
    this.#firstChangeAt ??= this.#timers.now();
    const leads = this.#quietTimer === null;
    this.#note(path);
    this.#extendBurst();
    if (leads) this.flush();
  }

  /** Asks for a full comparison of the upper dir with what was shipped (start-up, timer, overflow): flushed at once
   *  unless a burst is under way, when it joins the burst's trailing flush. Not a write, it starts no burst: the
   *  first write after it still goes out at once. */
  addReconcile(changeSeen = false): void {
    if (this.#closed) return;
    if (changeSeen) this.#firstChangeAt ??= this.#timers.now();
    this.#note(null);
    if (this.#quietTimer === null) this.flush();
  }

  /** Paths to look at again (a file that changed while it was read): they join the trailing flush of the burst
   *  under way, or start a burst of their own that waits for quiet. Never a leading flush: a file still being
   *  written would be read again at once, and again, for as long as its writer goes on. */
  retry(paths: Iterable<string>): void {
    if (this.#closed) return;
    this.#firstChangeAt ??= this.#timers.now();
    for (const p of paths) this.#note(p);
    if (this.#firstEventAt !== null && this.#quietTimer === null) this.#extendBurst();
  }

  /** Flushes now if anything is pending (the burst, if one is under way, goes on). */
  flush(): void {
    if (this.#firstEventAt === null) return;
    const burst: Burst = { scope: this.#reconcile ? 'reconcile' : this.#paths, firstEventAt: this.#firstEventAt, firstChangeAt: this.#firstChangeAt };
    if (this.#maxTimer !== null) this.#timers.clearTimeout(this.#maxTimer);
    this.#maxTimer = null;
    this.#paths = new Set();
    this.#reconcile = false;
    this.#firstEventAt = null;
    this.#firstChangeAt = null;
    this.#onFlush(burst);
  }

  close(): void {
    this.#closed = true;
    if (this.#quietTimer !== null) this.#timers.clearTimeout(this.#quietTimer);
    if (this.#maxTimer !== null) this.#timers.clearTimeout(this.#maxTimer);
    this.#quietTimer = null;
    this.#maxTimer = null;
    this.#paths = new Set();
    this.#reconcile = false;
    this.#firstEventAt = null;
    this.#firstChangeAt = null;
  }

  /** Adds a path (null: a reconcile) to what is pending; the first one pending starts the maxMs clock. */
  #note(path: string | null): void {
    if (this.#firstEventAt === null) {
      this.#firstEventAt = this.#timers.now();
      this.#maxTimer = this.#timers.setTimeout(() => this.flush(), this.#maxMs);
    }
    if (path === null) {
      this.#paths = new Set();
      this.#reconcile = true;
      return;
    }
    if (this.#reconcile) return;
    this.#paths.add(path);
    if (this.#paths.size > this.#maxPaths) {
      this.#paths = new Set();
      this.#reconcile = true;
    }
  }

  #extendBurst(): void {
    if (this.#quietTimer !== null) this.#timers.clearTimeout(this.#quietTimer);
    this.#quietTimer = this.#timers.setTimeout(() => {
      this.#quietTimer = null;
      this.flush();
    }, this.#quietMs);
  }
}

/** Merges a burst into pending work that could not be shipped yet, keeping memory bounded. */
export function mergeScopes(a: BurstScope | null, b: BurstScope, maxPaths = 50_000): BurstScope {
  if (a === null) return b;
  if (a === 'reconcile' || b === 'reconcile') return 'reconcile';
  if (a.size + b.size > maxPaths) return 'reconcile';
  return new Set([...a, ...b]);
}
