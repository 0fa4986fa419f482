// Collects the paths of one write burst per container: flushes after `quietMs` without a new event, or at the
// latest `maxMs` after the first event of the burst. Memory is bounded: past `maxPaths` distinct paths the burst
// collapses into a full reconcile of the container, which needs no path list.
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
  #quietTimer: unknown = null;
  #maxTimer: unknown = null;
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

  get pending(): boolean {
    return this.#firstEventAt !== null;
  }

  /** When the first change of the burst being collected was seen (ms since epoch); null when none was. */
  get firstChangeAt(): number | null {
    return this.#firstChangeAt;
  }

  /** Records an event for a path relative to the upper dir ('' is the root). */
  add(path: string): void {
    this.#noteEvent();
    this.#firstChangeAt ??= this.#timers.now();
    if (this.#reconcile) return;
    this.#paths.add(path);
    if (this.#paths.size > this.#maxPaths) {
      this.#paths = new Set();
      this.#reconcile = true;
    }
  }

  /** Asks for a full comparison of the upper dir with what was shipped (start-up, timer, overflow). `changeSeen`: a
   *  change is known to wait (a lost watch), not merely looked for. */
  addReconcile(changeSeen = false): void {
    this.#noteEvent();
    if (changeSeen) this.#firstChangeAt ??= this.#timers.now();
    this.#paths = new Set();
    this.#reconcile = true;
  }

  /** Flushes now if anything is pending. */
  flush(): void {
    if (this.#firstEventAt === null) return;
    const burst: Burst = { scope: this.#reconcile ? 'reconcile' : this.#paths, firstEventAt: this.#firstEventAt, firstChangeAt: this.#firstChangeAt };
    this.#clearTimers();
    this.#paths = new Set();
    this.#reconcile = false;
    this.#firstEventAt = null;
    this.#firstChangeAt = null;
    this.#onFlush(burst);
  }

  close(): void {
    this.#clearTimers();
    this.#paths = new Set();
    this.#reconcile = false;
    this.#firstEventAt = null;
    this.#firstChangeAt = null;
  }

  #noteEvent(): void {
    if (this.#firstEventAt === null) {
      this.#firstEventAt = this.#timers.now();
      this.#maxTimer = this.#timers.setTimeout(() => this.flush(), this.#maxMs);
    }
    if (this.#quietTimer !== null) this.#timers.clearTimeout(this.#quietTimer);
    this.#quietTimer = this.#timers.setTimeout(() => this.flush(), this.#quietMs);
  }

  #clearTimers(): void {
    if (this.#quietTimer !== null) this.#timers.clearTimeout(this.#quietTimer);
    if (this.#maxTimer !== null) this.#timers.clearTimeout(this.#maxTimer);
    this.#quietTimer = null;
    this.#maxTimer = null;
  }
}

/** Merges a burst into pending work that could not be shipped yet, keeping memory bounded. */
export function mergeScopes(a: BurstScope | null, b: BurstScope, maxPaths = 50_000): BurstScope {
  if (a === null) return b;
  if (a === 'reconcile' || b === 'reconcile') return 'reconcile';
  if (a.size + b.size > maxPaths) return 'reconcile';
  return new Set([...a, ...b]);
}
