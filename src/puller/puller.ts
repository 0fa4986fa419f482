// The standby's daemon: follows the newest generation's journal, fetches and verifies each changeset and stages
// it into the stopped twin's upper dir, recording the staged seq durably. On promotion it finalizes and boots.
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import PQueue from 'p-queue';
import { ChangesetRejectedError, stageChangeset } from '../changeset/index.js';
import { twinSpecSchema, type DockerRuntime, type TwinState } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import type { Bucket, CommitRecord, Generation, Head } from '../store/index.js';
import { AppliedStateFile, type AppliedState } from './applied-state.js';

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
  /** At most this many journal records are read in one poll. */
  maxRecordsPerPoll?: number;
}

export interface ContainerReport {
  name: string;
  latestSeq: number | null;
  stagedSeq: number;
  lag: number | null;
  twin: 'absent' | 'stopped' | 'running' | 'refused';
  reason?: string;
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
  /** Why staging stopped for this container (a journal gap, a refused twin, a running twin); null when flowing. */
  blocked: string | null;
  twin: ContainerReport['twin'];
  lastError: string | null;
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
      if (state.generation === 0) return this.#report(started, true, 0, signal, null);
      const head = await this.#o.bucket.readHead(state.generation as Generation, this.#etag);
      if (head.status === 'ok') {
        this.#head = head.head;
        this.#etag = head.etag;
      }
      if (this.#head && this.#head.seq > this.#readSeq) await this.#readJournal(state, this.#head.seq);
      await this.#ensureTwins();
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
    for (const c of this.#containers.values()) c.queue = [];
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
        this.#lastError = `journal seq ${item.seq}: ${item.error}`;
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
      c = { queue: [], blocked: null, twin: 'absent', lastError: null };
      this.#containers.set(name, c);
    }
    return c;
  }

  /** Creates twins for every spec in the bucket that has none yet. */
  async #ensureTwins(): Promise<void> {
    const names = new Set([...(await this.#o.bucket.listSpecNames()), ...this.#containers.keys()]);
    for (const name of names) {
      const c = this.#container(name);
      if (c.twin !== 'absent') continue;
      const raw = await this.#o.bucket.getSpec(name);
      const spec = twinSpecSchema.safeParse(raw);
      if (!spec.success || spec.data.name !== name) {
        c.twin = 'refused';
        c.blocked = `spec.json of ${name} is invalid: ${spec.success ? 'name differs' : spec.error.issues[0]?.message ?? 'invalid'}`;
        continue;
      }
      try {
        const twin = await this.#o.runtime.ensureTwin(spec.data);
        c.twin = twin.state === 'absent' ? 'absent' : twin.state;
      } catch (err) {
        c.twin = 'refused';
        c.blocked = (err as Error).message;
        this.#o.log.error('twin refused', { container: name, err });
      }
    }
  }

  async #stageQueues(state: AppliedState, signal: AbortSignal): Promise<number> {
    const queue = new PQueue({ concurrency: this.#o.downloadConcurrency });
    let staged = 0;
    const jobs = [...this.#containers.entries()]
      .filter(([, c]) => c.queue.length > 0)
      .map(([name, c]) => queue.add(async () => {
        staged += await this.#stageContainer(state, name, c, signal);
      }));
    await Promise.all(jobs);
    return staged;
  }

  async #stageContainer(state: AppliedState, name: string, c: ContainerRuntimeState, signal: AbortSignal): Promise<number> {
    let staged = 0;
    while (c.queue.length > 0 && !signal.aborted) {
      const record = c.queue[0]!;
      const applied = state.containers[name];
      const appliedSeq = applied && applied.generation === record.generation ? applied.seq : null;
      if (appliedSeq !== null && appliedSeq >= record.seq) {
        c.queue.shift();
        continue;
      }
      if (record.kind !== 'full' && appliedSeq !== record.parentSeq) {
        c.blocked = `journal gap: record ${record.seq} follows ${record.parentSeq}, staged is ${appliedSeq ?? 'nothing'} of generation ${record.generation}; waiting for a full checkpoint`;
        this.#o.log.error('staging stopped at a gap', { container: name, seq: record.seq, parentSeq: record.parentSeq, stagedSeq: appliedSeq });
        return staged;
      }
      const twin = await this.#o.runtime.twinState(name);
      if (twin.state === 'absent' || !this.#stageable(twin)) {
        c.blocked = twin.state === 'absent' ? 'twin absent' : 'twin is running or mounted; staging paused';
        c.twin = twin.state;
        return staged;
      }
      const blob = join(this.#blobDir, `${record.digest}.${record.seq}`);
      try {
        await this.#download(record, blob, signal);
        if (signal.aborted) break;
        await stageChangeset(blob, record.kind, { upperDir: twin.layers.upperDir, tmpDir: join(dirname(twin.layers.upperDir), 'twinlayer-tmp') }, { log: this.#o.log.child({ container: name }) });
        const after = await this.#o.runtime.twinState(name);
        if (!this.#stageable(after)) throw new Error(`twin ${name} started while a commit was being staged; restaging later`);
        state.containers[name] = { generation: record.generation, seq: record.seq, digest: record.digest, stagedAt: new Date().toISOString() };
        c.queue.shift();
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

  /** Pauses polling, then stages what is newer within deadlineMs; on bucket failure goes on with what is staged. */
  async finalize(deadlineMs: number): Promise<{ ms: number; bucketReachable: boolean; timedOut: boolean; containers: Array<{ name: string; stagedSeq: number; latestSeq: number | null; error?: string }> }> {
    const started = Date.now();
    this.#paused = true;
    this.#role = 'promoting';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), deadlineMs);
    let report: PollReport;
    try {
      report = await this.pollOnce(controller.signal);
    } finally {
      clearTimeout(timer);
    }
    const containers = [...this.#containers.keys()].sort().map((name) => {
      const c = this.#containers.get(name)!;
      const error = c.blocked ?? c.lastError ?? undefined;
      return { name, stagedSeq: this.#stagedSeq(name), latestSeq: this.#latestSeq(name), ...(error ? { error } : {}) };
    });
    return { ms: Date.now() - started, bucketReachable: report.bucketReachable, timedOut: report.timedOut, containers };
  }

  /** Starts every twin in parallel with bounded concurrency; polling stays paused (the twins now own their layers). */
  async startTwins(): Promise<{ ms: number; containers: Array<{ name: string; ok: boolean; ms: number; error?: string }> }> {
    const started = Date.now();
    this.#paused = true;
    while (this.#inFlight) await this.#inFlight;
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

  async status(): Promise<{ role: 'standby' | 'promoting' | 'master'; generation: number | null; containers: ContainerReport[]; lastPollAt: string | null; lastError: string | null }> {
    const containers = [...this.#containers.keys()].sort().map((name): ContainerReport => {
      const c = this.#containers.get(name)!;
      const latest = this.#latestSeq(name);
      const stagedSeq = this.#stagedSeq(name);
      const reason = c.blocked ?? c.lastError;
      return { name, latestSeq: latest, stagedSeq, lag: latest === null ? null : Math.max(0, latest - stagedSeq), twin: c.twin, ...(reason ? { reason } : {}) };
    });
    return Promise.resolve({
      role: this.#role,
      generation: this.#state?.generation || null,
      containers,
      lastPollAt: this.#lastPollAt === null ? null : new Date(this.#lastPollAt).toISOString(),
      lastError: this.#lastError,
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
