// The standby's daemon: follows the newest generation's journal (journal-follower.ts), keeps the stopped twins
// (twin-keeper.ts) and stages each commit into them (stager.ts), recording the staged seq durably. On promotion it
// finalizes (a last bounded catch-up) and starts the twins.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_TWIN_POLICY, type TwinPolicy, type TwinSpec } from '../docker/index.js';
import type { ReplicationView } from '../metrics/index.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { AppliedStateFile, type AppliedState } from './applied-state.js';
import { ImageLoader } from './image-loader.js';
import { ContainerStates, type ContainerRuntimeState } from './container-state.js';
import { JournalFollower } from './journal-follower.js';
import type { PollReport, PullerOptions } from './options.js';
import type { ContainerStart, ContainerStatus, FinalizeReport, StartReport, StatusReport } from './reports.js';
import { Stager } from './stager.js';
import { TwinKeeper } from './twin-keeper.js';
import { pollDelayMs } from './poll-schedule.js';

/** Where the puller keeps each twin's chunk index (changeset/chunk-index.ts): a promoted host's pusher reads it. */
export function chunkIndexDirOf(stateDir: string, group: string): string {
  return join(stateDir, 'pull', group, 'chunk-index');
}

export class Puller {
  readonly #o: PullerOptions;
  readonly #file: AppliedStateFile;
  #state: AppliedState | null = null;
  #lock: StateLock | null = null;
  readonly #containers = new ContainerStates();
  readonly #journal: JournalFollower;
  readonly #keeper: TwinKeeper;
  readonly #stager: Stager;
  readonly #images: ImageLoader;
  readonly #blobDir: string;
  #loop: Promise<void> | null = null;
  #inFlight: Promise<PollReport> | null = null;
  #paused = false;
  /** Aborted by a finalize: the daemon's polls still in flight (stuck on the bucket) touch no twin and no state after
   *  it; a new one after resume(). */
  #daemonPolls = new AbortController();
  #stopped = false;
  #wake: (() => void) | null = null;
  #lastPollAt: number | null = null;
  #lastError: string | null = null;
  #role: 'standby' | 'promoting' | 'master' = 'standby';
  #unreport: (() => void) | null = null;

  constructor(opts: PullerOptions) {
    this.#o = opts;
    this.#file = new AppliedStateFile(opts.stateDir, opts.group);
    this.#blobDir = join(opts.stateDir, 'pull', opts.group, 'blobs');
    const { runtime, bucket, log } = opts;
    this.#journal = new JournalFollower({
      bucket, log, file: this.#file, generationCheckEvery: opts.generationCheckEvery ?? 20, maxRecordsPerPoll: opts.maxRecordsPerPoll ?? 10_000,
      ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }),
    }, this.#containers);
    this.#images = new ImageLoader({ runtime, bucket, log, workDir: join(opts.stateDir, 'pull', opts.group, 'images'), ...opts.imageLoad });
    this.#keeper = new TwinKeeper({
      runtime, bucket, log, checkEvery: opts.twinCheckEvery ?? 20, group: opts.group, images: this.#images,
      ...(opts.twinPolicy === undefined ? {} : { policy: opts.twinPolicy }),
      ...(opts.trustUnsignedSpecs === undefined ? {} : { trustUnsignedSpecs: opts.trustUnsignedSpecs }),
    }, this.#containers, this.#journal);
    this.#stager = new Stager({
      runtime, bucket, log, file: this.#file, blobDir: this.#blobDir, chunkIndexDir: chunkIndexDirOf(opts.stateDir, opts.group), downloadConcurrency: opts.downloadConcurrency,
      ...(opts.limits === undefined ? {} : { limits: opts.limits }),
      metrics: opts.metrics,
    }, this.#containers, this.#journal, this.#keeper);
  }

  /** Takes the state-dir lock, loads the staged state and checks the engine; does not poll yet. */
  async open(): Promise<void> {
    this.#lock = await acquireStateLock(join(this.#o.stateDir, 'pull'), `puller-${this.#o.group}`);
    try {
      this.#state = await this.#file.load(this.#o.group);
      this.#journal.resumeFrom(this.#state.cursor);
      // A twin held after a restart of the machine is restaged from its latest full checkpoint (also when the process
      // restarted before it was).
      for (const name of Object.keys(this.#state.held ?? {})) this.#containers.get(name).restage = true;
      await this.#o.runtime.checkEngine();
      await this.#recoverTwins(this.#state);
      await rm(this.#blobDir, { recursive: true, force: true });
      await mkdir(this.#blobDir, { recursive: true });
      await this.#images.open();
    } catch (err) {
      await this.#lock.release();
      this.#lock = null;
      throw err;
    }
  }

  /** Every twin of the group, and every container the staged state names: a commit a crash left half staged is
   *  completed (it was recorded) or undone before anything else happens to it. */
  async #recoverTwins(state: AppliedState): Promise<void> {
    const names = new Set([...(await this.#o.runtime.listTwinNames(this.#o.group)), ...Object.keys(state.containers)]);
    for (const name of [...names].sort()) await this.#recoverTwin(state, name);
  }

  /** Returns the reason the twin still holds a commit left half staged, or null. */
  async #recoverTwin(state: AppliedState, name: string): Promise<string | null> {
    // Pending before anything can fail: a Docker error in twinState must not leave a half commit unmarked.
    this.#stager.markPending(name);
    try {
      await this.#stager.recover(state, name, await this.#o.runtime.twinState(name));
    } catch (err) {
      const c = this.#containers.get(name);
      c.lastError = `a commit left half staged could not be undone: ${(err as Error).message}`;
      this.#o.log.error('a commit left half staged could not be undone; nothing is staged into this twin, nor does it boot, until it is', { container: name, err });
    }
    if (!this.#stager.pendingRecovery().includes(name)) return null;
    return this.#containers.get(name).lastError ?? 'its twin is mounted; a commit left half staged waits to be undone';
  }

  /** Polls until stop(); each poll is bounded and errors only delay the next one. */
  start(): void {
    if (this.#loop) return;
    this.#unreport = this.#o.metrics?.addReplicationSource({ side: 'standby', views: (now) => this.#views(now) }) ?? null;
    this.#loop = this.#run();
  }

  /** Per container: how far its twin is behind the bucket, as far as the journal read so far tells. A host that booted
   *  its twins follows nothing any more: it reports nothing. */
  #views(now: number): ReplicationView[] {
    if (this.#role === 'master' || this.#state === null) return [];
    const generation = this.#state.generation;
    return this.#containers.names().sort().map((name) => {
      const c = this.#containers.get(name);
      const staged = this.#stagedSeq(name);
      const pending = c.queue.filter((r) => r.generation === generation && r.seq > staged);
      const newestQueued = pending.at(-1)?.seq ?? staged;
      const latest = this.#latestSeq(name) ?? 0;
      // The head names a newer commit than any read (the journal is read at most maxRecordsPerPoll at a time).
      const unread = latest > newestQueued;
      const oldest = pending[0];
      const headAt = this.#journal.headUpdatedAt();
      const since = oldest !== undefined ? Date.parse(oldest.publishedAt) : unread && headAt !== null ? headAt : null;
      return {
        container: name,
        lagMs: since === null ? 0 : Math.max(0, now - since),
        lagCommits: pending.length + (unread ? 1 : 0),
        lastCommitAt: c.lastCommitAt,
        lastCheckpointAt: c.lastFullAt,
      };
    });
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const startedAt = performance.now();
      // The loop does not wait for staging: a container's commits go on staging in its own task while the next polls
      // read the journal and start the others (one big or hostile blob holds back nobody else).
      if (!this.#paused) await this.#pollShared(new AbortController().signal, false);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pollDelayMs(this.#o.pollIntervalMs, performance.now() - startedAt));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** One poll: head, new records, stage what can be staged, and wait until every container's staging is done (also
   *  staging a poll of the daemon started). Concurrent callers share the poll in flight. `pastHead` (finalize) reads
   *  the journal beyond the head too. */
  async pollOnce(signal?: AbortSignal, opts: { pastHead?: boolean } = {}): Promise<PollReport> {
    return this.#pollShared(signal ?? new AbortController().signal, true, opts.pastHead === true);
  }

  async #pollShared(signal: AbortSignal, waitForStaging: boolean, pastHead = false): Promise<PollReport> {
    while (this.#inFlight) await this.#inFlight;
    this.#inFlight = this.#poll(signal, waitForStaging, pastHead).finally(() => {
      this.#inFlight = null;
    });
    return this.#inFlight;
  }

  async #poll(signal: AbortSignal, waitForStaging: boolean, pastHead: boolean): Promise<PollReport> {
    const started = Date.now();
    const state = this.#requireState();
    // A poll overtaken by a finalize deadline, or a daemon poll in flight when a finalize began (it may come back from
    // the bucket after the report, even after startTwins), touches no twin and no state any more: the finalize's
    // report says what boots. The finalize's own poll runs while paused, so only the daemon's look at #paused.
    // The finalize's deadline (not its start) stops the daemon's staging tasks: one nearly done may still finish.
    const daemon = !waitForStaging;
    const finalized = this.#daemonPolls.signal;
    const halted = (): boolean => signal.aborted || (daemon && (this.#paused || finalized.aborted));
    let staged = 0;
    try {
      if (halted()) return this.#overtaken(started, signal);
      await this.#journal.followNewestGeneration(state, halted);
      if (state.generation === 0) {
        // No commit yet, but specs may be there: twins exist before the first change.
        if (halted()) return this.#overtaken(started, signal);
        if (this.#keeper.due(false)) await this.#keeper.ensureTwins(state, halted);
        else await this.#keeper.recheckHeld(state, halted);
        return this.#report(started, true, 0, signal, null);
      }
      const headMoved = await this.#journal.readNew(state, pastHead);
      if (halted()) return this.#overtaken(started, signal);
      // For the daemon, a moved head calls for the keeper's full check (a listing of the specs and of the twins, 7-60
      // ms on the bench, all of it on a 4 KiB change's way to the twin) only when it names a container not ready for
      // staging (new, its spec stale, its twin absent or held): each commit checks its twin itself right before
      // writing (state, mounts, id, image, spec), and the periodic check still finds a twin removed meanwhile. When
      // one is in doubt, the others ready are started first; the keeper leaves a twin being staged into for its next
      // check. A poll that waits for staging (pollOnce, a finalize) checks first, as before.
      const checkCalledFor = headMoved && (!daemon || this.#headNamesUnready());
      if (daemon && checkCalledFor) staged = await this.#stager.stageQueues(state, signal, false, (c) => this.#keeper.readyToStage(c));
      if (this.#keeper.due(checkCalledFor || pastHead)) await this.#keeper.ensureTwins(state, halted);
      else await this.#keeper.recheckHeld(state, halted);
      if (halted()) return this.#overtaken(started, signal);
      staged += await this.#stager.stageQueues(state, signal, waitForStaging);
      this.#lastPollAt = Date.now();
      this.#lastError = null;
      return this.#report(started, true, staged, signal, null);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#o.metrics?.failure('poll');
      this.#o.log.warn('poll failed', { err });
      return this.#report(started, false, staged, signal, this.#lastError);
    }
  }

  /** Whether the head read last names a container this host has not got ready for staging, or one with commits
   *  queued is not. */
  #headNamesUnready(): boolean {
    const known = new Set(this.#containers.names());
    for (const name of this.#journal.headNames()) if (!known.has(name) || !this.#keeper.readyToStage(this.#containers.get(name))) return true;
    for (const [, c] of this.#containers.each()) if (c.queue.length > 0 && !this.#keeper.readyToStage(c)) return true;
    return false;
  }

  /** A poll a finalize overtook: it stops where it is. */
  #overtaken(started: number, signal: AbortSignal): PollReport {
    this.#o.log.debug('poll overtaken by a finalize; it touches no twin and no state', {});
    return this.#report(started, true, 0, signal, null);
  }

  #report(started: number, reachable: boolean, staged: number, signal: AbortSignal, error: string | null): PollReport {
    return { ms: Date.now() - started, bucketReachable: reachable, staged, timedOut: signal.aborted, error };
  }

  /** Pauses polling, then stages what is newer within deadlineMs; on bucket failure goes on with what is staged.
   *  Returns at the deadline even when a bucket request hangs or a blob is being validated or applied: downloads and
   *  validations in progress are abandoned, a commit being applied is undone (the twin keeps the one before), and
   *  polls still in flight (the finalize's own, or one the daemon started before it, stuck on the bucket) go on in
   *  the background but stage nothing more. From its return until startTwins() or resume() nothing is staged: the
   *  report and position() (the claim's basis) say exactly what the twins hold when they boot. */
  async finalize(deadlineMs: number): Promise<FinalizeReport> {
    const started = Date.now();
    this.#paused = true;
    this.#daemonPolls.abort();
    // An image being loaded is aborted, not waited for: MASTER boots the twins there are.
    this.#images.pause();
    this.#role = 'promoting';
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<null>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve(null);
      }, deadlineMs);
    });
    const poll = this.pollOnce(controller.signal, { pastHead: true });
    let report: PollReport | null;
    try {
      report = await Promise.race([poll, deadline]);
    } finally {
      clearTimeout(timer);
    }
    // Frozen before the staged seqs are read, deadline or not. Without it a daemon poll that was in flight when the
    // finalize began (its own signal is never aborted) went on after the deadline, started new tasks and staged
    // whole commits between this report and startTwins: the twins booted past the seq the claim was made from. At
    // the deadline this also stops the tasks the daemon's polls started (a bomb being validated must not delay
    // MASTER), and an apply in progress is undone before the seqs are read: an aborted commit is not recorded.
    const frozen = this.#stager.freeze();
    // A poll that was only waiting for staging returns right after it; one waiting on the bucket does not.
    if (report === null) report = await Promise.race([poll, frozen.then(() => null)]);
    await frozen;
    if (report === null) {
      this.#lastError = `the bucket did not answer within the ${deadlineMs} ms finalize deadline; going on with what is staged`;
      this.#o.log.warn('finalize deadline passed while waiting for the bucket', { deadlineMs });
      report = { ms: Date.now() - started, bucketReachable: false, staged: 0, timedOut: true, error: this.#lastError };
    }
    const containers = this.#containers.names().sort().map((name) => {
      const c = this.#containers.get(name);
      const error = this.#stager.held(this.#requireState(), name) ?? reasonOf(c) ?? undefined;
      return { name, stagedSeq: this.#stagedSeq(name), latestSeq: this.#latestSeq(name), ...(error ? { error } : {}) };
    });
    return { ms: Date.now() - started, bucketReachable: report.bucketReachable, timedOut: report.timedOut, containers };
  }

  /** Starts every twin in parallel with bounded concurrency; polling stays paused (the twins now own their layers).
   *  `onStarted` hears each twin's start as it is done.
   *  Every twin counts, not only those a poll has seen: the ones Docker knows by label (an agent restarted while the
   *  bucket is down has seen none) and those the staged state names; a named twin that is gone is a failure. */
  async startTwins(onStarted?: (r: ContainerStart) => void): Promise<StartReport> {
    const started = Date.now();
    this.#paused = true;
    // No staging starts from here on; one in progress is undone first. A poll stuck on the bucket is not waited for.
    await this.#stager.freeze();
    const names = new Set([...(await this.#o.runtime.listTwinNames(this.#o.group))]);
    for (const [name, c] of this.#containers.entries()) if (c.twin === 'stopped' || c.twin === 'running') names.add(name);
    const missing: string[] = [];
    for (const name of Object.keys(this.#state?.containers ?? {})) {
      if (names.has(name)) continue;
      // Staged into before twins carried their group: still ours when it is a twin.
      const twin = await this.#o.runtime.twinState(name);
      if (twin.state !== 'absent' && twin.isTwin) names.add(name);
      else missing.push(name);
    }
    // A commit left half staged (a crash, or a failure whose undo failed) is completed or undone first; a twin where
    // that fails does not boot half a commit.
    const held: Array<{ name: string; error: string }> = [];
    // The bind sources each twin's inspect there showed: the start check right before its start looks at the file
    // system only (one inspect a twin fewer: 200 twins start sooner).
    const bindSources = new Map<string, readonly string[]>();
    await this.#checkLeftBehind(names, held, bindSources);
    for (const name of this.#stager.pendingRecovery()) {
      const why = await this.#recoverTwin(this.#requireState(), name);
      if (why !== null && names.delete(name)) held.push({ name, error: `not started: ${why}` });
    }
    // Checked after recovery, which may find a restart of the machine and hold the twin.
    for (const name of [...names].sort()) {
      const why = this.#stager.held(this.#requireState(), name);
      if (why === null) continue;
      names.delete(name);
      held.push({ name, error: `not started: ${why}` });
      this.#o.log.error('not booting a twin whose upper dir is not trusted', { container: name, reason: why });
    }
    const policy = this.#o.twinPolicy ?? DEFAULT_TWIN_POLICY;
    const results = await this.#o.runtime.startContainers([...names].sort(), this.#o.startConcurrency, (name) => this.#startCheck(name, policy, bindSources.get(name)), onStarted);
    for (const h of held) results.push({ name: h.name, ok: false, ms: 0, error: h.error });
    for (const name of missing.sort()) results.push({ name, ok: false, ms: 0, error: 'no twin container on this host (the staged state names it)' });
    for (const r of results) if (r.ok) this.#containers.get(r.name).twin = 'running';
    this.#role = 'master';
    return { ms: Date.now() - started, containers: results };
  }

  /** Right before a twin starts: its bind sources are still there and still under the bind roots. A source removed
   *  since the twin was created would be mounted as a new empty directory (Docker creates it), and a symlink put in
   *  its place is followed: either is a twin that silently differs, so it is not started. Other lacks (a network, a
   *  device) make the start itself fail, loudly. */
  async #startCheck(name: string, policy: TwinPolicy, sources: readonly string[] | undefined): Promise<string | null> {
    const problems = await this.#o.runtime.bindSourceProblemsOf(name, policy, sources);
    if (problems.length === 0) return null;
    const reason = `not started: ${problems.join('; ')}`;
    this.#containers.get(name).notStarted = reason;
    this.#o.log.error('twin not started: a bind-mount source is missing or moved since the twin was created (Docker would mount an empty directory or follow the link)', { container: name, problems });
    return reason;
  }

  /** Holds every twin about to boot that is not the container its staged seq describes, and marks pending every one
   *  whose upper dir still has an undo log (whatever missed marking it); a twin that cannot be checked is held. Notes
   *  each twin's bind sources in `bindSources`. */
  async #checkLeftBehind(names: Set<string>, held: Array<{ name: string; error: string }>, bindSources: Map<string, readonly string[]>): Promise<void> {
    const queue = [...names].sort();
    const worker = async (): Promise<void> => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        try {
          const twin = await this.#o.runtime.twinState(name);
          const recorded = this.#state?.containers[name]?.twinId;
          if (twin.state !== 'absent' && recorded !== undefined && twin.id !== recorded) {
            // Replaced since its seq was staged (a poll that came back after the finalize, an operator): its upper dir
            // is not what the report and the claim describe.
            const error = `not started: the twin ${twin.id.slice(0, 12)} is not the container ${recorded.slice(0, 12)} its staged seq describes (replaced since)`;
            names.delete(name);
            held.push({ name, error });
            this.#containers.get(name).notStarted = error;
            this.#o.log.error('not booting a twin that is not the container its staged seq describes', { container: name, twin: twin.id, recorded });
            continue;
          }
          if (twin.state !== 'absent' && twin.bindSources !== undefined && twin.bindSources !== null) bindSources.set(name, twin.bindSources);
          if (this.#stager.pendingRecovery().includes(name)) continue;
          if (await this.#stager.leftBehind(twin)) {
            this.#o.log.warn('a twin about to boot holds a commit left half staged; recovering it first', { container: name });
            this.#stager.markPending(name);
          }
        } catch (err) {
          names.delete(name);
          held.push({ name, error: `not started: cannot tell whether it holds a commit left half staged: ${(err as Error).message}` });
          this.#o.log.error('not booting a twin that cannot be checked for a commit left half staged', { container: name, err });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.#o.startConcurrency, queue.length)) }, worker));
  }

  /** Back to following after a finalize that did not end in a boot (the agent lost its claim): polling resumes. */
  resume(): void {
    for (const c of this.#containers.values()) c.notStarted = null;
    this.#paused = false;
    this.#daemonPolls = new AbortController();
    this.#stager.thaw();
    this.#images.resume();
    this.#role = 'standby';
    this.#wake?.();
  }

  /** The specs read so far, by container (a promotion restores restart policies from them). */
  specs(): Map<string, TwinSpec> {
    const out = new Map<string, TwinSpec>();
    for (const [name, c] of this.#containers.entries()) if (c.spec !== null) out.set(name, c.spec);
    return out;
  }

  /** The generation followed and the staged seq per container: what a promotion finalized from. */
  position(): { generation: number; containers: Record<string, number> } {
    const state = this.#requireState();
    const containers: Record<string, number> = {};
    for (const [name, c] of Object.entries(state.containers)) if (c.generation === state.generation && c.seq > 0) containers[name] = c.seq;
    return { generation: state.generation, containers };
  }

  #stagedSeq(name: string): number {
    const s = this.#state?.containers[name];
    return s && s.generation === this.#state?.generation ? s.seq : 0;
  }

  #latestSeq(name: string): number | null {
    return this.#journal.latestSeq(name);
  }

  async status(): Promise<StatusReport> {
    const containers = this.#containers.names().sort().map((name): ContainerStatus => {
      const c = this.#containers.get(name);
      const latest = this.#latestSeq(name);
      const stagedSeq = this.#stagedSeq(name);
      const reason = (this.#state === null ? null : this.#stager.held(this.#state, name)) ?? reasonOf(c);
      return {
        name, latestSeq: latest, stagedSeq, lag: latest === null ? null : Math.max(0, latest - stagedSeq), twin: c.twin,
        ...(reason ? { reason } : {}), ...(c.refusedCommit ? { refusedCommit: { ...c.refusedCommit } } : {}),
        ...(c.hostProblems.length > 0 ? { hostProblems: c.hostProblems.map((p) => ({ ...p })) } : {}),
      };
    });
    return Promise.resolve({
      role: this.#role,
      generation: this.#state?.generation || null,
      containers,
      lastPollAt: this.#lastPollAt === null ? null : new Date(this.#lastPollAt).toISOString(),
      lastError: this.#lastError ?? this.#journal.alert((n) => this.#stagedSeq(n)),
      signatures: this.#o.bucket.signatureStatus(),
    });
  }

  #requireState(): AppliedState {
    if (!this.#state) throw new Error('puller not opened');
    return this.#state;
  }

  /** Stops polling; waits for the poll in flight (bounded by its own requests' retries), then releases the lock. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unreport?.();
    this.#unreport = null;
    this.#wake?.();
    await this.#loop;
    while (this.#inFlight) await this.#inFlight.catch(() => undefined);
    await this.#stager.drain();
    await this.#images.stop();
    await this.#lock?.release();
    this.#lock = null;
  }
}

/** The one reason a container is not as it should be: refused, not started, held for what this host lacks, blocked,
 *  failed. */
function reasonOf(c: ContainerRuntimeState): string | null {
  if (c.refused !== null) return c.refused;
  if (c.notStarted !== null) return c.notStarted;
  const first = c.hostProblems[0];
  if (first !== undefined) return `held since ${first.since}: this host lacks what the twin needs: ${c.hostProblems.map((p) => p.detail ?? p.problem).join('; ')}`;
  return c.blocked ?? c.lastError;
}
