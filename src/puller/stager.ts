// Staging: each container's queue, in order, into its stopped twin's upper dir — fetched, verified, staged whole,
// then the staged seq recorded durably. A gap, a running twin, a replaced twin or a refused commit stops that
// container only.
//
// Containers do not wait for each other: each has its own task, which outlives the poll that started it (the daemon
// polls on while a big blob is validated), and at most `downloadConcurrency` commits are fetched and staged at once
// (and four times as many small ones besides, SMALL_COMMIT_BYTES),
// so one slow or hostile blob holds one slot, not the others. A commit whose changeset was refused is remembered by
// container and digest and neither downloaded nor validated again, and its container waits for a full checkpoint (as
// at a gap); one that failed after its download is fetched again only after a backoff (refused-commits.ts).
// Promotion aborts validations in progress.
//
// A twin is checked (stopped, unmounted, the spec's, the id the applied seq names) before each commit, and again once
// the commit is applied, before it is recorded; the read that ends a commit is the check of the container's next one
// in the same run (one inspect a commit while catching up). Right before the first write, the engine's mount table
// says whether the twin was started since its check (the slot, the download and validation lie between them).
//
// A periodic checkpoint that restates the commit the twin staged last (CommitRecord.sameAs) is recorded, not staged:
// the twin holds its content already. A queued commit whose blob retention retired moves the container on to the
// checkpoint queued after it (superseded.ts). A twin whose upper dir is a trusted state is never emptied to make room for a
// full checkpoint (room-for-full.ts): it waits for room and boots what it holds meanwhile.
import { rm, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import PQueue from 'p-queue';
import {
  abandonStaging, bytesNeeded, ChangesetNoRoomError, ChangesetRejectedError, defaultLimits, recoverStaging, roomProblem, stageChangeset,
  StagePendingError, StageUndoError, stagingLeftBehind, type Limits, type StageIntent, type StageTarget,
} from '../changeset/index.js';
import { isEngineUnavailable, specDigest, type DockerRuntime, type TwinSpec, type TwinState } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { BlobDigestMismatchError, BlobMissingError, PackStore, type Bucket, type CommitRecord } from '../store/index.js';
import { declaredCommitProblem, openChunkedCommit } from './chunked-commit.js';
import { PhaseClock, stagePhases, type CommitTimings } from './commit-timings.js';
import { downloadValidated } from './validated-download.js';
import type { AppliedState, AppliedStateFile } from './applied-state.js';
import type { ContainerRuntimeState, ContainerStates } from './container-state.js';
import type { JournalFollower } from './journal-follower.js';
import { RefusedCommits } from './refused-commits.js';
import { supersedingCheckpoint } from './superseded.js';
import { bytesFreedByEmptying, emptyDir } from './room-for-full.js';
import type { TwinKeeper } from './twin-keeper.js';

export interface StagerOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  file: AppliedStateFile;
  /** Where blobs are downloaded to (emptied at open). */
  blobDir: string;
  /** Commits fetched and staged at once, over all containers. */
  downloadConcurrency: number;
  /** Bounds on changesets (default: the changeset unit's defaults). */
  limits?: Limits;
  /** Where each twin's chunk index is kept (chunk-index.ts). Default: `chunk-index` beside blobDir. */
  chunkIndexDir?: string;
  /** Counts staged commits and staging failures, refusals and gaps. */
  metrics?: Metrics | undefined;
}

interface Task {
  promise: Promise<number>;
  controller: AbortController;
}

/** A commit this small (its changeset and chunks) stages in a slot of its own kind: its time goes to waiting (the
 *  engine, fsyncs, the bucket's latency), not to bytes, so more of them at once catch a standby up faster (4 slots
 *  shared by all containers made a standby of 17 busy containers wait 1.7 s a commit for a slot, and fall behind a
 *  primary committing 10 times a second) while the memory and disk of the large ones stay bounded by their own slots. */
const SMALL_COMMIT_BYTES = 1024 * 1024;
const SMALL_SLOTS_PER_SLOT = 4;

/** Small by everything its record declares it brings (each declaration is enforced while it is fetched and
 *  validated): the blob, what it unpacks to on disk (a 1 MiB blob of zeros can declare 512 MiB; 4 KiB counted per
 *  entry, so at most 256 entries), the chunk list and the chunks. */
function isSmallCommit(record: CommitRecord): boolean {
  const bytes = Math.max(record.size, bytesNeeded(record.counts)) + (record.chunks?.size ?? 0) + (record.chunks?.bytes ?? 0);
  return bytes <= SMALL_COMMIT_BYTES;
}

function stageable(twin: TwinState): boolean {
  return twin.state === 'stopped' && !twin.mounted;
}

/** The volumes a twin's commits are staged into: exactly those its spec replicates (`volumes`), by name. */
function replicatedNames(spec: Pick<TwinSpec, 'volumes'>): Set<string> {
  return new Set((spec.volumes ?? []).map((v) => v.name));
}

/** Why nothing may be written into `twin` now (a reason shown as the container's block), or null: it runs or its
 *  layers are mounted, or another container of this host uses a volume staging writes into (staging would write
 *  under that container). */
export function stageHold(twin: TwinState, spec: Pick<TwinSpec, 'volumes'> | null): string | null {
  if (twin.state === 'absent') return 'twin absent';
  if (!stageable(twin)) return 'twin is running or mounted; staging paused';
  const replicated = spec === null ? new Set(Object.keys(twin.volumes)) : replicatedNames(spec);
  const shared = Object.entries(twin.volumeUsers).filter(([volume]) => replicated.has(volume));
  if (shared.length === 0) return null;
  return `staging paused: ${shared.map(([volume, users]) => `volume ${volume} is used by container ${users.join(', ')}`).join('; ')} on this host; a twin's volumes are its own`;
}

/** Where a twin's commits are staged: its upper dir, its volumes, and a tmp dir beside the upper dir (same file
 *  system, outside it). With `spec`, only the volumes the spec replicates: a volume of the host the twin mounts
 *  besides (an operator's, which a trusted spec may name in its binds) is never staged into, nor pruned by a full
 *  commit. Without it (recovery, which undoes only what staging wrote), every volume of the twin. */
export function stageTargetOf(twin: { layers: { upperDir: string }; volumes: Readonly<Record<string, string>> }, spec?: Pick<TwinSpec, 'volumes'>): StageTarget {
  const upperDir = twin.layers.upperDir;
  const replicated = spec === undefined ? null : replicatedNames(spec);
  const volumes = replicated === null ? twin.volumes : Object.fromEntries(Object.entries(twin.volumes).filter(([name]) => replicated.has(name)));
  return { upperDir, tmpDir: join(dirname(upperDir), 'twinlayer-tmp'), volumes };
}

/** Whether the applied state records the commit an undo log's intent names: then that commit was complete. */
function recorded(state: AppliedState, name: string, i: StageIntent): boolean {
  const a = state.containers[name];
  return i.container === name && a !== undefined && a.generation === i.generation && a.seq === i.seq && a.digest === i.digest
    && (a.twinId === undefined || a.twinId === i.twinId);
}

export class Stager {
  readonly #o: StagerOptions;
  readonly #limits: Limits;
  readonly #containers: ContainerStates;
  readonly #journal: JournalFollower;
  readonly #keeper: TwinKeeper;
  readonly #slots: PQueue;
  /** Slots of small commits (SMALL_COMMIT_BYTES at most), SMALL_SLOTS_PER_SLOT times as many. */
  readonly #smallSlots: PQueue;
  readonly #packs: PackStore;
  /** One task per container with work, started by a poll, running until its queue is done or it is stopped. */
  readonly #tasks = new Map<string, Task>();
  /** Commits refused, or failed after their download, by container and digest. */
  readonly #refused = new RefusedCommits();
  /** What emptying a twin's upper dir would free, for the full checkpoint waiting for room (one per container). */
  readonly #treeBytes = new Map<string, { key: string; bytes: number }>();
  /** stageChangeset calls in progress; a promotion waits for these, not for a poll stuck on the network. */
  readonly #stagings = new Set<Promise<unknown>>();
  /** Set when the twins are about to start: no staging starts any more (the twins then own their layers). */
  #frozen = false;
  /** Containers whose twin may hold a commit left half staged (a crash, or a failure whose undo failed too): it is
   *  recovered before anything is staged into it again, and before it boots. */
  readonly #pending = new Set<string>();

  constructor(opts: StagerOptions, containers: ContainerStates, journal: JournalFollower, keeper: TwinKeeper) {
    this.#o = opts;
    this.#limits = opts.limits ?? defaultLimits;
    this.#containers = containers;
    this.#journal = journal;
    this.#keeper = keeper;
    this.#slots = new PQueue({ concurrency: opts.downloadConcurrency });
    this.#smallSlots = new PQueue({ concurrency: opts.downloadConcurrency * SMALL_SLOTS_PER_SLOT });
    this.#packs = new PackStore(opts.bucket.store, opts.bucket.layout, { log: opts.log.child({ unit: 'packs' }) });
  }

  /** No staging starts from now on (until thaw), validations stop and applies in progress are undone; resolves once
   *  they are. A task a poll starts later, or one queued for a slot, sees the flag and stages nothing. */
  async freeze(): Promise<void> {
    this.#frozen = true;
    this.abortAll();
    while (this.#stagings.size > 0) await Promise.allSettled([...this.#stagings]);
  }

  thaw(): void {
    this.#frozen = false;
  }

  /** Stops every container's task where it stands: downloads and validations are abandoned, an apply under way is
   *  undone (a deadline must not wait for a blob being validated or applied, nor leave a commit half applied). */
  abortAll(): void {
    for (const t of this.#tasks.values()) t.controller.abort();
  }

  /** Aborts every task and waits for all of them to end (at stop). */
  async drain(): Promise<void> {
    this.abortAll();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks.values()].map((t) => t.promise));
  }

  /** `name`'s twin may hold a commit left half staged: recovered before anything is staged into it or it boots. */
  markPending(name: string): void {
    this.#pending.add(name);
  }

  /** Whether `twin` (about to boot) holds the undo log of a commit left half staged: one lstat. */
  async leftBehind(twin: TwinState): Promise<boolean> {
    if (twin.state === 'absent' || !twin.isTwin) return false;
    return stagingLeftBehind(stageTargetOf(twin));
  }

  /** Containers that may hold a commit left half staged. */
  pendingRecovery(): string[] {
    return [...this.#pending].sort();
  }

  /**
   * Completes or undoes a commit left half staged in `name`'s twin (recoverStaging): rolled forward when the applied
   * state records it, undone otherwise. A twin that runs is its container's now: a log left there is discarded, never
   * replayed into it. A twin mounted but stopped waits. Throws when undoing fails (the container stays pending).
   */
  async recover(state: AppliedState, name: string, twin: TwinState): Promise<void> {
    if (twin.state === 'absent' || !twin.isTwin) {
      this.#pending.delete(name);
      return;
    }
    const target = stageTargetOf(twin);
    if (twin.state === 'running') {
      if (await abandonStaging(target)) this.#o.log.error('a running twin holds a commit left half staged; it cannot be undone under its container', { container: name });
      this.#pending.delete(name);
      return;
    }
    // Undoing writes into the twin's replicated volumes too: not while another container uses one of them.
    if (stageHold(twin, this.#containers.get(name).spec) !== null) {
      this.#pending.add(name);
      return;
    }
    this.#pending.add(name);
    const outcome = await recoverStaging(target, (i) => recorded(state, name, i), this.#o.log.child({ container: name }), async ({ rebooted }) => {
      if (!rebooted) return;
      // The machine restarted meanwhile: lines of the undo log may have been lost with the page cache, so the upper
      // dir is not trusted. Recorded durably before the log goes: the twin boots only once a full checkpoint is
      // staged into it again.
      (state.held ??= {})[name] = 'a commit was interrupted by a restart of the machine, so its upper dir is not trusted; it boots once a full checkpoint is staged into it again';
      await this.#o.file.save(state);
    });
    this.#pending.delete(name);
    if (outcome.action === 'undone' && outcome.rebooted) {
      this.#o.log.warn('a commit was interrupted by a restart of the machine; restaging from the latest full checkpoint', { container: name });
      this.#containers.get(name).restage = true;
    }
  }

  /** Why `name`'s twin must not boot (its upper dir is untrusted until a full checkpoint is staged), or null. */
  held(state: AppliedState, name: string): string | null {
    return state.held?.[name] ?? null;
  }

  /**
   * Starts a task for every container that has commits to stage and none running. With `wait` (a poll that must
   * report what it staged, a finalize), resolves once every task, also those started earlier, is done, with the
   * number of commits staged meanwhile; without it (the daemon's polls), at once with 0. `signal` aborts the tasks it
   * started. A commit that failed after its download waits out its backoff, except for a poll with `wait`. `only`
   * limits the containers started to those it accepts.
   */
  async stageQueues(state: AppliedState, signal: AbortSignal, wait = true, only?: (c: ContainerRuntimeState) => boolean): Promise<number> {
    // One listener on the caller's signal for all the tasks this call starts (one per task passed Node's limit of
    // ten listeners with more than ten containers staging), removed once they are all done.
    const started: Task[] = [];
    const onAbort = (): void => {
      for (const t of started) t.controller.abort();
    };
    for (const [name, c] of this.#containers.each()) {
      // Dockerd down: no staging starts until the keeper's next check finds it answering again.
      if (this.#frozen || signal.aborted || this.#keeper.engineDown) break;
      if (c.queue.length === 0 || c.refused !== null || c.restage || this.#tasks.has(name)) continue;
      if (only !== undefined && !only(c)) continue;
      const controller = new AbortController();
      c.staging = true;
      // Nobody may be waiting (the daemon's polls do not): a failure outside staging proper (Docker, statfs) is
      // reported on the container, never left as an unhandled rejection.
      const promise = this.#stageContainer(state, name, c, controller.signal, wait).catch((err: unknown) => {
        c.lastError = (err as Error).message;
        this.#o.metrics?.failure('stage');
        if (isEngineUnavailable(err)) this.#keeper.engineUnavailable(err);
        else this.#o.log.warn('staging failed; the staged seq did not move', { container: name, err });
        return 0;
      }).finally(() => {
        c.staging = false;
        this.#tasks.delete(name);
      });
      const task = { promise, controller };
      this.#tasks.set(name, task);
      started.push(task);
    }
    if (started.length > 0) {
      signal.addEventListener('abort', onAbort, { once: true });
      void Promise.allSettled(started.map((t) => t.promise)).then(() => signal.removeEventListener('abort', onAbort));
    }
    if (!wait) return 0;
    let staged = 0;
    const waited = new Set<Promise<number>>();
    for (;;) {
      const pending = [...this.#tasks.values()].map((t) => t.promise).filter((p) => !waited.has(p));
      if (pending.length === 0) return staged;
      for (const p of pending) waited.add(p);
      for (const r of await Promise.allSettled(pending)) if (r.status === 'fulfilled') staged += r.value;
    }
  }

  async #stageContainer(state: AppliedState, name: string, c: ContainerRuntimeState, signal: AbortSignal, retryNow: boolean): Promise<number> {
    let staged = 0;
    /** The twin as recordStaged read it once the commit before was applied (stopped, unmounted, the same id): the
     *  next commit of this run checks that answer instead of asking the engine again (one inspect a commit, not two,
     *  while a standby catches up). Only ever the read that ended the commit just staged. */
    let readAfterStaged: TwinState | null = null;
    while (c.queue.length > 0 && !signal.aborted && !this.#frozen) {
      const taskAt = performance.now();
      const known = readAfterStaged;
      readAfterStaged = null;
      const record = c.queue[0]!;
      // A poll may replace the queue meanwhile (a full commit, a new generation): only this record leaves it.
      const done = (): void => {
        if (c.queue[0] === record) c.queue.shift();
      };
      const applied = state.containers[name];
      const appliedSeq = applied && applied.generation === record.generation ? applied.seq : null;
      if (appliedSeq !== null && appliedSeq >= record.seq) {
        done();
        continue;
      }
      if (record.kind !== 'full' && appliedSeq !== record.parentSeq) {
        if (c.gap?.seq !== record.seq) {
          const why = await this.#journal.explainParent(record, name);
          this.#o.metrics?.failure('journal_gap');
          c.gap = { seq: record.seq, reason: `journal gap: record ${record.seq} follows ${record.parentSeq}, staged is ${appliedSeq ?? 'nothing'} of generation ${record.generation}; ${why}; waiting for a full checkpoint` };
          this.#o.log.error('staging stopped at a gap', { container: name, seq: record.seq, parentSeq: record.parentSeq, stagedSeq: appliedSeq, reason: why });
        }
        // Only a full checkpoint can move it past a gap: its queue goes, and the cursor no longer waits for it.
        this.#journal.awaitFull(state, name, c.gap.reason);
        return staged;
      }
      const verdict = this.#refused.verdict(name, record.digest, retryNow);
      if (verdict?.kind === 'refused') {
        this.#showRefusal(state, name, c, record, verdict.reason);
        return staged;
      }
      if (verdict?.kind === 'backoff') {
        c.lastError = `${verdict.reason}; fetched again after ${new Date(verdict.retryAt).toISOString()} (${verdict.failures} failed download(s))`;
        return staged;
      }
      const declared = declaredCommitProblem(record, this.#limits);
      if (declared !== null) {
        this.#refuse(state, name, c, record, declared);
        return staged;
      }
      const twin = known ?? await this.#o.runtime.twinState(name);
      const hold = stageHold(twin, c.spec);
      if (twin.state === 'absent' || hold !== null) {
        // A twin removed since the last check is recreated by the next poll; one held for what this host lacks is
        // checked every poll anyway.
        if (twin.state === 'absent' && c.hostProblems.length === 0) this.#keeper.checkSoon();
        if (hold !== null && c.blocked !== hold && twin.state === 'stopped' && !twin.mounted) this.#o.log.warn('staging paused: a volume of the twin is used by another container', { container: name, reason: hold });
        c.blocked = hold ?? 'twin absent';
        c.twin = twin.state;
        return staged;
      }
      // Defence in depth: never write into a container that is not this spec's twin, or another twin than the one
      // the applied seq describes (ensureTwins checks both at the start of the poll; the engine may change since).
      if (!twin.isTwin || c.spec === null || !(await this.#o.runtime.imageMatches(twin.imageId, c.spec))) {
        c.blocked = `container ${name} is not a twin of image ${c.spec?.imageId ?? '(no spec)'}; nothing staged`;
        return staged;
      }
      // A twin made from an older spec (the primary was recreated) gets no commit of the new container: it is
      // recreated from the new spec first (twin-keeper), so a failover never boots new files in an old config.
      if (c.specStale || (twin.specDigest !== null && twin.specDigest !== specDigest(c.spec))) {
        this.#keeper.checkSoon();
        // The keeper's reason when it is waiting for a record naming spec.json says more than this one.
        if (!c.specStale || c.blocked === null) c.blocked = 'the twin was made from an older spec; it is recreated before staging';
        return staged;
      }
      if (applied?.twinId !== undefined && applied.twinId !== twin.id) {
        c.restage = true;
        c.blocked = 'twin was replaced; restaging from the journal';
        return staged;
      }
      // Its upper dir holds what the applied state records (a staged commit, not held for a restart mid-commit or an
      // emptying).
      const trusted = applied !== undefined && state.held?.[name] === undefined;
      if (trusted && this.#restatesStaged(state, name, record, appliedSeq)) {
        if (signal.aborted || this.#frozen) break;
        const recording = this.#recordRestated(state, name, c, twin.id, record, done);
        this.#stagings.add(recording);
        try {
          await recording;
        } finally {
          this.#stagings.delete(recording);
        }
        staged++;
        continue;
      }
      const upperDir = twin.layers.upperDir;
      // Not downloaded when it cannot fit (the disk may be freed: checked again next poll, not remembered).
      const need = bytesNeeded(record.counts) + (record.chunks?.bytes ?? 0);
      let room = await roomProblem(upperDir, need);
      // A full checkpoint that fits once the tree it replaces is gone: that goes first (room-for-full.ts), but only
      // into a twin whose upper dir is no trusted state anyway. A trusted one keeps what it staged, which boots, and
      // waits for room: emptied, it would hold nothing that boots until the checkpoint is in.
      let emptyFirst = false;
      if (room !== null && record.kind === 'full' && trusted) {
        room = `${room} (its twin's upper dir, which holds staged commit ${applied.seq} of generation ${applied.generation}, is not emptied to make room: that is what boots)`;
      } else if (room !== null && record.kind === 'full') {
        const fs = await statfs(upperDir);
        const free = fs.bavail * fs.bsize;
        // The twin's tree does not change while it is stopped and this commit waits: added up once per commit.
        const key = `${twin.id}\n${record.digest}`;
        let freed = this.#treeBytes.get(name)?.key === key ? this.#treeBytes.get(name)!.bytes : null;
        if (freed === null) {
          freed = await bytesFreedByEmptying(upperDir, Number.POSITIVE_INFINITY);
          this.#treeBytes.set(name, { key, bytes: freed });
        }
        if (free + freed >= need) {
          emptyFirst = true;
          room = null;
        } else {
          room = `${room} (and ${freed} more once its twin's upper dir is emptied: not enough either)`;
        }
      }
      if (room !== null) {
        // Once per commit: the reason names the free bytes, which change at every try while the disk is full.
        if (c.roomWait?.seq !== record.seq || c.roomWait.generation !== record.generation) this.#o.log.warn('staging waits for free disk space', { container: name, generation: record.generation, seq: record.seq, reason: room });
        c.roomWait = { generation: record.generation, seq: record.seq };
        c.lastError = room;
        return staged;
      }
      c.roomWait = null;
      const blob = join(this.#o.blobDir, `${record.digest}.${record.seq}`);
      /** Where this commit's time went, for the 'staged' line (commitTimings). */
      const seen = this.#journal.readTimes(record);
      const timings: CommitTimings = seen === undefined ? {} : { publishedToSeenMs: seen.publishedToSeenMs, headMs: seen.headMs, recordGetMs: seen.recordMs };
      const intent: StageIntent = { container: name, twinId: twin.id, generation: record.generation, seq: record.seq, digest: record.digest };
      let twinStarted = false;
      /** Its layers were found mounted right before the first write: nothing was written. */
      let mountedBeforeWrite = false;
      /** What recordStaged read of the twin: still this stopped twin, unmounted, when the commit was recorded. */
      let after: TwinState | null = null;
      /** The blob is on disk: a failure from here on cost a whole download, and is not retried at once. */
      let downloaded = false;
      /** Called once the commit is applied and synced; its undo log is discarded after it returns. */
      const recordStaged = async (): Promise<void> => {
        const now = await this.#o.runtime.twinState(name);
        if (!stageable(now)) {
          // Complete on disk, but the container owns its upper dir now: nothing is undone under it, nothing recorded.
          twinStarted = true;
          return;
        }
        after = now;
        state.containers[name] = {
          generation: record.generation, seq: record.seq, digest: record.digest, stagedAt: new Date().toISOString(), twinId: twin.id,
          ...(record.specDigest === undefined ? {} : { specDigest: record.specDigest }),
        };
        // A full checkpoint makes the upper dir exactly the commit: trusted again, and followed again.
        if (record.kind === 'full' && state.held?.[name] !== undefined) delete state.held[name];
        if (record.kind === 'full') this.#journal.fullStaged(state, name);
        // Counted where the status starts to show the seq: a scrape that reads lag 0 also reads the commit counted.
        this.#o.metrics?.commitStaged(record.kind);
        // Out of the queue before the cursor is computed: the cursor stops before the first record still queued.
        done();
        c.gap = null;
        state.cursor = this.#journal.durableCursor();
        // A failed save leaves the undo log: recovery then goes by what is recorded (rolled forward once a later save
        // lands, undone after a restart that finds the commit unrecorded).
        this.#pending.add(name);
        await this.#o.file.save(state);
        this.#pending.delete(name);
      };
      /** The twin was checked before the slot, the download and validation (or is the read that ended the commit
       *  before): started since, its layers are mounted. One look at the engine's mount table, no API request. */
      const beforeWrite = async (): Promise<void> => {
        if (!(await this.#o.runtime.layersMounted(twin.layers))) return;
        mountedBeforeWrite = true;
        throw new Error(`twin ${name} was started (its layers are mounted) since it was checked; nothing written`);
      };
      try {
        if (this.#pending.has(name)) {
          if (signal.aborted || this.#frozen) break;
          // Counted as staging: a freeze waits for it, so startTwins never recovers the same twin at the same time.
          const recovering = this.recover(state, name, twin);
          this.#stagings.add(recovering);
          try {
            await recovering;
          } finally {
            this.#stagings.delete(recovering);
          }
          if (c.restage) return staged;
        }
        if (emptyFirst) {
          if (signal.aborted || this.#frozen) break;
          this.#treeBytes.delete(name);
          const emptying = this.#emptyForFull(state, name, twin.id, upperDir, record);
          this.#stagings.add(emptying);
          try {
            await emptying;
          } finally {
            this.#stagings.delete(emptying);
          }
        }
        const slots = isSmallCommit(record) ? this.#smallSlots : this.#slots;
        const slotAsked = performance.now();
        const ok = await slots.add(async () => {
          if (signal.aborted || this.#frozen) return false;
          const phase = new PhaseClock();
          timings.queueMs = Math.round(slotAsked - (seen === undefined ? taskAt : seen.headAt + seen.headMs + seen.recordMs));
          timings.slotMs = Math.round(phase.at - slotAsked);
          // The chunk list first: the blob is validated against it as it downloads.
          const chunked = await openChunkedCommit({
            bucket: this.#o.bucket, packs: this.#packs, limits: this.#limits, indexDir: this.#o.chunkIndexDir ?? join(dirname(this.#o.blobDir), 'chunk-index'),
          }, name, twin.id, record, blob);
          timings.chunkListMs = phase.lap();
          if (signal.aborted || this.#frozen) return false;
          const target = stageTargetOf(twin, c.spec ?? { volumes: [] });
          const log = this.#o.log.child({ container: name });
          const download = downloadValidated(this.#o.bucket, record, blob, { kind: record.kind, target, limits: this.#limits, chunks: chunked.stage?.list, log, signal });
          const validated = await this.#untilAborted(download, signal).catch((err: unknown) => {
            // A verdict of the streamed validation comes once the whole blob was downloaded and matched its digest.
            if (err instanceof ChangesetRejectedError || err instanceof ChangesetNoRoomError) downloaded = true;
            throw err;
          });
          timings.blobMs = phase.lap();
          timings.blobBytes = record.size;
          timings.streamed = validated !== null;
          if (validated === undefined || signal.aborted || this.#frozen) return false;
          downloaded = true;
          const staging = stageChangeset(blob, record.kind, target, {
            limits: this.#limits, log, declared: { ...record.counts, size: record.size }, signal,
            intent, record: recordStaged, beforeWrite, ...(chunked.stage === undefined ? {} : { chunks: chunked.stage }),
            ...(validated === null ? {} : { validated }),
          }).then(async (r) => {
            Object.assign(timings, stagePhases(r));
            phase.lap();
            // Only a hint for the next commits (every chunk read through it is checked): a failure costs downloads.
            if (!twinStarted) await chunked.adopt().catch((err: unknown) => this.#o.log.warn('cannot save the chunk index', { container: name, err }));
            timings.adoptMs = phase.lap();
            return r;
          });
          this.#stagings.add(staging);
          try {
            await staging;
          } catch (err) {
            // Otherwise undone already (or never begun). A record that did not land marked it pending itself.
            if (err instanceof StageUndoError || err instanceof StagePendingError) this.#pending.add(name);
            throw err;
          } finally {
            this.#stagings.delete(staging);
          }
          return true;
        }, { signal });
        if (!ok) break;
        if (twinStarted) throw new Error(`twin ${name} started while a commit was being staged; restaging later`);
        c.blocked = null;
        c.lastError = null;
        c.refusedCommit = null;
        this.#refused.staged(name, record.digest);
        staged++;
        timings.totalMs = Math.round(performance.now() - (seen === undefined ? taskAt : seen.headAt + seen.headMs));
        this.#o.log.debug('staged', { container: name, seq: record.seq, kind: record.kind, timings });
        // The next commit checks this read (every check above runs on it again: state, mounts, volume users, image,
        // spec, twin id) instead of a second inspect: nothing of this host runs between the two but the bookkeeping
        // of this commit, while the window from any check to the write (a slot, the download, validation) was there
        // all along.
        // (Set inside recordStaged, which the flow analysis does not follow.)
        const read = after as TwinState | null;
        if (read !== null && read.state !== 'absent' && read.id === twin.id) readAfterStaged = read;
      } catch (err) {
        if (signal.aborted) {
          // Validation abandoned, or the apply undone: the twin holds the previous commit; a later poll stages this one.
          this.#o.log.info('staging stopped by a deadline; the staged seq did not move', { container: name, seq: record.seq });
          return staged;
        }
        if (mountedBeforeWrite) {
          // As a twin found running by the check: paused, not a failure; staged once it is stopped again.
          c.blocked = 'twin is running or mounted; staging paused';
          this.#o.log.info('staging paused: the twin was started before the commit was written; nothing written', { container: name, seq: record.seq });
          return staged;
        }
        if (err instanceof ChangesetRejectedError) {
          this.#refuse(state, name, c, record, err.message);
          return staged;
        }
        if (err instanceof BlobMissingError && this.#skipRetired(name, c, record, err)) continue;
        // I/O errors, a full disk (ChangesetNoRoomError), a tool failing: undone, retried whole by a later poll; after
        // a backoff when the blob was fetched, did not match its record or is missing (each a request S3 charges for),
        // so it is not asked for on every poll.
        const message = (err as Error).message;
        this.#o.metrics?.failure('stage');
        if (downloaded || err instanceof BlobDigestMismatchError || err instanceof BlobMissingError) {
          const retryAt = this.#refused.failed(name, record.digest, message);
          c.lastError = `${message}; fetched again after ${new Date(retryAt).toISOString()}`;
          this.#o.log.warn('staging failed; the staged seq did not move; the blob is fetched again after a backoff', { container: name, seq: record.seq, retryInMs: retryAt - Date.now(), err });
        } else {
          c.lastError = message;
          this.#o.log.warn('staging failed; the staged seq did not move', { container: name, seq: record.seq, err });
        }
        return staged;
      } finally {
        await rm(blob, { force: true });
      }
    }
    return staged;
  }

  /** `record`'s blob (or a pack it names) is gone and a later full checkpoint of `name` is queued: retired by
   *  retention (superseded.ts). The queue moves on to that checkpoint, which is then staged whole; true when it did. */
  #skipRetired(name: string, c: ContainerRuntimeState, record: CommitRecord, err: BlobMissingError): boolean {
    const at = supersedingCheckpoint(c.queue, record);
    const checkpoint = c.queue[at];
    if (checkpoint === undefined) return false;
    this.#o.log.warn('a queued commit\'s blob is gone from the bucket (retired by retention); moving on to the full checkpoint queued after it, staged whole', {
      container: name, seq: record.seq, key: err.context['key'], checkpoint: checkpoint.seq, skipped: at,
    });
    c.queue = c.queue.slice(at);
    return true;
  }

  /** Whether `record` is a full checkpoint whose content `name`'s twin holds already: it restates (sameAs) the commit
   *  staged last, in this generation, and nothing since has been passed over or left half staged. The content equals
   *  the staged state only because every commit up to it was staged into this twin (its parent chain). */
  #restatesStaged(state: AppliedState, name: string, record: CommitRecord, appliedSeq: number | null): boolean {
    return record.kind === 'full' && record.sameAs !== undefined && record.sameAs === record.parentSeq && appliedSeq === record.sameAs
      && state.awaitFull?.[name] === undefined && !this.#pending.has(name);
  }

  /** Records a checkpoint the twin holds already (#restatesStaged) as staged: nothing is downloaded or written into
   *  the twin. Its record was checked as every record is (signature, declared bounds); its blob is read by whoever
   *  stages it from nothing. */
  async #recordRestated(state: AppliedState, name: string, c: ContainerRuntimeState, twinId: string, record: CommitRecord, done: () => void): Promise<void> {
    const now = await this.#o.runtime.twinState(name);
    if (now.state === 'absent' || !stageable(now) || now.id !== twinId) throw new Error(`twin ${name} changed before full checkpoint ${record.seq} was recorded; nothing recorded`);
    state.containers[name] = {
      generation: record.generation, seq: record.seq, digest: record.digest, stagedAt: new Date().toISOString(), twinId,
      ...(record.specDigest === undefined ? {} : { specDigest: record.specDigest }),
    };
    this.#journal.fullStaged(state, name);
    done();
    c.gap = null;
    state.cursor = this.#journal.durableCursor();
    await this.#o.file.save(state);
    c.blocked = null;
    c.lastError = null;
    c.refusedCommit = null;
    this.#refused.staged(name, record.digest);
    this.#o.metrics?.commitStaged(record.kind);
    this.#o.log.info('full checkpoint recorded without staging: the twin holds its content (it staged the commit the checkpoint restates)', { container: name, seq: record.seq, sameAs: record.sameAs });
  }

  /** Held durably first (an emptied upper dir is no state of the container: it must not boot), then emptied. */
  async #emptyForFull(state: AppliedState, name: string, twinId: string, upperDir: string, record: CommitRecord): Promise<void> {
    // Adding up its tree took a while: still the same stopped twin, or nothing is removed.
    const now = await this.#o.runtime.twinState(name);
    if (now.state === 'absent' || !stageable(now) || now.id !== twinId || now.layers.upperDir !== upperDir) throw new Error(`twin ${name} changed while room was made for full checkpoint ${record.seq}; nothing removed`);
    (state.held ??= {})[name] = `its upper dir was emptied to make room for full checkpoint ${record.seq} (the disk cannot hold the tree it replaces beside it); it boots once a full checkpoint is staged into it`;
    await this.#o.file.save(state);
    this.#o.log.warn('emptying a twin\'s upper dir to make room for a full checkpoint; the twin is held until it is staged', { container: name, seq: record.seq, upperDir });
    await emptyDir(upperDir);
  }

  /** A changeset refused for what it holds (or declares) is refused for good: remembered, so it is neither fetched
   *  nor validated again, and the container waits for a full checkpoint (its queue goes meanwhile). */
  #refuse(state: AppliedState, name: string, c: ContainerRuntimeState, record: CommitRecord, reason: string): void {
    this.#o.metrics?.failure('refused');
    this.#o.log.error('changeset refused; this container waits for a full checkpoint', { container: name, seq: record.seq, digest: record.digest, reason });
    this.#refused.refuse(name, record.digest, reason);
    this.#showRefusal(state, name, c, record, reason);
  }

  #showRefusal(state: AppliedState, name: string, c: ContainerRuntimeState, record: CommitRecord, reason: string): void {
    c.refusedCommit = { seq: record.seq, digest: record.digest, reason };
    this.#journal.awaitFull(state, name, `commit ${record.seq} (blob ${record.digest.slice(0, 12)}) refused: ${reason}; waiting for a full checkpoint`);
  }

  /** `work`, or the signal's abort, whichever comes first: an abort stops the download (its request and
   *  validation) soon, not at once, and its file is removed by the caller. */
  async #untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
    if (signal.aborted) {
      work.catch(() => undefined);
      return undefined;
    }
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([work, aborted]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
      work.catch(() => undefined);
    }
  }
}
