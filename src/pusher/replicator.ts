// Ships one container's upper dir: one build/upload/publish at a time; bursts that arrive meanwhile coalesce
// into the next changeset (bounded memory); failures keep the work pending and retry with backoff. A file that
// changed while it was read is handed back to the burst collector (`retry`), so it goes out with the burst's
// trailing flush instead of in a changeset of its own right after this one.
import { rm } from 'node:fs/promises';
import type PQueue from 'p-queue';
import type { BuiltChangeset, SerializedIndex, UpperTracker } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import type { Metrics, ReplicationView } from '../metrics/index.js';
import { asDigest, type Bucket, type CommitChunks, type Digest, type JournalWriter } from '../store/index.js';
import { uploadChunks } from './chunk-upload.js';
import { mergeScopes, type Burst, type BurstScope } from './burst.js';
import { CHECKPOINT_MAX_DEFER_MS, checkpointDue, DEFAULT_CHECKPOINT_POLICY, DEFAULT_CHECKPOINT_QUIET_MS, deltaWeight, shippedFileBytes, type CheckpointPolicy } from './checkpoint-policy.js';
import { racyPaths, sameShippedState } from './checkpoint-same.js';
import { shippedText, type ShippedStateStore } from './shipped-state.js';

/** Waits before building again what a build left out as torn when nothing else shipped (ms; about 30 in all). */
const tornRebuildWaitsMs = [2, 4, 8, 16] as const;

/** After a failed checkpoint the next one waits this long, doubling per failure up to checkpointRetryMaxMs; the
 *  deltas go on meanwhile (a checkpoint never holds them back). One that failed on a file being written goes
 *  earlier: in the quiet period after the next delta (the one that ships that file). */
const checkpointRetryBaseMs = 10_000;
const checkpointRetryMaxMs = 10 * 60_000;

/** Before a checkpoint, paths shipped racily clean wait this long, past their window (racy.ts: 50 ms after their last
 *  change on file systems with fine timestamps), then a reconcile settles them (checkpoint-same.ts). */
const racySettleMs = 100;

/** A build whose files, or whose torn files, hold more than this is not made again for its torn paths. */
const tornRebuildMaxBytes = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A checkpoint left unpublished because a file changed while it was read. */
class TornCheckpointError extends Error {}

/** The files a build wrote (the changeset, its chunk list and spool), once shipped or given up. */
async function removeBuiltFiles(built: BuiltChangeset): Promise<void> {
  await rm(built.file, { force: true });
  if (built.chunks !== undefined) {
    // A ship that failed before its packs were finished: what is in flight ends before its dir goes.
    await built.chunks.sink.abandon();
    await rm(built.chunks.spoolDir, { recursive: true, force: true });
  }
}

export interface ReplicatorStatus {
  name: string;
  lastSeq: number;
  lastPublishedAt: string | null;
  pendingSince: string | null;
  /** How long the oldest change not yet published has waited (ms); 0 when nothing waits. */
  lagMs: number;
  consecutiveFailures: number;
  lastError: string | null;
}

export interface ReplicatorDeps {
  name: string;
  /** The Docker container id whose upper dir is shipped (kept with the shipped state). */
  containerId: string;
  generation: number;
  /** Makes the tracker from a shipped state (undefined: nothing shipped yet). */
  makeTracker: (shipped: SerializedIndex | undefined) => UpperTracker;
  shipped: SerializedIndex | undefined;
  /** Ship everything (kind full) on the first build: no trustworthy shipped state. */
  needFull: boolean;
  /** The spec put for this container (docker's specDigest), named in every record (CommitRecord.specDigest). */
  specDigest: Digest;
  bucket: Bucket;
  journal: JournalWriter;
  uploads: PQueue;
  shippedState: ShippedStateStore;
  /** Paths left out of a changeset because they changed while being read: to be built again (BurstCollector.retry). */
  retry: (paths: readonly string[]) => void;
  log: Logger;
  /** When the newest commit and the newest full checkpoint of the container were published, as far as known at start
   *  (the last record, the shipped state); epoch ms. */
  lastPublishedAt?: number | null;
  lastFullAt?: number | null;
  /** The deltas published since the last full checkpoint, as far as the shipped state tells (none when unknown). */
  sinceFull?: { deltas: number; bytes: number };
  /** When a full checkpoint is due (checkpoint-policy.ts); default DEFAULT_CHECKPOINT_POLICY. */
  checkpoints?: CheckpointPolicy;
  /** The clock checkpoints are timed by (tests move it); default Date.now. */
  clock?: () => number;
  metrics?: Metrics | undefined;
  /** Backoff after a failed ship; doubles up to maxBackoffMs. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

export class ContainerReplicator {
  readonly name: string;
  #deps: ReplicatorDeps;
  #tracker: UpperTracker;
  #needFull: boolean;
  #pending: BurstScope | null = null;
  #pendingSince: number | null = null;
  /** First write of the changeset being shipped now; null when nothing is in flight. */
  #inFlightSince: number | null = null;
  /** When the first change of the pending work, and of the work in flight, was seen (a scheduled reconcile that may
   *  find nothing is not a change): the replication lag counts from these. */
  #pendingChangeSince: number | null = null;
  #inFlightChangeSince: number | null = null;
  #running: Promise<void> | null = null;
  /** The commit being shipped now. */
  #ship: Promise<void> | null = null;
  #closed = false;
  #failures = 0;
  #lastError: string | null = null;
  #lastPublishedAt: number | null = null;
  #lastFullAt: number | null = null;
  /** Deltas published since the last full checkpoint, their weight, and the container's bytes as last shipped. */
  #sinceFull = { deltas: 0, bytes: 0 };
  #containerBytes = 0;
  readonly #clock: () => number;
  /** Where a checkpoint's age counts from when the last one's time is unknown. */
  readonly #startedAt: number;
  #checkpointFailures = 0;
  #checkpointRetryAt = 0;
  /** When a checkpoint was first found due (clock), until one is published: the quiet wait is bounded from it. */
  #checkpointDueSince: number | null = null;
  /** When a delta was last queued (a burst with a change) or published (clock): the quiet period counts from it. */
  #lastActivityAt: number;
  /** Deltas published by this replicator; after a checkpoint failed on a torn file, the count it waits to pass. */
  #deltasPublished = 0;
  #checkpointAfterDelta: number | null = null;
  /** Wakes the drain when the quiet period a due checkpoint waits for ends with nothing else pending. */
  #quietTimer: NodeJS.Timeout | null = null;
  /** The paths shipped racily clean were settled for the checkpoint due now (once per checkpoint tried). */
  #settledForCheckpoint = false;
  #backoffTimer: NodeJS.Timeout | null = null;
  #wakeBackoff: (() => void) | null = null;

  constructor(deps: ReplicatorDeps) {
    this.name = deps.name;
    this.#deps = deps;
    this.#needFull = deps.needFull;
    this.#tracker = deps.makeTracker(deps.shipped);
    this.#lastPublishedAt = deps.lastPublishedAt ?? null;
    this.#lastFullAt = deps.lastFullAt ?? null;
    this.#sinceFull = { ...(deps.sinceFull ?? { deltas: 0, bytes: 0 }) };
    this.#containerBytes = deps.shipped === undefined ? 0 : shippedFileBytes(deps.shipped);
    this.#clock = deps.clock ?? Date.now;
    this.#startedAt = this.#clock();
    this.#lastActivityAt = this.#startedAt;
  }

  /** The replication metrics of this container at `now`; `collecting` is when the first change of the burst not yet
   *  handed over was seen. */
  view(now: number, collecting: number | null): ReplicationView {
    const oldest = earliest(earliest(collecting, this.#pendingChangeSince), this.#inFlightChangeSince);
    const waiting = this.#pendingChangeSince !== null || collecting !== null ? 1 : 0;
    return {
      container: this.name,
      lagMs: oldest === null ? 0 : Math.max(0, now - oldest),
      lagCommits: (this.#inFlightChangeSince !== null ? 1 : 0) + waiting,
      lastCommitAt: this.#lastPublishedAt,
      lastCheckpointAt: this.#lastFullAt,
    };
  }

  /** Queue a burst; starts shipping unless a ship is in flight (then it joins the next one). */
  submit(burst: Burst): void {
    if (this.#closed) return;
    this.#pending = mergeScopes(this.#pending, burst.scope);
    this.#pendingSince = Math.min(this.#pendingSince ?? burst.firstEventAt, burst.firstEventAt);
    this.#pendingChangeSince = earliest(this.#pendingChangeSince, burst.firstChangeAt ?? null);
    // A scheduled reconcile (no change seen) does not break a quiet period; what it finds and publishes does.
    if (burst.firstChangeAt != null) this.#lastActivityAt = this.#clock();
    this.#kick();
  }

  /** Whether a ship is under way or waits (its backoff included). */
  get busy(): boolean {
    return this.#running !== null;
  }

  /** Resolves when nothing is pending and nothing is in flight (or after the first failure, if failFast). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1_000_000 && this.#running; i++) await this.#running;
  }

  /** Resolves once the commit being shipped now (if any) is published or has failed: GC in this process waits for
   *  it before its last look for commits that name what it deletes (Pusher). */
  async shipped(): Promise<void> {
    await this.#ship?.catch(() => undefined);
  }

  /** Stop retrying backoffs right away (used by syncOnce and shutdown). */
  wake(): void {
    this.#wakeBackoff?.();
  }

  /** `collecting`: when the first change of the burst its collector still holds was seen. A change being collected
   *  waits as much as one handed over: the lag counts from it, so a status with lag 0 means all is published. */
  status(collecting: number | null): ReplicatorStatus {
    const pending = earliest(this.#pendingSince, collecting);
    const oldest = earliest(pending, this.#inFlightSince);
    return {
      name: this.name,
      lastSeq: this.#deps.journal.lastSeqOf(this.name),
      lastPublishedAt: this.#lastPublishedAt === null ? null : new Date(this.#lastPublishedAt).toISOString(),
      pendingSince: pending === null ? null : new Date(pending).toISOString(),
      lagMs: oldest === null ? 0 : Math.max(0, Date.now() - oldest),
      consecutiveFailures: this.#failures,
      lastError: this.#lastError,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#quietTimer !== null) clearTimeout(this.#quietTimer);
    this.#quietTimer = null;
    this.wake();
    await this.idle();
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = this.#drain().finally(() => {
      this.#running = null;
    });
  }

  async #drain(): Promise<void> {
    /** The last ship of this drain published a delta: a checkpoint due now goes next, whatever is pending. */
    let afterDelta = false;
    while (!this.#closed) {
      let due = this.#checkpointDue();
      const now = this.#clock();
      // A due checkpoint waits until the container is quiet (policy.quietMs with no delta queued or published): the
      // deltas meanwhile go out as they come. Past CHECKPOINT_MAX_DEFER_MS from when it fell due it goes anyway.
      const quietMs = this.#deps.checkpoints?.quietMs ?? DEFAULT_CHECKPOINT_QUIET_MS;
      const quietIn = quietMs - (now - this.#lastActivityAt);
      const forced = this.#checkpointDueSince !== null && now - this.#checkpointDueSince >= CHECKPOINT_MAX_DEFER_MS;
      if (due !== null && quietIn > 0 && !forced) {
        // Woken again when the quiet period or the bound ends, unless a write comes first (then that delta's drain
        // looks again).
        if (this.#pending === null) this.#wakeAt(Math.min(quietIn, this.#checkpointDueSince! + CHECKPOINT_MAX_DEFER_MS - now));
        due = null;
      }
      if (this.#pending === null && due === null) break;
      // A due checkpoint lets one delta go first (a write is not held back by a build of the whole container), then
      // it goes, taking along what came meanwhile (a full build ships the whole container): never starved by writes
      // that keep coming, never ahead of a delta it did not take in.
      const checkpoint: string | null = due !== null && (this.#pending === null || afterDelta) ? due : null;
      if (checkpoint !== null && !this.#settledForCheckpoint && racyPaths(this.#tracker.serialize()) > 0) {
        // Paths the last commits shipped racily clean: a checkpoint reading them now could not tell the standby it
        // restates its parent (checkpoint-same.ts). Past their window, a reconcile goes first (as a delta when it finds
        // a change, nothing otherwise), then the checkpoint.
        this.#settledForCheckpoint = true;
        await sleep(racySettleMs);
        this.#pending = mergeScopes(this.#pending, 'reconcile');
        afterDelta = false;
        continue;
      }
      if (checkpoint !== null) this.#settledForCheckpoint = false;
      const scope = this.#pending;
      const firstWriteAt = this.#pendingSince ?? Date.now();
      this.#pending = null;
      this.#pendingSince = null;
      // A checkpoint alone carries no change that waits: it adds nothing to the lag.
      this.#inFlightSince = scope === null ? null : firstWriteAt;
      this.#inFlightChangeSince = this.#pendingChangeSince;
      this.#pendingChangeSince = null;
      try {
        const ship = this.#shipOnce(scope, firstWriteAt, checkpoint);
        // What shipped() waits for; its failure is handled below.
        this.#ship = ship.then(() => undefined, () => undefined);
        const kind = await ship;
        afterDelta = kind === 'delta';
        if (kind === 'delta') {
          this.#deltasPublished++;
          this.#lastActivityAt = this.#clock();
        }
        this.#failures = 0;
        this.#lastError = null;
        if (checkpoint !== null) {
          this.#checkpointFailures = 0;
          this.#checkpointAfterDelta = null;
        }
      } catch (err) {
        if (scope !== null) {
          this.#pending = mergeScopes(this.#pending, scope);
          this.#pendingSince = Math.min(this.#pendingSince ?? firstWriteAt, firstWriteAt);
        }
        this.#pendingChangeSince = earliest(this.#pendingChangeSince, this.#inFlightChangeSince);
        this.#deps.metrics?.failure('ship');
        afterDelta = false;
        if (checkpoint !== null) {
          // The deltas do not wait for it: what was pending goes out as a delta next, the checkpoint later.
          this.#checkpointFailures++;
          const waitMs = Math.min(checkpointRetryMaxMs, checkpointRetryBaseMs * 2 ** Math.min(this.#checkpointFailures - 1, 16));
          this.#checkpointRetryAt = this.#clock() + waitMs;
          // One that found a file being written goes in the quiet period after the delta that ships that file (the
          // burst collector has it again), not on a timer that may land on the next write. Not once the bound
          // forced it: under writes that never stop, that would read the whole container after every delta.
          const afterNextDelta = err instanceof TornCheckpointError && !forced;
          this.#checkpointAfterDelta = afterNextDelta ? this.#deltasPublished : null;
          this.#deps.log.warn('checkpoint failed; deltas go on, the checkpoint is tried again later', {
            container: this.name, failures: this.#checkpointFailures, retryInMs: waitMs, ...(afterNextDelta ? { orAfter: 'the next delta and a quiet period' } : {}), err,
          });
          continue;
        }
        this.#failures++;
        this.#lastError = (err as Error).message;
        this.#deps.log.warn('ship failed; will retry', { container: this.name, failures: this.#failures, lagMs: Date.now() - (this.#pendingSince ?? firstWriteAt), err });
        await this.#backoff();
      } finally {
        this.#ship = null;
        this.#inFlightSince = null;
        this.#inFlightChangeSince = null;
      }
    }
  }

  /** Why a full checkpoint is due now, or null (none due, a first full sync is due anyway, or one failed lately). */
  #checkpointDue(): string | null {
    if (this.#needFull || this.#closed) {
      this.#checkpointDueSince = null;
      return null;
    }
    const now = this.#clock();
    const verdict = checkpointDue(this.#deps.checkpoints ?? DEFAULT_CHECKPOINT_POLICY, {
      deltaBytesSinceFull: this.#sinceFull.bytes, deltasSinceFull: this.#sinceFull.deltas, containerBytes: this.#containerBytes,
      lastFullAt: this.#lastFullAt, since: this.#startedAt,
    }, now);
    if (!verdict.due) {
      this.#checkpointDueSince = null;
      return null;
    }
    // Due from the first time it was found due, failures included: the quiet wait's bound does not start over.
    this.#checkpointDueSince ??= now;
    const retryOnDelta = this.#checkpointAfterDelta !== null && this.#deltasPublished > this.#checkpointAfterDelta;
    if (now < this.#checkpointRetryAt && !retryOnDelta) return null;
    return `${verdict.reason}: ${verdict.detail}`;
  }

  /** Runs the drain again in `ms` (replacing the wake asked for before: each drain asks for the one it needs). */
  #wakeAt(ms: number): void {
    if (this.#quietTimer !== null) clearTimeout(this.#quietTimer);
    // A millisecond past the end: the drain then finds the period over, not 0 ms left of it.
    this.#quietTimer = setTimeout(() => {
      this.#quietTimer = null;
      this.#kick();
    }, Math.max(0, ms) + 1);
    // Not what keeps a process alive: close() clears it, and a pusher that stops leaves the checkpoint to its next start.
    this.#quietTimer.unref();
  }

  /** Builds and publishes one commit: `scope` (null: nothing pending), or a full one when the first full sync or
   *  `checkpoint` (why one is due) asks for it. Returns the kind published, or null when nothing was. */
  async #shipOnce(scope: BurstScope | null, firstWriteAt: number, checkpoint: string | null): Promise<'delta' | 'full' | null> {
    const { bucket, journal, uploads, shippedState, log, generation } = this.#deps;
    const tracker = this.#tracker;
    // The first full checkpoint goes out even when empty: the standby creates the twin from it, and a container that
    // never writes (a firewall applying a ruleset from its image) must have one all the same. A periodic checkpoint is
    // the same build: whatever is on disk, the pending paths with it.
    const buildScope = this.#needFull || checkpoint !== null || scope === null ? 'full' : scope;
    let built = await tracker.build(buildScope, { emptyFull: true });
    // A file being written when the build read it is left out (torn). A burst's first flush comes at its first
    // event, often while the writer is still at it: a small build with torn paths is made again after a short wait,
    // a few times, so that the burst's first commit holds the write instead of the commit after the quiet period.
    // Never torn either way; what is still torn then waits for the burst's trailing flush (retry below). A full
    // build, or one that read or would read again more than tornRebuildMaxBytes (a bulk write), is not made again.
    for (let i = 0; i < tornRebuildWaitsMs.length && tracker.torn.length > 0 && typeof buildScope !== 'string' && !this.#closed; i++) {
      if ((built !== null && built.counts.bytes > tornRebuildMaxBytes) || tracker.tornBytes > tornRebuildMaxBytes) break;
      // Only empty files left out (changed within a tick: a writer that had just opened them): one rebuild catches
      // the writer that was about to write; a file that stays empty ships with the trailing flush, settled.
      if (i > 0 && tracker.tornBytes === 0) break;
      if (built !== null) await removeBuiltFiles(built);
      await sleep(tornRebuildWaitsMs[i]!);
      built = await tracker.build(buildScope);
    }
    log.debug('built', { container: this.name, scope: typeof buildScope === 'string' ? buildScope : [...buildScope].slice(0, 50), files: built?.counts.files ?? 0, torn: tracker.torn, ...(checkpoint === null ? {} : { checkpoint }) });
    if (built === null) {
      if (tracker.torn.length > 0) this.#deps.retry(tracker.torn);
      return null;
    }
    if (checkpoint !== null && !this.#needFull && built.torn.length > 0) {
      // Staging a full removes what it does not name: a periodic checkpoint without a file being written would take
      // that file off the standby until a later delta. It fails instead (the deltas go on; it is tried again later).
      await removeBuiltFiles(built);
      this.#deps.retry(built.torn);
      throw new TornCheckpointError(`checkpoint not published: ${built.torn.length} file(s) changed while being read (${built.torn.slice(0, 3).join(', ')})`);
    }
    try {
      // Files that changed while being read go out in a later changeset, never torn.
      if (built.torn.length > 0) this.#deps.retry(built.torn);
      const digest = asDigest(built.digest);
      // The pending state is what we will have shipped once the record is out; if we crash after publishing,
      // the record's digest tells the next start that this state is the true one. It is written while the blobs go
      // up (neither needs the other); the record is published only once both are done.
      const before = tracker.serialize();
      tracker.commit(built);
      const shipped = tracker.serialize();
      // A checkpoint that found the container as the commits up to its parent left it: a standby that staged them
      // records it without staging it again (checkpoint-same.ts).
      const parentSeq = journal.lastSeqOf(this.name);
      const sameAs = checkpoint !== null && built.kind === 'full' && parentSeq > 0 && sameShippedState(before, shipped) ? parentSeq : undefined;
      // As they are once this commit is out: the pending state is adopted only if it went out.
      // A delta weighs what staging it writes: the files it carries whole and those it assembles from chunks.
      const stagedBytes = built.counts.bytes + (built.chunks?.files.reduce((n, f) => n + f.size, 0) ?? 0);
      const sinceFull = built.kind === 'full' ? { deltas: 0, bytes: 0 } : { deltas: this.#sinceFull.deltas + 1, bytes: this.#sinceFull.bytes + deltaWeight(stagedBytes) };
      const shippedJson = shippedText(shipped);
      const pendingState = { generation, lastSeq: journal.lastSeqOf(this.name), digest: built.digest, containerId: this.#deps.containerId, ...this.#fullAt(), sinceFull };
      let record;
      try {
        const [chunks] = await allOrFirstError([
          // Chunks, then their list, then the changeset: the record is published only once all it names is durable.
          (async () => {
            const c = await this.#uploadChunks(built);
            await uploads.add(() => bucket.uploadBlob(built.file, digest));
            return c;
          })(),
          shippedState.save(this.name, true, pendingState, shippedJson),
        ] as const);
        record = await journal.publish({
          container: this.name,
          digest,
          size: built.size,
          kind: built.kind,
          counts: built.counts,
          firstWriteAt: new Date(firstWriteAt),
          ...(chunks === undefined ? {} : { chunks }),
          specDigest: this.#deps.specDigest,
          ...(sameAs === undefined ? {} : { sameAs }),
        });
      } catch (err) {
        this.#tracker = this.#deps.makeTracker(before);
        throw err;
      }
      this.#needFull = false;
      this.#lastPublishedAt = Date.parse(record.publishedAt);
      if (record.kind === 'full') this.#lastFullAt = this.#lastPublishedAt;
      this.#sinceFull = sinceFull;
      this.#containerBytes = shippedFileBytes(shipped);
      await shippedState.save(this.name, false, { generation, lastSeq: record.seq, digest: built.digest, containerId: this.#deps.containerId, ...this.#fullAt(), sinceFull }, shippedJson);
      await shippedState.clearPending(this.name);
      log.info('published', {
        container: this.name, seq: record.seq, kind: built.kind, files: built.counts.files, deletions: built.counts.deletions,
        bytes: built.counts.bytes, size: built.size, lagMs: this.#lastPublishedAt - firstWriteAt, ...(checkpoint === null || built.kind !== 'full' ? {} : { checkpoint, waitedMs: this.#clock() - (this.#checkpointDueSince ?? this.#clock()) }),
        ...(record.sameAs === undefined ? {} : { sameAs: record.sameAs }),
      });
      return built.kind;
    } finally {
      await removeBuiltFiles(built);
    }
  }

  #fullAt(): { lastFullAt?: string } {
    return this.#lastFullAt === null ? {} : { lastFullAt: new Date(this.#lastFullAt).toISOString() };
  }

  /** Uploads the packs of the chunks the bucket lacks and the chunk list; what the record says of them. */
  async #uploadChunks(built: BuiltChangeset): Promise<CommitChunks | undefined> {
    const c = built.chunks;
    if (c === undefined) return undefined;
    // Not in a slot of the shared queue: finishing may wait for a chunk another container's build is packing, whose
    // last pack goes out when that build finishes; were it queued behind this one, neither would move. The packs have
    // their own bounds (PackStore: uploads per build, packs in memory).
    const up = await uploadChunks(c, this.#deps.bucket);
    return up.declared;
  }

  async #backoff(): Promise<void> {
    const base = this.#deps.baseBackoffMs ?? 200;
    const max = this.#deps.maxBackoffMs ?? 10_000;
    const ms = Math.min(max, base * 2 ** Math.min(this.#failures - 1, 16)) * (0.5 + Math.random() / 2);
    await new Promise<void>((resolve) => {
      this.#wakeBackoff = resolve;
      this.#backoffTimer = setTimeout(resolve, ms);
    });
    if (this.#backoffTimer) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = null;
    this.#wakeBackoff = null;
  }
}

function earliest(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : Math.min(a, b);
}

/** Promise.all that waits for every promise to settle before it rejects (with the first error): nothing of a
 *  failed ship is still running when the retry starts. */
async function allOrFirstError<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
