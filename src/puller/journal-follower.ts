// Following the journal of the newest generation: which generation, its head (a conditional GET), the records past
// the read position queued per container, and the cursor a restart resumes from.
//
// A container that waits for a full checkpoint (a refused commit, a gap, or more commits queued than it may hold while
// it could not stage) holds no queue: its deltas are passed over as they are read, since only a full checkpoint can
// move it, and the durable cursor passes them too. Its state says so (AppliedState.awaitFull), in the same save as
// the cursor, so a restart passes them over as well. Its next full checkpoint is queued as usual and ends the wait
// once staged.
//
// A container this host starts from nothing (a new standby, a replaced twin) needs only its newest full checkpoint and
// what follows: the head names that checkpoint per container (Head.lastFull), and the journal is read from there, not
// from seq 1. The head is untrusted: the record it names is read first, and unless it is a full commit of that
// container the container's journal is read from the start of the generation, as before, and the log and the status
// say so.
import type { Logger } from '../log/logger.js';
import { asSeq, BucketObjectInvalidError, gapPassedBy, headClearsGap, type Bucket, type CommitRecord, type Generation, type Head, type JournalItem, type Seq } from '../store/index.js';
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

/** A head announcing at most this many records past the read position has them read by key, without a listing. */
const DIRECT_READ_MAX = 16;

/** The full checkpoints a head names are checked this many at a time (one small GET each). */
const CHECK_CONCURRENCY = 8;

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

/** When a record was read, for the standby's per-commit timings (performance.now() ms). */
export interface RecordReadTimes {
  /** The head GET that announced it: its start and its answer. */
  headAt: number;
  headMs: number;
  /** Its record (and any listing) read, after the head. */
  recordMs: number;
  /** This host's clock at the head's answer minus the record's publishedAt (the primary's clock): how long the
   *  commit was in the bucket before this host saw it, as far as the two clocks agree. */
  publishedToSeenMs: number;
}

export class JournalFollower {
  readonly #o: JournalFollowerOptions;
  /** Each record queued by this process, when it was read (dropped with the record). */
  readonly #readTimes = new WeakMap<CommitRecord, RecordReadTimes>();
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
  /** Per container started from nothing: its records below this seq are passed over, superseded by the full
   *  checkpoint at this seq (read and checked). */
  readonly #skipBelow = new Map<string, number>();
  /** Where to start reading the followed generation was decided from a head (once per generation and process). */
  #planned = false;
  /** Runs of missing journal seqs not judged yet: `open` holds the containers that may still need them (judged by
   *  their next record). None left: retired by retention, not reported. */
  #pendingGaps: Array<{ from: number; to: number; open: Set<string>; reason: string; generation: number; lost?: true }> = [];

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

  /** The containers the head read last names. */
  headNames(): string[] {
    return Object.keys(this.#head?.containers ?? {});
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
    this.#planned = false;
    this.#skipBelow.clear();
    this.#problems.clear();
    this.#pendingGaps = [];
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
    const headAt = performance.now();
    const head = await this.#o.bucket.readHead(state.generation as Generation, this.#etag);
    const headMs = performance.now() - headAt;
    const seenAt = Date.now();
    if (head.status === 'ok') {
      this.#head = head.head;
      this.#etag = head.etag;
    }
    if (!this.#planned && this.#head !== null) {
      await this.#planStart(state, this.#head);
      this.#planned = true;
    }
    const queued: CommitRecord[] = [];
    if (pastHead) await this.#readJournal(state, Number.MAX_SAFE_INTEGER, queued);
    else if (this.#head && this.#head.seq > this.#readSeq) await this.#readJournal(state, this.#head.seq, queued);
    const recordMs = performance.now() - headAt - headMs;
    for (const r of queued) {
      this.#readTimes.set(r, { headAt, headMs: Math.round(headMs), recordMs: Math.round(recordMs), publishedToSeenMs: seenAt - Date.parse(r.publishedAt) });
    }
    return head.status === 'ok';
  }

  /** When `record` was read by this process, or undefined (read before a restart, or not through readNew). */
  readTimes(record: CommitRecord): RecordReadTimes | undefined {
    return this.#readTimes.get(record);
  }

  /**
   * The first read of a generation: every container this host holds nothing of in it starts at the full checkpoint
   * the head names (checked), the others after what they staged; the journal is read from the lowest of these. Never
   * past the durable cursor's records still needed: a container whose checkpoint cannot be used keeps the start at
   * the cursor.
   */
  async #planStart(state: AppliedState, head: Head): Promise<void> {
    const g = state.generation as Generation;
    const names = Object.keys(head.containers).sort();
    if (names.length === 0) return;
    if (head.lastFull === undefined) {
      this.#o.log.info('the head names no full checkpoints (written by an older version): the journal is read from the cursor', { generation: g, cursor: this.#readSeq });
      return;
    }
    const starts = new Map<string, number>();
    // Every container staged in this generation, also one a head does not name (no head of this writer leaves one
    // out; a forged one might): its records after what it staged are read.
    for (const [name, applied] of Object.entries(state.containers)) if (applied.generation === g) starts.set(name, applied.seq);
    const fresh = names.filter((name) => !starts.has(name));
    const fulls = await this.#checkedFulls(g, fresh, head);
    for (const name of fresh) {
      const full = fulls.get(name);
      if (full === undefined) {
        starts.set(name, 0);
        continue;
      }
      this.#skipBelow.set(name, full);
      starts.set(name, full - 1);
    }
    const start = Math.min(...starts.values());
    if (start <= this.#readSeq) return;
    this.#o.log.info('journal read from the newest full checkpoints', { generation: g, from: this.#readSeq, to: start, checkpoints: Object.fromEntries(this.#skipBelow) });
    this.#readSeq = start;
  }

  /** The full checkpoints `head` names for `names` that are what it says they are: by container, the seq. */
  async #checkedFulls(g: Generation, names: readonly string[], head: Head): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const queue = [...names];
    const worker = async (): Promise<void> => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        const full = await this.#checkedFull(g, name, head.lastFull?.[name]);
        if (full !== null) out.set(name, full);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, queue.length) }, worker));
    return out;
  }

  /** `seq` when the record there is a full commit of `name` in generation `g`; otherwise null, logged and shown in
   *  the container's status (its journal is then read from the start). A bucket failure fails the poll. */
  async #checkedFull(g: Generation, name: string, seq: number | undefined): Promise<number | null> {
    if (seq === undefined) {
      this.#o.log.debug('the head names no full checkpoint of this container: its journal is read from the start', { container: name, generation: g });
      return null;
    }
    const key = this.#o.bucket.journalKey(g, seq as Seq);
    let why: string | null = null;
    try {
      const rec = await this.#o.bucket.readRecord(g, seq as Seq);
      if (rec === null) why = 'it is missing from the bucket';
      else if (rec.container !== name) why = `it belongs to container ${rec.container}`;
      else if (rec.kind !== 'full') why = 'it is a delta, not a full checkpoint';
    } catch (err) {
      if (!(err instanceof BucketObjectInvalidError)) throw err;
      why = `it is unusable: ${err.message}`;
    }
    if (why === null) return seq;
    const reason = `the head names record ${seq} as the newest full checkpoint of ${name}, but ${why}; its journal is read from the start of generation ${g}`;
    this.#o.log.warn('head names an unusable full checkpoint; reading the container\'s journal from the start', { container: name, generation: g, seq, key, reason: why });
    this.#containers.get(name).lastError = reason;
    return null;
  }

  async #readJournal(state: AppliedState, headSeq: number, queued: CommitRecord[]): Promise<void> {
    const direct = await this.#readAnnounced(state, headSeq);
    if (direct !== null) {
      for (const item of direct) this.#take(state, item, queued);
      return;
    }
    let read = 0;
    for await (const item of this.#o.bucket.listRecords(state.generation as Generation, this.#readSeq)) {
      if (item.seq > headSeq || read++ >= this.#o.maxRecordsPerPoll) break;
      this.#take(state, item, queued);
    }
  }

  /**
   * The few records a head announces past the read position, read by their keys without listing the journal first:
   * the listing is a round trip before the records' GETs, and a standby following a busy primary sees a head move by
   * one or two seqs at a time. Null (the listing reads them) when more are announced than DIRECT_READ_MAX, or when any
   * of them is missing or refused: the listing is what tells a gap, a retired range and a refused record apart.
   */
  async #readAnnounced(state: AppliedState, headSeq: number): Promise<JournalItem[] | null> {
    const count = headSeq - this.#readSeq;
    if (count < 1 || count > Math.min(DIRECT_READ_MAX, this.#o.maxRecordsPerPoll)) return null;
    const g = state.generation as Generation;
    const seqs = Array.from({ length: count }, (_, i) => asSeq(this.#readSeq + 1 + i));
    const records = await Promise.all(seqs.map((s) => this.#o.bucket.readRecord(g, s).catch((err: unknown) => {
      if (err instanceof BucketObjectInvalidError) return null;
      throw err;
    })));
    const items: JournalItem[] = [];
    for (const [i, record] of records.entries()) {
      if (record === null) return null;
      items.push({ seq: seqs[i]!, record });
    }
    return items;
  }

  /** One journal item read past the read position, in seq order: queued for its container, passed over, or noted as
   *  a gap. */
  #take(state: AppliedState, item: JournalItem, queued: CommitRecord[]): void {
    if ('error' in item) {
      const head = this.#head;
      if (item.missingTo !== undefined && head?.lastFull !== undefined) {
        // Perhaps retired by GC (retention): judged once every container the head names is known not to need it.
        const to = item.missingTo;
        const open = new Set(Object.keys(head.containers).filter((name) => !headClearsGap(head, name, item.seq, to)));
        // A container whose last record by the head lies there has no later record to judge by: lost.
        const lastThere = [...open].some((name) => (head.containers[name] ?? 0) >= item.seq && (head.containers[name] ?? 0) <= to);
        if (!lastThere) {
          this.#pendingGaps.push({ from: item.seq, to, open, reason: item.error, generation: state.generation });
          this.#settleGaps();
          this.#readSeq = to;
          return;
        }
      }
      // We cannot tell whose record is missing; each container's parent chain stops the one it belongs to.
      this.#o.log.error('journal gap or unreadable record', { seq: item.seq, generation: state.generation, reason: item.error });
      this.#problems.set(item.seq, item.error);
    } else {
      this.#judgeGaps(item.record);
      const name = item.record.container;
      const c = this.#containers.get(name);
      noteSpec(c, item.record);
      notePublished(c, item.record);
      const skip = this.#skipBelow.get(name);
      if (skip !== undefined && item.seq < skip) {
        // Superseded by the full checkpoint this container starts from.
        this.#readSeq = item.seq;
        return;
      }
      if (skip !== undefined) this.#skipBelow.delete(name);
      if (item.record.kind === 'full') {
        // A checkpoint restating the commit queued last follows it (the stager records it once that one is staged,
        // without staging it again); any other full commit replaces what is queued.
        const last = c.queue[c.queue.length - 1];
        if (item.record.sameAs === undefined || last?.seq !== item.record.sameAs) c.queue = [];
        c.specStale = true;
        // What it waited for is here: not stalled until staging it says otherwise.
        if (c.blocked !== null && c.blocked === state.awaitFull?.[name]) c.blocked = null;
      } else if (c.queue.length === 0 && state.awaitFull?.[name] !== undefined) {
        // Only a full checkpoint can move it: this delta is passed over (and the cursor with it).
        this.#readSeq = item.seq;
        return;
      }
      c.queue.push(item.record);
      queued.push(item.record);
      this.#bound(state, name, c);
    }
    this.#readSeq = item.seq;
  }

  /** A record read after missing seqs tells whether its container needed them: its parentSeq passes over them (not
   *  its records) or lies among them (its record is missing: a gap, reported). */
  #judgeGaps(record: CommitRecord): void {
    for (const gap of this.#pendingGaps) {
      if (!gap.open.has(record.container) || record.seq <= gap.to) continue;
      if (gapPassedBy(record, gap.from, gap.to)) {
        gap.open.delete(record.container);
        continue;
      }
      gap.open.clear();
      gap.lost = true;
      this.#o.log.error('journal gap or unreadable record', { seq: gap.from, generation: gap.generation, reason: gap.reason, container: record.container, parentSeq: record.parentSeq });
      this.#problems.set(gap.from, gap.reason);
    }
    this.#settleGaps();
  }

  /** Missing seqs no container needs are retired by retention: passed over without an alert. */
  #settleGaps(): void {
    for (const gap of this.#pendingGaps) {
      if (gap.open.size > 0 || gap.lost) continue;
      this.#o.log.debug('journal records retired by retention passed over', { from: gap.from, to: gap.to, generation: gap.generation });
    }
    this.#pendingGaps = this.#pendingGaps.filter((g) => g.open.size > 0);
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
    const skips = new Map<string, number>();
    const g = state.generation as Generation;
    if (g !== 0 && this.#readSeq > 0) {
      // Each starts at the full checkpoint the head names (checked), else at the start of the generation.
      const fulls = this.#head === null ? new Map<string, number>() : await this.#checkedFulls(g, names, this.#head);
      const listed: string[] = [];
      for (const name of names) {
        const full = fulls.get(name);
        // Not read yet: nothing of it up to the read position is needed; what comes before it is passed over as read.
        if (full !== undefined && full > this.#readSeq) skips.set(name, full);
        else listed.push(name);
      }
      const after = Math.min(this.#readSeq, ...listed.map((n) => Math.max(0, (fulls.get(n) ?? 1) - 1)));
      for await (const item of listed.length === 0 ? [] : this.#o.bucket.listRecords(g, after)) {
        if (item.seq > this.#readSeq) break;
        if (!('record' in item)) continue;
        const q = queues.get(item.record.container);
        if (q === undefined || !listed.includes(item.record.container) || item.seq < (fulls.get(item.record.container) ?? 0)) continue;
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
      const skip = skips.get(name);
      if (skip === undefined) this.#skipBelow.delete(name);
      else this.#skipBelow.set(name, skip);
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
