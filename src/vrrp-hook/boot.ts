// The once-only promotion: the first MASTER runs finalize then startTwins; every other MASTER (concurrent, later,
// or after BACKUP/FAULT in between) joins the same run and gets the same outcome. Twins are never started twice
// by one process, and a host whose puller already reports `master` is not booted again.
import type { Logger } from '../log/logger.js';
import type { ContainerStart, FinalizeReport, Promoter, StartReport } from './types.js';

export type BootOutcome = 'booted' | 'already-booted' | 'partial' | 'failed';
/** `finalizing`/`starting` while the run is in flight, then its outcome. */
export type BootPhase = 'idle' | 'finalizing' | 'starting' | BootOutcome;
export const bootPhases: readonly BootPhase[] = ['idle', 'finalizing', 'starting', 'booted', 'already-booted', 'partial', 'failed'];

export interface BootTotals { ms: number; started: number; failed: number }

export interface BootResult {
  /** About the twins: `booted` all started, `partial` some, `failed` none (or startTwins threw). */
  outcome: BootOutcome;
  finalize: FinalizeReport;
  start: StartReport;
  totals: BootTotals;
  /** Whole-step failures (finalize or startTwins threw); per-container errors stay in the reports. */
  errors: string[];
}

/** What a MASTER request is answered with: the outcome, or, past bootTimeoutMs, what is known so far. */
export interface MasterAnswer extends BootResult {
  phase: BootPhase;
  /** True when the answer was given before the boot finished; the boot goes on and GET /v1/status shows the end. */
  timedOut: boolean;
}

export interface BootSnapshot {
  phase: BootPhase;
  startedAt: string | null;
  finishedAt: string | null;
  result: BootResult | null;
}

/** How long the "already master?" question may delay a promotion before it is skipped. */
const ROLE_CHECK_MS = 250;

type Settled<T> = { done: true; value: T } | { done: false };

/** Waits for `p` at most `ms`; the timer is cleared either way so nothing outlives the answer. */
function within<T>(p: Promise<T>, ms: number): Promise<Settled<T>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve({ done: false }), Math.max(0, ms));
    p.then(
      (value) => { clearTimeout(timer); resolve({ done: true, value }); },
      (err: unknown) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(String(err))); },
    );
  });
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export interface BootOptions {
  promoter: Promoter;
  log: Logger;
  finalizeDeadlineMs: number;
  bootTimeoutMs: number;
}

export class Boot {
  readonly #promoter: Promoter;
  readonly #log: Logger;
  readonly #finalizeDeadlineMs: number;
  readonly #bootTimeoutMs: number;
  #run: Promise<BootResult> | undefined;
  #phase: BootPhase = 'idle';
  #t0 = 0;
  #startedAt: string | null = null;
  #finishedAt: string | null = null;
  #finalize: FinalizeReport | undefined;
  /** The twins' starts as they are done, and when starting began: an answer at the deadline reports them. */
  readonly #startedSoFar: ContainerStart[] = [];
  #startT0: number | null = null;
  #result: BootResult | null = null;

  constructor(opts: BootOptions) {
    this.#promoter = opts.promoter;
    this.#log = opts.log;
    this.#finalizeDeadlineMs = opts.finalizeDeadlineMs;
    this.#bootTimeoutMs = opts.bootTimeoutMs;
  }

  get phase(): BootPhase {
    return this.#phase;
  }

  snapshot(): BootSnapshot {
    return { phase: this.#phase, startedAt: this.#startedAt, finishedAt: this.#finishedAt, result: this.#result };
  }

  /** Handles one MASTER notification: starts the run if none has, then waits for it until the boot deadline. */
  async master(): Promise<MasterAnswer> {
    this.#run ??= this.#boot();
    if (this.#result !== null) return { ...this.#result, phase: this.#phase, timedOut: false };
    const remaining = this.#t0 + this.#bootTimeoutMs - performance.now();
    const settled = await within(this.#run, remaining);
    if (settled.done) return { ...settled.value, phase: this.#phase, timedOut: false };
    return { ...this.#soFar(), phase: this.#phase, timedOut: true };
  }

  #elapsed(): number {
    return Math.round(performance.now() - this.#t0);
  }

  /** What is known at the deadline: the finalize's report once it is done, and each twin started (or failed) so far;
   *  the rest are still starting. */
  #soFar(): BootResult {
    const ms = this.#elapsed();
    const containers = [...this.#startedSoFar];
    const started = containers.filter((c) => c.ok).length;
    return {
      outcome: 'partial',
      // Not known yet: the bucket's reachability is not claimed, the deadline is.
      finalize: this.#finalize ?? { ms, bucketReachable: false, timedOut: true, containers: [] },
      start: { ms: this.#startT0 === null ? 0 : Math.round(performance.now() - this.#startT0), containers },
      totals: { ms, started, failed: containers.length - started },
      errors: [],
    };
  }

  // Never rejects: every failure becomes part of the result so all waiters converge on one answer.
  async #boot(): Promise<BootResult> {
    this.#t0 = performance.now();
    this.#startedAt = new Date().toISOString();
    this.#phase = 'finalizing';
    this.#log.info('promotion started', { finalizeDeadlineMs: this.#finalizeDeadlineMs, bootTimeoutMs: this.#bootTimeoutMs });
    let result: BootResult;
    try {
      result = (await this.#alreadyMaster()) ?? (await this.#promote());
    } catch (err) {
      const ms = this.#elapsed();
      result = {
        outcome: 'failed',
        finalize: this.#finalize ?? { ms, bucketReachable: false, timedOut: false, containers: [] },
        start: { ms: 0, containers: [] },
        totals: { ms, started: 0, failed: 0 },
        errors: [message(err)],
      };
    }
    this.#result = result;
    this.#phase = result.outcome;
    this.#finishedAt = new Date().toISOString();
    const fields = {
      outcome: result.outcome,
      ms: result.totals.ms,
      started: result.totals.started,
      failed: result.totals.failed,
      bucketReachable: result.finalize.bucketReachable,
      finalizeTimedOut: result.finalize.timedOut,
      errors: result.errors,
      failedContainers: result.start.containers.filter((c) => !c.ok).map((c) => ({ name: c.name, error: c.error })),
    };
    if (result.outcome === 'failed') this.#log.error('promotion finished', fields);
    else if (result.outcome === 'partial' || result.errors.length > 0 || !result.finalize.bucketReachable) this.#log.warn('promotion finished', fields);
    else this.#log.info('promotion finished', fields);
    return result;
  }

  /** A restarted `twinlayer pull` on a host that already promoted must not start its twins again. */
  async #alreadyMaster(): Promise<BootResult | undefined> {
    let settled: Settled<Awaited<ReturnType<Promoter['status']>>>;
    try {
      settled = await within(this.#promoter.status(), Math.min(ROLE_CHECK_MS, this.#finalizeDeadlineMs));
    } catch (err) {
      this.#log.warn('role check failed; promoting', { error: message(err) });
      return undefined;
    }
    if (!settled.done || settled.value.role !== 'master') return undefined;
    const ms = this.#elapsed();
    return {
      outcome: 'already-booted',
      finalize: { ms: 0, bucketReachable: true, timedOut: false, containers: [] },
      start: { ms: 0, containers: [] },
      totals: { ms, started: 0, failed: 0 },
      errors: [],
    };
  }

  async #promote(): Promise<BootResult> {
    const errors: string[] = [];
    let finalize: FinalizeReport;
    const f0 = performance.now();
    try {
      finalize = await this.#promoter.finalize(this.#finalizeDeadlineMs);
    } catch (err) {
      // Staging is whole-commit atomic, so what is staged is consistent: start with it rather than stay down.
      errors.push(`finalize: ${message(err)}`);
      finalize = { ms: Math.round(performance.now() - f0), bucketReachable: false, timedOut: false, containers: [] };
    }
    this.#finalize = finalize;
    this.#phase = 'starting';
    let start: StartReport;
    let startThrew = false;
    const s0 = performance.now();
    this.#startT0 = s0;
    try {
      start = await this.#promoter.startTwins((r) => this.#startedSoFar.push(r));
    } catch (err) {
      errors.push(`startTwins: ${message(err)}`);
      start = { ms: Math.round(performance.now() - s0), containers: [] };
      startThrew = true;
    }
    const started = start.containers.filter((c) => c.ok).length;
    const failed = start.containers.length - started;
    const outcome: BootOutcome = startThrew || (failed > 0 && started === 0) ? 'failed' : failed > 0 ? 'partial' : 'booted';
    return { outcome, finalize, start, totals: { ms: this.#elapsed(), started, failed }, errors };
  }
}
