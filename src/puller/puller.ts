// The standby's daemon: follows the newest generation's journal, fetches and verifies each changeset and stages
// it into the stopped twin's upper dir, recording the staged seq durably. On promotion it finalizes and boots.
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import PQueue from 'p-queue';
import { ChangesetRejectedError, stageChangeset } from '../changeset/index.js';
import { twinSpecSchema, type DockerRuntime, type TwinSpec, type TwinState } from '../docker/index.js';
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { BucketObjectInvalidError, ObjectTooLargeError, type Bucket, type CommitRecord, type Generation, type Head } from '../store/index.js';
import { AppliedStateFile, type AppliedState } from './applied-state.js';
import type { ContainerStatus, FinalizeReport, StartReport, StatusReport } from './reports.js';

export interface PullerOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  group: string;
  stateDir: string;
  pollIntervalMs: number;
  downloadConcurrency: number;
  startConcurrency: number;
  /** Look for a newer generation every this many polls (fencing a stale primary). */
  generationCheckEvery?: number;
  /** Check every twin (create missing ones, notice replaced ones) every this many polls, and whenever the head
   *  moved. Staging checks its own twin right before writing, so this only bounds how soon a removed twin comes back. */
  twinCheckEvery?: number;
  /** At most this many journal records are read in one poll. */
  maxRecordsPerPoll?: number;
}

export interface PollReport {
  ms: number;
  bucketReachable: boolean;
  staged: number;
  timedOut: boolean;
  error: string | null;
}

interface ContainerRuntimeState {
  queue: CommitRecord[];
  /** Why staging stopped for this container (a journal gap, a running twin); null when flowing. */
  blocked: string | null;
  /** Why this container is not replicated at all (no or bad spec, a same-named container that is not its twin or
   *  runs another image, image absent); examined again every poll so an operator's fix is picked up. */
  refused: string | null;
  /** The parsed spec.json; re-read while the container is refused. */
  spec: TwinSpec | null;
  twin: ContainerStatus['twin'];
  lastError: string | null;
  /** The twin is not the container the applied seq describes (removed and recreated): rebuild its queue. */
  restage: boolean;
  /** The explained gap at the queue head: looked up once per blocked record, not once per poll. */
  gap: { seq: number; reason: string } | null;
}

/** A container that cannot be replicated because of its spec (not a fault of the poll). */
class TwinRefusal extends TwinlayerError {
  constructor(reason: string) {
    super('TWIN_SPEC_REFUSED', reason, {});
  }
}

export class Puller {
  #o: PullerOptions;
  #file: AppliedStateFile;
  #state: AppliedState | null = null;
  #lock: StateLock | null = null;
  #head: Head | null = null;
  #etag: string | undefined;
  #containers = new Map<string, ContainerRuntimeState>();
  #polls = 0;
  #pollsSinceTwinCheck = 0;
  /** Journal read position (in memory); the durable cursor never passes a record still queued. */
  #readSeq = 0;
  #loop: Promise<void> | null = null;
  #inFlight: Promise<PollReport> | null = null;
  #paused = false;
  #stopped = false;
  #wake: (() => void) | null = null;
  #lastPollAt: number | null = null;
  #lastError: string | null = null;
  #role: 'standby' | 'promoting' | 'master' = 'standby';
  #blobDir: string;
  /** Journal seqs that were missing or did not parse, reported until every container has staged past them. */
  #journalProblems = new Map<number, string>();
  /** stageChangeset calls in progress; startTwins waits for these, not for a poll stuck on the network. */
  #stagings = new Set<Promise<unknown>>();
  /** Set by startTwins: no staging starts any more (the twins now own their layers). */
  #twinsStarting = false;

  constructor(opts: PullerOptions) {
    this.#o = opts;
    this.#file = new AppliedStateFile(opts.stateDir, opts.group);
    this.#blobDir = join(opts.stateDir, 'pull', opts.group, 'blobs');
  }

  /** Takes the state-dir lock, loads the staged state and checks the engine; does not poll yet. */
  async open(): Promise<void> {
    this.#lock = await acquireStateLock(join(this.#o.stateDir, 'pull'), `puller-${this.#o.group}`);
    try {
      this.#state = await this.#file.load(this.#o.group);
      this.#readSeq = this.#state.cursor;
      await this.#o.runtime.checkEngine();
      await rm(this.#blobDir, { recursive: true, force: true });
      await mkdir(this.#blobDir, { recursive: true });
    } catch (err) {
      await this.#lock.release();
      this.#lock = null;
      throw err;
    }
  }

  /** Polls until stop(); each poll is bounded and errors only delay the next one. */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (!this.#paused) await this.pollOnce();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#o.pollIntervalMs);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** One poll: head, new records, stage what can be staged. Concurrent callers share the poll in flight. */
  async pollOnce(signal?: AbortSignal): Promise<PollReport> {
    while (this.#inFlight) await this.#inFlight;
    this.#inFlight = this.#poll(signal ?? new AbortController().signal).finally(() => {
      this.#inFlight = null;
    });
    return this.#inFlight;
  }

  async #poll(signal: AbortSignal): Promise<PollReport> {
    const started = Date.now();
    const state = this.#requireState();
    let staged = 0;
    try {
      await this.#followNewestGeneration(state);
      if (state.generation === 0) {
        // No commit yet, but specs may be there: twins exist before the first change.
        if (this.#twinCheckDue(false)) await this.#ensureTwins(state);
        return this.#report(started, true, 0, signal, null);
      }
      const head = await this.#o.bucket.readHead(state.generation as Generation, this.#etag);
      if (head.status === 'ok') {
        this.#head = head.head;
        this.#etag = head.etag;
      }
      if (this.#head && this.#head.seq > this.#readSeq) await this.#readJournal(state, this.#head.seq);
      // An idle standby must stay cheap: listing specs and inspecting every twin on each poll cost 18 CPU-seconds
      // in 30 s with 40 twins at a 20 ms poll.
      if (this.#twinCheckDue(head.status === 'ok')) await this.#ensureTwins(state);
      staged = await this.#stageQueues(state, signal);
      this.#lastPollAt = Date.now();
      this.#lastError = null;
      return this.#report(started, true, staged, signal, null);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#o.log.warn('poll failed', { err });
      return this.#report(started, false, staged, signal, this.#lastError);
    }
  }

  #twinCheckDue(headMoved: boolean): boolean {
    const every = this.#o.twinCheckEvery ?? 20;
    const due = headMoved || this.#pollsSinceTwinCheck === 0 || this.#pollsSinceTwinCheck >= every;
    this.#pollsSinceTwinCheck = due ? 1 : this.#pollsSinceTwinCheck + 1;
    return due;
  }

  #report(started: number, reachable: boolean, staged: number, signal: AbortSignal, error: string | null): PollReport {
    return { ms: Date.now() - started, bucketReachable: reachable, staged, timedOut: signal.aborted, error };
  }

  async #followNewestGeneration(state: AppliedState): Promise<void> {
    const every = this.#o.generationCheckEvery ?? 20;
    if (state.generation !== 0 && this.#polls++ % every !== 0) return;
    const newest = (await this.#o.bucket.listGenerations()).at(-1);
    if (newest === undefined || newest <= state.generation) return;
    this.#o.log.info('following new generation', { from: state.generation, to: newest });
    state.generation = newest;
    state.cursor = 0;
    this.#readSeq = 0;
    this.#head = null;
    this.#etag = undefined;
    this.#journalProblems.clear();
    for (const c of this.#containers.values()) {
      c.queue = [];
      c.gap = null;
    }
    await this.#file.save(state);
  }

  async #readJournal(state: AppliedState, headSeq: number): Promise<void> {
    const max = this.#o.maxRecordsPerPoll ?? 10_000;
    let read = 0;
    for await (const item of this.#o.bucket.listRecords(state.generation as Generation, this.#readSeq)) {
      if (item.seq > headSeq || read++ >= max) break;
      if ('error' in item) {
        // We cannot tell whose record is missing; each container's parent chain stops the one it belongs to.
        this.#o.log.error('journal gap or unreadable record', { seq: item.seq, generation: state.generation, reason: item.error });
        this.#journalProblems.set(item.seq, item.error);
      } else {
        const c = this.#container(item.record.container);
        if (item.record.kind === 'full') c.queue = [];
        c.queue.push(item.record);
      }
      this.#readSeq = item.seq;
    }
  }

  #container(name: string): ContainerRuntimeState {
    let c = this.#containers.get(name);
    if (!c) {
      c = { queue: [], blocked: null, refused: null, spec: null, twin: 'absent', lastError: null, restage: false, gap: null };
      this.#containers.set(name, c);
    }
    return c;
  }

  /**
   * Every poll, for every container with a spec: its twin exists (created from the spec when absent, e.g. after a
   * `docker rm`), is a twin, runs the spec's image, and is the container the applied seq describes. A recreated
   * twin has an empty upper dir, so its applied seq is dropped and its queue rebuilt from the journal (from the last
   * full commit). One inspect per container per poll; spec.json is read again only while a container is refused.
   */
  async #ensureTwins(state: AppliedState): Promise<void> {
    const names = new Set([...(await this.#o.bucket.listSpecNames()), ...this.#containers.keys()]);
    for (const name of names) {
      const c = this.#container(name);
      try {
        c.spec ??= await this.#readSpec(name);
        const twin = await this.#o.runtime.ensureTwin(c.spec);
        c.refused = null;
        c.twin = twin.state;
        if (twin.state !== 'absent') this.#checkTwinId(state, name, c, twin.id);
      } catch (err) {
        // Refusals and Docker failures stop this container only; bucket failures fail the poll.
        if (!(err instanceof TwinRefusal) && !(err instanceof TwinlayerError && err.code.startsWith('DOCKER_'))) throw err;
        const reason = err.message;
        if (c.refused !== reason) this.#o.log.error('twin refused; this container is not replicated', { container: name, err });
        c.twin = 'refused';
        c.refused = reason;
        c.spec = null;
      }
    }
    const restage = [...this.#containers.entries()].filter(([, c]) => c.restage).map(([n]) => n);
    if (restage.length > 0) await this.#requeue(state, restage);
  }

  async #readSpec(name: string): Promise<TwinSpec> {
    let raw: unknown;
    try {
      raw = await this.#o.bucket.getSpec(name);
    } catch (err) {
      // A spec that does not parse refuses its own container, not the whole poll.
      if (err instanceof BucketObjectInvalidError || err instanceof ObjectTooLargeError) throw new TwinRefusal(`spec.json of ${name}: ${err.message}`);
      throw err;
    }
    if (raw === undefined) throw new TwinRefusal(`no spec.json for ${name} in the bucket`);
    const spec = twinSpecSchema.safeParse(raw);
    if (!spec.success) throw new TwinRefusal(`spec.json of ${name} is invalid: ${spec.error.issues[0]?.message ?? 'invalid'}`);
    if (spec.data.name !== name) throw new TwinRefusal(`spec.json of ${name} names another container (${JSON.stringify(spec.data.name)})`);
    return spec.data;
  }

  /** Marks the container for restaging when its twin is not the container its applied seq was staged into. */
  #checkTwinId(state: AppliedState, name: string, c: ContainerRuntimeState, id: string): void {
    const applied = state.containers[name];
    if (applied === undefined) return;
    if (applied.twinId === undefined) {
      // A state file from before twin ids were recorded: adopt the twin we find (saved with the next commit).
      applied.twinId = id;
      return;
    }
    if (applied.twinId !== id && !c.restage) {
      this.#o.log.warn('twin was replaced; its applied seq no longer describes it, restaging from the journal', { container: name, stagedSeq: applied.seq, oldTwin: applied.twinId, newTwin: id });
      c.restage = true;
    }
  }

  /** Rebuilds the queues of `names` from the journal up to what was read (a full commit resets a queue), drops their
   *  applied seqs and saves: their twins start from an empty upper dir. A crash before the save detects it again. */
  async #requeue(state: AppliedState, names: string[]): Promise<void> {
    const queues = new Map<string, CommitRecord[]>(names.map((n) => [n, []]));
    if (state.generation !== 0 && this.#readSeq > 0) {
      for await (const item of this.#o.bucket.listRecords(state.generation as Generation, 0)) {
        if (item.seq > this.#readSeq) break;
        if (!('record' in item)) continue;
        const q = queues.get(item.record.container);
        if (q === undefined) continue;
        if (item.record.kind === 'full') q.length = 0;
        q.push(item.record);
      }
    }
    for (const [name, q] of queues) {
      const c = this.#container(name);
      c.queue = q;
      c.gap = null;
      c.blocked = null;
      c.restage = false;
      delete state.containers[name];
    }
    state.cursor = this.#durableCursor();
    await this.#file.save(state);
  }

  async #stageQueues(state: AppliedState, signal: AbortSignal): Promise<number> {
    const queue = new PQueue({ concurrency: this.#o.downloadConcurrency });
    let staged = 0;
    const jobs = [...this.#containers.entries()]
      .filter(([, c]) => c.queue.length > 0 && c.refused === null && !c.restage)
      .map(([name, c]) => queue.add(async () => {
        staged += await this.#stageContainer(state, name, c, signal);
      }));
    await Promise.all(jobs);
    return staged;
  }

  async #stageContainer(state: AppliedState, name: string, c: ContainerRuntimeState, signal: AbortSignal): Promise<number> {
    let staged = 0;
    while (c.queue.length > 0 && !signal.aborted && !this.#twinsStarting) {
      const record = c.queue[0]!;
      const applied = state.containers[name];
      const appliedSeq = applied && applied.generation === record.generation ? applied.seq : null;
      if (appliedSeq !== null && appliedSeq >= record.seq) {
        c.queue.shift();
        continue;
      }
      if (record.kind !== 'full' && appliedSeq !== record.parentSeq) {
        if (c.gap?.seq !== record.seq) {
          const why = await this.#explainParent(record, name);
          c.gap = { seq: record.seq, reason: `journal gap: record ${record.seq} follows ${record.parentSeq}, staged is ${appliedSeq ?? 'nothing'} of generation ${record.generation}; ${why}; waiting for a full checkpoint` };
          this.#o.log.error('staging stopped at a gap', { container: name, seq: record.seq, parentSeq: record.parentSeq, stagedSeq: appliedSeq, reason: why });
        }
        c.blocked = c.gap.reason;
        return staged;
      }
      const twin = await this.#o.runtime.twinState(name);
      if (twin.state === 'absent' || !this.#stageable(twin)) {
        // A twin removed since the last check is recreated by the next poll.
        if (twin.state === 'absent') this.#pollsSinceTwinCheck = 0;
        c.blocked = twin.state === 'absent' ? 'twin absent' : 'twin is running or mounted; staging paused';
        c.twin = twin.state;
        return staged;
      }
      // Defence in depth: never write into a container that is not this spec's twin, or another twin than the one
      // the applied seq describes (ensureTwins checks both at the start of the poll; the engine may change since).
      if (!twin.isTwin || twin.imageId !== c.spec?.imageId) {
        c.blocked = `container ${name} is not a twin of image ${c.spec?.imageId ?? '(no spec)'}; nothing staged`;
        return staged;
      }
      if (applied?.twinId !== undefined && applied.twinId !== twin.id) {
        c.restage = true;
        c.blocked = 'twin was replaced; restaging from the journal';
        return staged;
      }
      const blob = join(this.#blobDir, `${record.digest}.${record.seq}`);
      try {
        await this.#download(record, blob, signal);
        if (signal.aborted) break;
        if (signal.aborted || this.#twinsStarting) break;
        const staging = stageChangeset(blob, record.kind, { upperDir: twin.layers.upperDir, tmpDir: join(dirname(twin.layers.upperDir), 'twinlayer-tmp') }, { log: this.#o.log.child({ container: name }) });
        this.#stagings.add(staging);
        try {
          await staging;
        } finally {
          this.#stagings.delete(staging);
        }
        const after = await this.#o.runtime.twinState(name);
        if (!this.#stageable(after)) throw new Error(`twin ${name} started while a commit was being staged; restaging later`);
        state.containers[name] = { generation: record.generation, seq: record.seq, digest: record.digest, stagedAt: new Date().toISOString(), twinId: twin.id };
        c.queue.shift();
        c.gap = null;
        state.cursor = this.#durableCursor();
        await this.#file.save(state);
        c.blocked = null;
        c.lastError = null;
        staged++;
        this.#o.log.debug('staged', { container: name, seq: record.seq, kind: record.kind });
      } catch (err) {
        c.lastError = (err as Error).message;
        const level = err instanceof ChangesetRejectedError ? 'error' : 'warn';
        this.#o.log[level]('staging failed; the staged seq did not move', { container: name, seq: record.seq, err });
        return staged;
      } finally {
        await rm(blob, { force: true });
      }
    }
    return staged;
  }

  /** What the record at `record.parentSeq` is, for the operator: missing, unparsable, another container's, unstaged. */
  async #explainParent(record: CommitRecord, name: string): Promise<string> {
    const p = record.parentSeq;
    if (p === 0) return 'it is the first record of this container in the generation but is not a full commit';
    const known = this.#journalProblems.get(p);
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
  #journalAlert(): string | null {
    const state = this.#state;
    for (const seq of [...this.#journalProblems.keys()]) {
      const passed = [...this.#containers.keys()].every((n) => this.#stagedSeq(n) > seq);
      if (passed && state !== null) this.#journalProblems.delete(seq);
    }
    const first = [...this.#journalProblems.entries()].sort((a, b) => a[0] - b[0])[0];
    if (first === undefined) return null;
    const more = this.#journalProblems.size > 1 ? ` (and ${this.#journalProblems.size - 1} more)` : '';
    return `journal seq ${first[0]}: ${first[1]}${more}; staging stops for the container it belonged to`;
  }

  /** Every record at or below this seq is staged or not ours to stage; a restart re-reads from here. */
  #durableCursor(): number {
    let cursor = this.#readSeq;
    for (const c of this.#containers.values()) {
      const first = c.queue[0];
      if (first && first.seq - 1 < cursor) cursor = first.seq - 1;
    }
    return cursor;
  }

  #stageable(twin: TwinState): boolean {
    return twin.state === 'stopped' && !twin.mounted;
  }

  async #download(record: CommitRecord, file: string, signal: AbortSignal): Promise<void> {
    const download = this.#o.bucket.downloadBlob(record.digest, record.size, file);
    if (signal.aborted) return;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<void>((resolve) => {
      onAbort = resolve;
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await Promise.race([download, aborted]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
      // A download overtaken by the deadline finishes in the background; its file is removed by the caller.
      download.catch(() => undefined);
    }
  }

  /** Pauses polling, then stages what is newer within deadlineMs; on bucket failure goes on with what is staged.
   *  Returns at the deadline even when a bucket request hangs (after any commit being staged right then is done):
   *  the poll goes on in the background but stages nothing more once aborted. */
  async finalize(deadlineMs: number): Promise<FinalizeReport> {
    const started = Date.now();
    this.#paused = true;
    this.#role = 'promoting';
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<null>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve(null);
      }, deadlineMs);
    });
    const poll = this.pollOnce(controller.signal);
    let report: PollReport | null;
    try {
      report = await Promise.race([poll, deadline]);
      // At the deadline: a poll that is only finishing a commit returns right after it; one waiting on the bucket does not.
      if (report === null) report = await Promise.race([poll, this.#stagingsDone().then(() => null)]);
    } finally {
      clearTimeout(timer);
    }
    if (report === null) {
      this.#lastError = `the bucket did not answer within the ${deadlineMs} ms finalize deadline; going on with what is staged`;
      this.#o.log.warn('finalize deadline passed while waiting for the bucket', { deadlineMs });
      report = { ms: Date.now() - started, bucketReachable: false, staged: 0, timedOut: true, error: this.#lastError };
    }
    const containers = [...this.#containers.keys()].sort().map((name) => {
      const c = this.#containers.get(name)!;
      const error = c.refused ?? c.blocked ?? c.lastError ?? undefined;
      return { name, stagedSeq: this.#stagedSeq(name), latestSeq: this.#latestSeq(name), ...(error ? { error } : {}) };
    });
    return { ms: Date.now() - started, bucketReachable: report.bucketReachable, timedOut: report.timedOut, containers };
  }

  async #stagingsDone(): Promise<void> {
    while (this.#stagings.size > 0) await Promise.allSettled([...this.#stagings]);
  }

  /** Starts every twin in parallel with bounded concurrency; polling stays paused (the twins now own their layers). */
  async startTwins(): Promise<StartReport> {
    const started = Date.now();
    this.#paused = true;
    // No staging starts from here on; one in progress finishes first. A poll stuck on the bucket is not waited for.
    this.#twinsStarting = true;
    await this.#stagingsDone();
    const names = [...this.#containers.entries()].filter(([, c]) => c.twin === 'stopped' || c.twin === 'running').map(([n]) => n).sort();
    const results = await this.#o.runtime.startContainers(names, this.#o.startConcurrency);
    for (const r of results) if (r.ok) this.#container(r.name).twin = 'running';
    this.#role = 'master';
    return { ms: Date.now() - started, containers: results };
  }

  #stagedSeq(name: string): number {
    const s = this.#state?.containers[name];
    return s && s.generation === this.#state?.generation ? s.seq : 0;
  }

  #latestSeq(name: string): number | null {
    return this.#head?.containers[name] ?? null;
  }

  async status(): Promise<StatusReport> {
    const containers = [...this.#containers.keys()].sort().map((name): ContainerStatus => {
      const c = this.#containers.get(name)!;
      const latest = this.#latestSeq(name);
      const stagedSeq = this.#stagedSeq(name);
      const reason = c.refused ?? c.blocked ?? c.lastError;
      return { name, latestSeq: latest, stagedSeq, lag: latest === null ? null : Math.max(0, latest - stagedSeq), twin: c.twin, ...(reason ? { reason } : {}) };
    });
    return Promise.resolve({
      role: this.#role,
      generation: this.#state?.generation || null,
      containers,
      lastPollAt: this.#lastPollAt === null ? null : new Date(this.#lastPollAt).toISOString(),
      lastError: this.#lastError ?? this.#journalAlert(),
    });
  }

  #requireState(): AppliedState {
    if (!this.#state) throw new Error('puller not opened');
    return this.#state;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
    while (this.#inFlight) await this.#inFlight.catch(() => undefined);
    await this.#lock?.release();
    this.#lock = null;
  }
}
