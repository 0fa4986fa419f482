// Ships one container's upper dir: one build/upload/publish at a time; bursts that arrive meanwhile coalesce
// into the next changeset (bounded memory); failures keep the work pending and retry with backoff.
import { rm } from 'node:fs/promises';
import type PQueue from 'p-queue';
import type { BuiltChangeset, SerializedIndex, UpperTracker } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import { asDigest, type Bucket, type CommitChunks, type Digest, type JournalWriter } from '../store/index.js';
import { uploadChunks } from './chunk-upload.js';
import { mergeScopes, type Burst, type BurstScope } from './burst.js';
import type { ShippedStateStore } from './shipped-state.js';

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
  log: Logger;
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
  #running: Promise<void> | null = null;
  #closed = false;
  #failures = 0;
  #lastError: string | null = null;
  #lastPublishedAt: number | null = null;
  #backoffTimer: NodeJS.Timeout | null = null;
  #wakeBackoff: (() => void) | null = null;

  constructor(deps: ReplicatorDeps) {
    this.name = deps.name;
    this.#deps = deps;
    this.#needFull = deps.needFull;
    this.#tracker = deps.makeTracker(deps.shipped);
  }

  /** Queue a burst; starts shipping unless a ship is in flight (then it joins the next one). */
  submit(burst: Burst): void {
    if (this.#closed) return;
    this.#pending = mergeScopes(this.#pending, burst.scope);
    this.#pendingSince = Math.min(this.#pendingSince ?? burst.firstEventAt, burst.firstEventAt);
    this.#kick();
  }

  /** Resolves when nothing is pending and nothing is in flight (or after the first failure, if failFast). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1_000_000 && this.#running; i++) await this.#running;
  }

  /** Stop retrying backoffs right away (used by syncOnce and shutdown). */
  wake(): void {
    this.#wakeBackoff?.();
  }

  status(): ReplicatorStatus {
    const oldest = this.#oldestUnpublished();
    return {
      name: this.name,
      lastSeq: this.#deps.journal.lastSeqOf(this.name),
      lastPublishedAt: this.#lastPublishedAt === null ? null : new Date(this.#lastPublishedAt).toISOString(),
      pendingSince: this.#pendingSince === null ? null : new Date(this.#pendingSince).toISOString(),
      lagMs: oldest === null ? 0 : Date.now() - oldest,
      consecutiveFailures: this.#failures,
      lastError: this.#lastError,
    };
  }

  #oldestUnpublished(): number | null {
    const a = this.#pendingSince;
    const b = this.#inFlightSince;
    return a === null ? b : b === null ? a : Math.min(a, b);
  }

  async close(): Promise<void> {
    this.#closed = true;
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
    while (this.#pending !== null && !this.#closed) {
      const scope = this.#pending;
      const firstWriteAt = this.#pendingSince ?? Date.now();
      this.#pending = null;
      this.#pendingSince = null;
      this.#inFlightSince = firstWriteAt;
      try {
        await this.#shipOnce(scope, firstWriteAt);
        this.#failures = 0;
        this.#lastError = null;
      } catch (err) {
        this.#pending = mergeScopes(this.#pending, scope);
        this.#pendingSince = Math.min(this.#pendingSince ?? firstWriteAt, firstWriteAt);
        this.#failures++;
        this.#lastError = (err as Error).message;
        this.#deps.log.warn('ship failed; will retry', { container: this.name, failures: this.#failures, lagMs: Date.now() - (this.#pendingSince ?? firstWriteAt), err });
        await this.#backoff();
      } finally {
        this.#inFlightSince = null;
      }
    }
  }

  async #shipOnce(scope: BurstScope, firstWriteAt: number): Promise<void> {
    const { bucket, journal, uploads, shippedState, log, generation } = this.#deps;
    const tracker = this.#tracker;
    // The first full checkpoint goes out even when empty: the standby creates the twin from it, and a container that
    // never writes (a firewall applying a ruleset from its image) must have one all the same.
    const built = await tracker.build(this.#needFull ? 'full' : scope, { emptyFull: true });
    log.debug('built', { container: this.name, scope: this.#needFull ? 'full' : scope === 'reconcile' ? scope : [...scope].slice(0, 50), files: built?.counts.files ?? 0, torn: built?.torn ?? [] });
    if (built === null) return;
    try {
      if (built.torn.length > 0) {
        // Files that changed while being read go out in the next changeset, never torn.
        this.#pending = mergeScopes(this.#pending, new Set(built.torn));
        this.#pendingSince ??= Date.now();
      }
      const digest = asDigest(built.digest);
      // Packs, then the chunk list, then the changeset: the record is published only once all it names is durable.
      const chunks = await this.#uploadChunks(built);
      await uploads.add(() => bucket.uploadBlob(built.file, digest));
      // The pending state is what we will have shipped once the record is out; if we crash after publishing,
      // the record's digest tells the next start that this state is the true one.
      const before = tracker.serialize();
      tracker.commit(built);
      await shippedState.save(this.name, true, { generation, lastSeq: journal.lastSeqOf(this.name), digest: built.digest, containerId: this.#deps.containerId, shipped: tracker.serialize() });
      let record;
      try {
        record = await journal.publish({
          container: this.name,
          digest,
          size: built.size,
          kind: built.kind,
          counts: built.counts,
          firstWriteAt: new Date(firstWriteAt),
          ...(chunks === undefined ? {} : { chunks }),
          specDigest: this.#deps.specDigest,
        });
      } catch (err) {
        this.#tracker = this.#deps.makeTracker(before);
        throw err;
      }
      this.#needFull = false;
      this.#lastPublishedAt = Date.now();
      await shippedState.save(this.name, false, { generation, lastSeq: record.seq, digest: built.digest, containerId: this.#deps.containerId, shipped: tracker.serialize() });
      await shippedState.clearPending(this.name);
      log.info('published', {
        container: this.name, seq: record.seq, kind: built.kind, files: built.counts.files, deletions: built.counts.deletions,
        bytes: built.counts.bytes, size: built.size, lagMs: this.#lastPublishedAt - firstWriteAt,
      });
    } finally {
      await rm(built.file, { force: true });
      if (built.chunks !== undefined) {
        // A ship that failed before its packs were finished: what is in flight ends before its dir goes.
        await built.chunks.sink.abandon();
        await rm(built.chunks.spoolDir, { recursive: true, force: true });
      }
    }
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
