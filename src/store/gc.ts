// Garbage collection of a group's bucket (issue 12): collect (gc-collect.ts), plan (gc-plan.ts), then delete in an
// order that leaves the bucket consistent whenever it stops: the records, tails and old generations' objects first,
// then the blobs and packs nothing retained names. Before the second phase the journal is listed again: a commit
// published since the plan may name a blob or pack the plan found unreferenced (the same bytes committed again), and
// that one stays. Runs on the primary every gcIntervalMs (GcLoop) and as `twinlayer gc`.
import { defaultLimits, type Limits } from '../changeset/index.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import type { Bucket } from './bucket.js';
import { BucketObjectInvalidError } from './errors.js';
import { collectGc, GcCache, readPacks } from './gc-collect.js';
import type { Digest } from './types.js';
import { gcKinds, planGc, type GcDeletion, type GcKind, type GcPlan } from './gc-plan.js';

export interface GcOptions {
  /** Commits kept for restore, ms. */
  retentionMs: number;
  /** Unreferenced blobs and packs younger than this (by the store's LastModified) stay: a commit in flight. */
  graceMs: number;
  dryRun?: boolean;
  /** The clock; default Date.now. */
  now?: () => number;
  cache?: GcCache;
  log?: Logger;
  metrics?: Metrics | undefined;
  limits?: Limits;
  /** Called between the two phases (tests: a writer acts there). */
  betweenPhases?: () => Promise<void>;
  /** Told the blobs and packs about to be deleted, before the last check for commits that name them: the pusher
   *  forgets those packs and waits for the commits it is shipping now (they may name them). */
  beforeSecondPhase?: (deletions: readonly GcDeletion[]) => Promise<void>;
}

export interface GcReport {
  dryRun: boolean;
  /** ISO times. */
  now: string;
  horizon: string;
  retainedRecords: number;
  /** What was (or, dry, would be) deleted, by kind. */
  deleted: GcPlan['totals'];
  /** Blobs and packs the plan found unreferenced that a commit published meanwhile names: left. */
  spared: number;
  problems: string[];
}

export const defaultRetentionMs = 24 * 3600_000;
export const defaultGraceMs = 3600_000;

function checkMs(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`Expected \`${name}\` to be a non-negative integer of ms, got ${String(v)}`);
}

export async function runGc(bucket: Bucket, opts: GcOptions): Promise<GcReport> {
  checkMs('retentionMs', opts.retentionMs);
  checkMs('graceMs', opts.graceMs);
  const now = (opts.now ?? Date.now)();
  const log = opts.log ?? silentLogger;
  const limits = opts.limits ?? defaultLimits;
  const cache = opts.cache ?? new GcCache();
  const input = await collectGc(bucket, { now, retentionMs: opts.retentionMs, graceMs: opts.graceMs, cache, limits });
  const plan = planGc(input);
  const report: GcReport = {
    dryRun: opts.dryRun === true,
    now: new Date(now).toISOString(),
    horizon: new Date(plan.horizon).toISOString(),
    retainedRecords: plan.retainedRecords,
    deleted: plan.totals,
    spared: 0,
    problems: plan.problems,
  };
  if (opts.dryRun === true) return report;
  try {
    await deleteAll(bucket, plan.first);
    await opts.betweenPhases?.();
    // Doomed from here: a writer of this process that puts one of these keys again rescues it (delete-gate.ts).
    const doom = bucket.gate.doom(plan.second.map((d) => d.key));
    try {
      await opts.beforeSecondPhase?.(plan.second);
      const late = await namedSince(bucket, new Set(input.objects.map((o) => o.key)), limits);
      const rewritten = await youngNow(bucket, now - opts.graceMs);
      const spare = (d: GcDeletion): boolean => late.keys.has(d.key) || rewritten.has(d.key) || (late.allPacks && d.kind === 'pack');
      const candidates = new Map(plan.second.filter((d) => !spare(d)).map((d) => [d.key, d]));
      const deleted = await doom.run(async (keys) => deleteAll(bucket, keys.filter((k) => candidates.has(k)).map((k) => candidates.get(k)!)));
      const second = deleted.flatMap((k) => candidates.get(k) ?? []);
      report.spared = plan.second.length - second.length;
      report.deleted = totalsOf([...plan.first, ...second]);
    } finally {
      doom.release();
    }
    opts.metrics?.gcRun('ok');
  } catch (err) {
    opts.metrics?.gcRun('failed');
    throw err;
  }
  for (const kind of gcKinds) {
    const t = report.deleted[kind];
    if (t.objects > 0) opts.metrics?.gcDeleted(metricKind(kind), t.objects, t.bytes);
  }
  log.info('bucket garbage collected', { horizon: report.horizon, retained: report.retainedRecords, deleted: report.deleted, spared: report.spared, problems: report.problems.length });
  for (const p of report.problems.slice(0, 20)) log.warn('gc: left for an operator', { problem: p });
  return report;
}

function metricKind(kind: GcKind): 'record' | 'blob' | 'chunk' | 'generation' | 'divergent' {
  return kind === 'pack' ? 'chunk' : kind;
}

function totalsOf(deletions: readonly GcDeletion[]): GcPlan['totals'] {
  const t = Object.fromEntries(gcKinds.map((k) => [k, { objects: 0, bytes: 0 }])) as GcPlan['totals'];
  for (const d of deletions) {
    t[d.kind].objects++;
    t[d.kind].bytes += d.bytes;
  }
  return t;
}

async function deleteAll(bucket: Bucket, deletions: readonly GcDeletion[]): Promise<void> {
  if (deletions.length > 0) await bucket.store.deleteMany(deletions.map((d) => d.key));
}

/**
 * The blob and pack keys that records written since the listing `before` name (allPacks when a new record's chunk
 * list cannot be read: then no pack may go). Records are listed again, only those not listed before are read.
 */
async function namedSince(bucket: Bucket, before: ReadonlySet<string>, limits: Limits): Promise<{ keys: Set<string>; allPacks: boolean }> {
  const { layout } = bucket;
  const named = new Set<string>();
  let allPacks = false;
  for await (const key of bucket.store.list(layout.generationsPrefix)) {
    if (before.has(key)) continue;
    const g = layout.parseGenerationKey(key);
    const s = g === null ? null : layout.parseJournalKey(g, key);
    if (g === null || s === null) continue;
    let rec;
    try {
      rec = await bucket.readRecord(g, s);
    } catch (err) {
      if (err instanceof BucketObjectInvalidError) continue; // refused: names nothing a standby would use
      throw err;
    }
    if (rec === null) continue;
    named.add(layout.blobKey(rec.digest));
    if (rec.chunks === undefined) continue;
    named.add(layout.blobKey(rec.chunks.digest));
    const packs = await readPacks(bucket, rec.chunks.digest, rec.chunks, limits);
    if (packs === null) allPacks = true;
    else for (const p of packs) named.add(layout.packKey(p as Digest));
  }
  return { keys: named, allPacks };
}

/** Blob and pack keys written within the grace period by now (a writer put the same bytes again since the listing). */
async function youngNow(bucket: Bucket, graceEdge: number): Promise<Set<string>> {
  const young = new Set<string>();
  for (const prefix of [bucket.layout.blobsPrefix, bucket.layout.packsPrefix]) {
    for await (const o of bucket.store.listObjects(prefix)) if (o.lastModified > graceEdge) young.add(o.key);
  }
  return young;
}

/** GC every `intervalMs` on the primary, one run at a time; stop() waits for the run in flight. */
export class GcLoop {
  readonly #bucket: Bucket;
  readonly #opts: GcOptions & { intervalMs: number };
  readonly #cache = new GcCache();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  lastReport: GcReport | null = null;

  constructor(bucket: Bucket, opts: GcOptions & { intervalMs: number }) {
    checkMs('intervalMs', opts.intervalMs);
    this.#bucket = bucket;
    this.#opts = opts;
  }

  start(): void {
    if (this.#opts.intervalMs === 0 || this.#stopped || this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#run().finally(() => {
        this.#running = null;
        this.start();
      });
    }, this.#opts.intervalMs);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    try {
      this.lastReport = await runGc(this.#bucket, { ...this.#opts, cache: this.#cache });
    } catch (err) {
      const denied = err instanceof Error && /AccessDenied|HTTP 403/.test(err.message);
      (this.#opts.log ?? silentLogger).warn('bucket garbage collection failed; the next run tries again', {
        err,
        ...(denied ? { hint: 'these credentials may not delete: grant s3:DeleteObject (minio/policy-gc.json) or set gcIntervalMs=0 and use a lifecycle rule (README, Retention and GC)' } : {}),
      });
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
