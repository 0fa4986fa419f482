// Self-fencing of a primary: at least once per interval, and before a publish when the last check is older than
// that, it looks for a successor of its generation. Seeing one, it publishes nothing more and reports it once.
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import type { Bucket, Generation } from '../store/index.js';
import { successorOf, type Ownership } from './ownership.js';

export class FencedError extends TwinlayerError {
  constructor(generation: Generation, by: Ownership) {
    super('FENCED', `generation ${generation} is no longer the newest: host ${by.owner ?? '(unknown)'} owns generation ${by.generation}; publishing nothing more`, { generation, owner: by.owner ?? '' });
  }
}

export interface FenceOptions {
  bucket: Bucket;
  generation: Generation;
  intervalMs: number;
  log: Logger;
  /** Called once, when a successor is first seen. */
  onFenced: (by: Ownership) => void;
}

export class Fence {
  readonly #o: FenceOptions;
  /** When the last check that found no successor began, on the monotonic clock (performance.now()): a step of the
   *  wall clock must not make an older check count as one begun after a read. */
  #lastOkAt = Number.NEGATIVE_INFINITY;
  /** The same on the wall clock, which goes on while the host is suspended (or its VM paused), when the monotonic
   *  clock stops: a publish checks again when either clock says the interval passed. */
  #lastOkWallAt = Number.NEGATIVE_INFINITY;
  #fencedBy: Ownership | null = null;
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;
  #failedChecks = 0;
  #lastFailure: string | null = null;

  constructor(opts: FenceOptions) {
    this.#o = opts;
  }

  get fencedBy(): Ownership | null {
    return this.#fencedBy;
  }

  get generation(): Generation {
    return this.#o.generation;
  }

  /** When the last check that confirmed nobody took over began (performance.now() ms; 0 never). */
  get lastConfirmedAt(): number {
    return Math.max(0, this.#lastOkAt);
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => {
      this.check().then(() => this.#checkAnswered(), (err: unknown) => this.#checkFailed(err));
    }, this.#o.intervalMs);
  }

  // A bucket that stays down fails every interval's check: the first failure is a warning (and each different one),
  // the rest are counted and reported when the bucket answers again, so an outage reads as two lines, not one per
  // interval.
  #checkFailed(err: unknown): void {
    this.#failedChecks += 1;
    // A new kind of failure during the outage (a timeout turning into 403, say) is said too.
    // By kind (name and code), not message: the messages of one kind differ in details (attempts, addresses).
    const code = (err as { code?: unknown }).code;
    const why = err instanceof Error ? `${err.name} ${typeof code === 'string' ? code : ''}` : String(err);
    if (why === this.#lastFailure) return;
    this.#lastFailure = why;
    this.#o.log.warn('fence check failed; checking again every interval', { generation: this.#o.generation, intervalMs: this.#o.intervalMs, failedChecks: this.#failedChecks, err });
  }

  #checkAnswered(): void {
    if (this.#failedChecks === 0) return;
    this.#o.log.info('fence check answered again', { generation: this.#o.generation, failedChecks: this.#failedChecks });
    this.#failedChecks = 0;
    this.#lastFailure = null;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One look at the bucket (concurrent callers share it). Rejects when the bucket does not answer. */
  check(): Promise<void> {
    this.#checking ??= this.#checkOnce().finally(() => {
      this.#checking = null;
    });
    return this.#checking;
  }

  async #checkOnce(): Promise<void> {
    if (this.#fencedBy !== null) return;
    const startedAt = performance.now();
    const startedWallAt = Date.now();
    const successor = await successorOf(this.#o.bucket, this.#o.generation);
    if (successor === null) {
      this.#lastOkAt = Math.max(this.#lastOkAt, startedAt);
      // Not max: after a step back of the wall clock, the interval counts from this check.
      this.#lastOkWallAt = startedWallAt;
      return;
    }
    this.#fencedBy = successor;
    this.stop();
    this.#o.log.error('fenced: a newer generation exists; this host stops publishing and demotes', { generation: this.#o.generation, newer: successor.generation, owner: successor.owner });
    this.#o.onFenced(successor);
  }

  /** Fenced → FencedError, unless a check begun at or after `since` (performance.now() ms) found no successor; one is made when
   *  none was. For a write that replaces what another generation's writer may have written (spec.json): the check
   *  must follow the read its put is conditional on. */
  async assertOwnerSince(since: number): Promise<void> {
    // The first check may be one in flight that began before `since`; the second then begins after it.
    for (let i = 0; i < 2 && this.#fencedBy === null && this.#lastOkAt < since; i++) await this.check();
    if (this.#fencedBy !== null) throw new FencedError(this.#o.generation, this.#fencedBy);
    if (this.#lastOkAt < since) throw new TwinlayerError('FENCE_UNCONFIRMED', `generation ${this.#o.generation}: no check of the bucket begun after ${new Date(performance.timeOrigin + since).toISOString()} answered`, { generation: this.#o.generation });
  }

  /** Before each publish: fenced → FencedError; a confirmation older than the interval → a fresh check first. */
  async assertOwner(): Promise<void> {
    const due = performance.now() - this.#lastOkAt >= this.#o.intervalMs || Date.now() - this.#lastOkWallAt >= this.#o.intervalMs;
    if (this.#fencedBy === null && due) await this.check();
    if (this.#fencedBy !== null) throw new FencedError(this.#o.generation, this.#fencedBy);
  }
}
