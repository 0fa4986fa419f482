// Following the journal of the newest generation: which generation, its head (a conditional GET), the records past
// the read position queued per container, and the cursor a restart resumes from.
//
// A container that waits for a full checkpoint (a refused commit, a gap, or more commits queued than it may hold while
// it could not stage) holds no queue: its deltas are passed over as they are read, since only a full checkpoint can
// move it, and the durable cursor passes them too. Its state says so (AppliedState.awaitFull), in the same save as
// the cursor, so a restart passes them over as well. Its next full checkpoint is queued as usual and ends the wait
// once staged.
import type { Logger } from '../log/logger.js';
import { BucketObjectInvalidError, type Bucket, type CommitRecord, type Generation, type Head } from '../store/index.js';
import type { AppliedState, AppliedStateFile } from './applied-state.js';
import type { ContainerRuntimeState, ContainerStates } from './container-state.js';

export interface JournalFollowerOptions {
  bucket: Bucket;
  log: Logger;
  file: AppliedStateFile;
  /** Look for a newer generation every this many polls. */
  generationCheckEvery: number;
  /** At most this many journal records are read in one poll. */
  maxRecordsPerPoll: number;
  /** A container that cannot stage (blocked, refused, held) keeps at most this many commits queued; past that its
   *  queue is dropped and it waits for its next full checkpoint. Default DEFAULT_MAX_QUEUED. */
  maxQueued?: number;
}

/** Commit records a container that cannot stage may keep queued (some 700 bytes each in memory). */
export const DEFAULT_MAX_QUEUED = 10_000;

/** Whether `c` cannot stage now (blocked, refused, held, being replaced): what its queue's length is held against. A
 *  failure to retry (the bucket, the disk) is not: a container that is only behind catches up, whatever its queue. */
function stalled(c: ContainerRuntimeState): boolean {
  return c.refused !== null || c.blocked !== null || c.hostProblems.length > 0 || c.restage;
}

/** The publication times of the newest record and the newest full one of the container, for the metrics. */
function notePublished(c: ContainerRuntimeState, record: CommitRecord): void {
  const at = Date.parse(record.publishedAt);
  if (c.lastCommitAt === null || at > c.lastCommitAt) c.lastCommitAt = at;
  if (record.kind === 'full' && (c.lastFullAt === null || at > c.lastFullAt)) c.lastFullAt = at;
}

/** A record naming another spec than the newest one read before: that spec is read (and checked) again. */
function noteSpec(c: ContainerRuntimeState, record: CommitRecord): void {
  if (record.specDigest === undefined) return;
  if (c.namedSpec?.digest !== record.specDigest) c.specStale = true;
  c.namedSpec = { digest: record.specDigest, seq: record.seq, generation: record.generation };
}

export class JournalFollower {
  readonly #o: JournalFollowerOptions;
  readonly #containers: ContainerStates;
  #head: Head | null = null;
  #etag: string | undefined;
  #polls = 0;
  /** Journal read position (in memory); the durable cursor never passes a record still queued. */
  #readSeq = 0;
  /** Journal seqs that were missing or did not parse, reported until every container has staged past them. */
  readonly #problems = new Map<number, string>();
  /** The waits for a full checkpoint a restart found in the state are shown (once, at the first read). */
  #shownWaits = false;

  constructor(opts: JournalFollowerOptions, containers: ContainerStates) {
    this.#o = opts;
    this.#containers = containers;
  }

  /** Resume reading after the durable cursor (at open). */
  resumeFrom(cursor: number): void {
    this.#readSeq = cursor;
  }

  latestSeq(name: string): number | null {
    return this.#head?.containers[name] ?? null;
  }

  /** When the head last read was written (epoch ms), or null. */
  headUpdatedAt(): number | null {
    return this.#head === null ? null : Date.parse(this.#head.updatedAt);
  }

  /** Switches to the newest generation when one appeared (checked every few polls; always while following none). */
  async followNewestGeneration(state: AppliedState, halted: () => boolean = () => false): Promise<void> {
    if (state.generation !== 0 && this.#polls++ % this.#o.generationCheckEvery !== 0) return;
    // Probing upward from the followed generation costs two small GETs, however many generations the bucket keeps.
    const newest = await this.#o.bucket.newestGenerationFrom(state.generation as Generation);
    // A finalize began while the probe waited: the generation it reported on is the one the twins boot from.
    if (newest <= state.generation || halted()) return;
    this.#o.log.info('following new generation', { from: state.generation, to: newest });
    state.generation = newest;
    state.cursor = 0;
    this.#readSeq = 0;
    this.#head = null;
    this.#etag = undefined;
    this.#problems.clear();
    for (const c of this.#containers.values()) {
      c.queue = [];
      c.gap = null;
    }
    await this.#o.file.save(state);
  }

  /** Reads the head (conditionally) and queues the records it announces; true when the head moved. `pastHead`
   *  (finalize) lists the journal beyond the head too: a record whose head write failed is in the bucket all the
   *  same, and a promotion must not leave it behind. */
  async readNew(state: AppliedState, pastHead = false): Promise<boolean> {
    if (!this.#shownWaits) {
      this.#shownWaits = true;
      for (const [name, why] of Object.entries(state.awaitFull ?? {})) this.#containers.get(name).blocked ??= why;
    }
    const head = await this.#o.bucket.readHead(state.generation as Generation, this.#etag);
    if (head.status === 'ok') {
      this.#head = head.head;
      this.#etag = head.etag;
    }
    if (pastHead) await this.#readJournal(state, Number.MAX_SAFE_INTEGER);
    else if (this.#head && this.#head.seq > this.#readSeq) await this.#readJournal(state, this.#head.seq);
    return head.status === 'ok';
  }

  async #readJournal(state: AppliedState, headSeq: number): Promise<void> {
    let read = 0;
    for await (const item of this.#o.bucket.listRecords(state.generation as Generation, this.#readSeq)) {
      if (item.seq > headSeq || read++ >= this.#o.maxRecordsPerPoll) break;
      if ('error' in item) {
        // We cannot tell whose record is missing; each container's parent chain stops the one it belongs to.
        this.#o.log.error('journal gap or unreadable record', { seq: item.seq, generation: state.generation, reason: item.error });
        this.#problems.set(item.seq, item.error);
      } else {
        const name = item.record.container;
        const c = this.#containers.get(name);
        noteSpec(c, item.record);
        notePublished(c, item.record);
        if (item.record.kind === 'full') {
          c.queue = [];
          c.specStale = true;
          // What it waited for is here: not stalled until staging it says otherwise.
          if (c.blocked !== null && c.blocked === state.awaitFull?.[name]) c.blocked = null;
        } else if (c.queue.length === 0 && state.awaitFull?.[name] !== undefined) {
          // Only a full checkpoint can move it: this delta is passed over (and the cursor with it).
          this.#readSeq = item.seq;
          continue;
        }
        c.queue.push(item.record);
        this.#bound(state, name, c);
      }
      this.#readSeq = item.seq;
    }
  }

  /** A queue that cannot drain is dropped past the bound: its container then waits for its next full checkpoint. */
  #bound(state: AppliedState, name: string, c: ContainerRuntimeState): void {
    const max = this.#o.maxQueued ?? DEFAULT_MAX_QUEUED;
    if (c.queue.length <= max || !stalled(c)) return;
    const why = c.refused ?? c.blocked ?? c.hostProblems[0]?.problem ?? 'its twin is being replaced';
    this.awaitFull(state, name, `more than ${max} commits were queued while it could not stage (${why}); they were dropped: waiting for a full checkpoint`);
  }

  /** Only a full checkpoint can move `name` now (a refused commit, a gap, a queue past its bound): its queue goes,
   *  its deltas are passed over from here on, and the durable cursor no longer waits for them. Kept in the state
   *  (saved with the next cursor) until a full checkpoint of it is staged. */
  awaitFull(state: AppliedState, name: string, reason: string): void {
    const c = this.#containers.get(name);
    const before = state.awaitFull?.[name];
    (state.awaitFull ??= {})[name] = reason;
    // A full checkpoint still queued (read after the commit that failed) is not passed over.
    const next = c.queue.findIndex((r) => r.kind === 'full' && r !== c.queue[0]);
    c.queue = next < 0 ? [] : c.queue.slice(next);
    c.gap = null;
    c.blocked = reason;
    if (before !== reason) this.#o.log.error('this container waits for a full checkpoint; its deltas are passed over until one is staged', { container: name, reason });
  }

  /** A full checkpoint of `name` was staged: its deltas are followed again. */
  fullStaged(state: AppliedState, name: string): void {
    if (state.awaitFull?.[name] === undefined) return;
    delete state.awaitFull[name];
    if (Object.keys(state.awaitFull).length === 0) delete state.awaitFull;
  }

  /** Rebuilds the queues of `names` from the journal up to what was read (a full commit resets a queue), drops their
   *  applied seqs and saves: their twins start from an empty upper dir. A crash before the save detects it again. */
  async requeue(state: AppliedState, names: string[], halted: () => boolean = () => false): Promise<void> {
    const queues = new Map<string, CommitRecord[]>(names.map((n) => [n, []]));
    if (state.generation !== 0 && this.#readSeq > 0) {
      for await (const item of this.#o.bucket.listRecords(state.generation as Generation, 0)) {
        if (item.seq > this.#readSeq) break;
        if (!('record' in item)) continue;
        const q = queues.get(item.record.container);
        if (q === undefined) continue;
        if (item.record.kind === 'full') q.length = 0;
        q.push(item.record);
        noteSpec(this.#containers.get(item.record.container), item.record);
        notePublished(this.#containers.get(item.record.container), item.record);
      }
    }
    const max = this.#o.maxQueued ?? DEFAULT_MAX_QUEUED;
    // The listing may have waited on the bucket while a finalize began: the applied state it reported on stays.
    if (halted()) return;
    for (const [name, q] of queues) {
      const c = this.#containers.get(name);
      c.queue = q;
      c.gap = null;
      c.blocked = null;
      c.restage = false;
      delete state.containers[name];
      // Its twin starts from an empty upper dir: only its last full checkpoint and what follows can fill it.
      if (q.length > max) this.awaitFull(state, name, `more than ${max} commits since its last full checkpoint to restage from; waiting for the next one`);
    }
    state.cursor = this.durableCursor();
    await this.#o.file.save(state);
  }

  /** Every record at or below this seq is staged or not ours to stage; a restart re-reads from here. */
  durableCursor(): number {
    let cursor = this.#readSeq;
    for (const c of this.#containers.values()) {
      const first = c.queue[0];
      if (first && first.seq - 1 < cursor) cursor = first.seq - 1;
    }
    return cursor;
  }

  /** What the record at `record.parentSeq` is, for the operator: missing, unparsable, another container's, unstaged. */
  async explainParent(record: CommitRecord, name: string): Promise<string> {
    const p = record.parentSeq;
    if (p === 0) return 'it is the first record of this container in the generation but is not a full commit';
    const known = this.#problems.get(p);
    if (known !== undefined) return `record ${p} is unusable: ${known}`;
    try {
      const parent = await this.#o.bucket.readRecord(record.generation, p);
      if (parent === null) return `record ${p} is missing from the bucket`;
      if (parent.container !== name) return `record ${p} belongs to container ${parent.container}, not ${name}`;
      return `record ${p} of ${name} was not staged`;
    } catch (err) {
      if (err instanceof BucketObjectInvalidError) return `record ${p} is unusable: ${err.message}`;
      return `record ${p} could not be read: ${(err as Error).message}`;
    }
  }

  /** A journal problem stays reported until every container has staged past it (then nobody can still need it). */
  alert(stagedSeq: (name: string) => number): string | null {
    for (const seq of [...this.#problems.keys()]) {
      if (this.#containers.names().every((n) => stagedSeq(n) > seq)) this.#problems.delete(seq);
    }
    const first = [...this.#problems.entries()].sort((a, b) => a[0] - b[0])[0];
    if (first === undefined) return null;
    const more = this.#problems.size > 1 ? ` (and ${this.#problems.size - 1} more)` : '';
    return `journal seq ${first[0]}: ${first[1]}${more}; staging stops for the container it belonged to`;
  }
}
