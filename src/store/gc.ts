// Garbage collection of a group's bucket (issue 12): collect (gc-collect.ts), plan (gc-plan.ts), then delete in an
// order that leaves the bucket consistent whenever it stops: the records, tails and old generations' objects first,
// then the blobs, packs and image objects nothing retained names. Before the second phase the journal is listed again:
// a commit published since the plan may name a blob or pack the plan found unreferenced (the same bytes committed
// again), and that one stays; so are the specs when image objects are to go (a container protected meanwhile). Runs on the primary every gcIntervalMs (GcLoop, first soon after the start) and as `twinlayer gc`.
//
// Deletes go in batches, and before each one the run checks that it may still delete: it was not stopped (the
// pusher's life: a demoted primary's run ends at the next step) and the generation it planned for is still the
// group's newest, owned by its host when it runs for one (a fenced primary deletes nothing more). A new primary
// reuses blobs and packs already in the bucket without writing them again, so nothing but that check keeps an old
// host's sweep from deleting what the new one just named; what is left is the one batch sent before the new claim
// was seen (bounded by batchSize).
import { defaultLimits, type Limits } from '../changeset/index.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { GcObjectKind, Metrics } from '../metrics/index.js';
import type { Bucket } from './bucket.js';
import { TwinlayerError } from '../log/errors.js';
import { BucketObjectInvalidError } from './errors.js';
import { collectGc, GcCache, readPacks, specDigests } from './gc-collect.js';
import type { Digest, Generation } from './types.js';
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
  /** Stops the run at its next step (the pusher's life: aborted when it halts or stops). */
  signal?: AbortSignal;
  /** The generation this host writes (the primary): deletes stop once it is not the newest or not this host's. Unset
   *  (`twinlayer gc`): the newest generation when the run collected, which must stay the newest. */
  owner?: { generation: Generation; host: string };
  /** Keys per delete request, each preceded by the check above. Default 1000 (S3's DeleteObjects limit). */
  batchSize?: number;
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

/** The run stopped before it was done: its host halted, or the bucket's newest generation is not the one it ran for. */
export class GcStoppedError extends TwinlayerError {
  constructor(message: string, context: { generation: number; host?: string }) {
    super('GC_STOPPED', message, context);
  }
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
  const batchSize = opts.batchSize ?? 1000;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new TypeError(`Expected \`batchSize\` to be a positive integer, got ${String(batchSize)}`);
  opts.signal?.throwIfAborted();
  const input = await collectGc(bucket, { now, retentionMs: opts.retentionMs, graceMs: opts.graceMs, cache, limits, signal: opts.signal }).catch((err: unknown) => {
    opts.metrics?.gcRun(opts.signal?.aborted === true ? 'stopped' : 'failed');
    if (opts.signal?.aborted === true) throw new GcStoppedError('garbage collection stopped while it read the bucket: its host stopped being primary', { generation: opts.owner?.generation ?? 0 });
    throw err;
  });
  const plan = planGc(input);
  const newestListed = input.generations.reduce<Generation | null>((n, g) => (n === null || g.generation > n ? g.generation : n), null);
  const fence = opts.owner ?? (newestListed === null ? null : { generation: newestListed, host: null });
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
  // Runs before every DeleteObjects request, retries included (in the store's retry loop): what it throws is a
  // TwinlayerError, which ends the deletion at once rather than being retried as the request's failure.
  const mayDelete = async (): Promise<void> => {
    if (opts.signal?.aborted === true) throw new GcStoppedError('garbage collection stopped: its host stopped being primary', { generation: fence?.generation ?? 0 });
    if (fence !== null) await checkFence(bucket, fence);
  };
  const batched = async (deletions: readonly GcDeletion[]): Promise<string[]> => {
    const done: string[] = [];
    for (let i = 0; i < deletions.length; i += batchSize) {
      const batch = deletions.slice(i, i + batchSize).map((d) => d.key);
      await bucket.store.deleteMany(batch, { beforeRequest: mayDelete });
      done.push(...batch);
    }
    return done;
  };
  try {
    await batched(plan.first);
    await opts.betweenPhases?.();
    opts.signal?.throwIfAborted();
    // Doomed from here: a writer of this process that puts one of these keys again rescues it (delete-gate.ts).
    const doom = bucket.gate.doom(plan.second.map((d) => d.key));
    try {
      await opts.beforeSecondPhase?.(plan.second);
      opts.signal?.throwIfAborted();
      const late = await namedSince(bucket, new Set(input.objects.map((o) => o.key)), limits);
      const rewritten = await youngNow(bucket, now - opts.graceMs);
      // A spec written since the listing (a container protected meanwhile) may name an image object again.
      const imagesNow = plan.second.some((d) => d.kind === 'image') ? await specDigests(bucket) : new Set<string>();
      const imageNamed = (d: GcDeletion): boolean => d.kind === 'image' && (imagesNow === null || imagesNow.has(d.key.slice(-64)));
      const spare = (d: GcDeletion): boolean => late.keys.has(d.key) || rewritten.has(d.key) || (late.allPacks && d.kind === 'pack') || imageNamed(d);
      const candidates = new Map(plan.second.filter((d) => !spare(d)).map((d) => [d.key, d]));
      const deleted = await doom.run(async (keys) => batched(keys.filter((k) => candidates.has(k)).map((k) => candidates.get(k)!)));
      const second = deleted.flatMap((k) => candidates.get(k) ?? []);
      report.spared = plan.second.length - second.length;
      report.deleted = totalsOf([...plan.first, ...second]);
    } finally {
      doom.release();
    }
    opts.metrics?.gcRun('ok');
  } catch (err) {
    // A stop is no failure: the run ended where it was told to (or where the fence told it to).
    opts.metrics?.gcRun(err instanceof GcStoppedError || opts.signal?.aborted === true ? 'stopped' : 'failed');
    if (opts.signal?.aborted === true && !(err instanceof GcStoppedError)) throw new GcStoppedError('garbage collection stopped: its host stopped being primary', { generation: fence?.generation ?? 0 });
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

function metricKind(kind: GcKind): GcObjectKind {
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

/** Throws GcStoppedError unless `fence.generation` is still the newest generation (no valid one above it) and, with
 *  a host, that host's (its claim's, else its head's writer). */
async function checkFence(bucket: Bucket, fence: { generation: Generation; host: string | null }): Promise<void> {
  const newer = await bucket.nextGeneration(fence.generation);
  if (newer !== null) {
    throw new GcStoppedError(`garbage collection stopped: generation ${fence.generation + 1} was opened since (a new primary); its plan was for generation ${fence.generation}`, { generation: fence.generation, ...(fence.host === null ? {} : { host: fence.host }) });
  }
  if (fence.host === null) return;
  const [claim, head] = await Promise.all([bucket.readClaim(fence.generation), bucket.readHead(fence.generation)]);
  const owner = claim?.host ?? (head.status === 'ok' ? head.head.writer : null);
  if (owner !== fence.host) {
    throw new GcStoppedError(`garbage collection stopped: generation ${fence.generation} is ${owner === null ? 'owned by no host the group signed' : `host ${owner}'s`}, not this host's`, { generation: fence.generation, host: fence.host });
  }
}

/**
 * The blob and pack keys that records and divergent tails written since the listing `before` name (allPacks when a
 * new record's chunk list cannot be read: then no pack may go). Records are listed again, only those not listed
 * before are read; a tail's key names its blob.
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
  for await (const key of bucket.store.list(layout.divergentPrefix)) {
    const tail = before.has(key) ? null : layout.parseDivergentKey(key);
    if (tail !== null) named.add(layout.blobKey(tail.digest));
  }
  return { keys: named, allPacks };
}

/** Blob and pack keys written within the grace period by now (a writer put the same bytes again since the listing). */
async function youngNow(bucket: Bucket, graceEdge: number): Promise<Set<string>> {
  const young = new Set<string>();
  for (const prefix of [bucket.layout.blobsPrefix, bucket.layout.packsPrefix, bucket.layout.imagesPrefix]) {
    for await (const o of bucket.store.listObjects(prefix)) if (o.lastModified > graceEdge) young.add(o.key);
  }
  return young;
}

/** How long after start() the loop's first run waits by default: the primary's start (its first sync) goes first. */
export const defaultFirstGcDelayMs = 60_000;

/** GC on the primary: a first run `firstDelayMs` after start() (at most intervalMs), then every `intervalMs`, one
 *  run at a time. stop() aborts the run in flight at its next step (see GcOptions.signal) without waiting for it. */
export class GcLoop {
  readonly #bucket: Bucket;
  readonly #opts: GcOptions & { intervalMs: number; firstDelayMs?: number };
  readonly #cache = new GcCache();
  readonly #life = new AbortController();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #started = false;
  lastReport: GcReport | null = null;

  constructor(bucket: Bucket, opts: GcOptions & { intervalMs: number; firstDelayMs?: number }) {
    checkMs('intervalMs', opts.intervalMs);
    if (opts.firstDelayMs !== undefined) checkMs('firstDelayMs', opts.firstDelayMs);
    this.#bucket = bucket;
    this.#opts = opts;
    // The caller's signal ends the loop as stop() does.
    opts.signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  start(): void {
    if (this.#started || this.#opts.intervalMs === 0 || this.#life.signal.aborted) return;
    this.#started = true;
    this.#schedule(Math.min(this.#opts.firstDelayMs ?? defaultFirstGcDelayMs, this.#opts.intervalMs));
  }

  #schedule(delayMs: number): void {
    if (this.#life.signal.aborted) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#run().finally(() => {
        this.#running = null;
        this.#schedule(this.#opts.intervalMs);
      });
    }, delayMs);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const log = this.#opts.log ?? silentLogger;
    try {
      this.lastReport = await runGc(this.#bucket, { ...this.#opts, cache: this.#cache, signal: this.#life.signal });
    } catch (err) {
      if (err instanceof GcStoppedError) {
        log.info('bucket garbage collection stopped', { reason: err.message });
        return;
      }
      const denied = err instanceof Error && /AccessDenied|HTTP 403/.test(err.message);
      log.warn('bucket garbage collection failed; the next run tries again', {
        err,
        ...(denied ? { hint: 'these credentials may not delete: grant s3:DeleteObject (minio/policy-gc.json), or set gcIntervalMs=0 and run twinlayer gc with such credentials while no pusher of the group runs (README, Retention and GC)' } : {}),
      });
    }
  }

  /** No run starts after this; the one in flight stops at its next step. Resolves once it has. */
  async stop(): Promise<void> {
    this.#life.abort();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
