// The primary's daemon: finds protected containers, publishes their specs, watches their upper dirs and ships
// every burst of changes as a commit. A periodic reconcile catches whatever the watcher missed.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { writeFileDurable } from '../state/atomic-file.js';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { ChunkIndex, chunkIndexFile, defaultLimits, UpperTracker, volumeTarPath, type SerializedIndex } from '../changeset/index.js';
import { specDigest, type DockerRuntime, type ProtectedContainer } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { asDigest, asGeneration, asSeq, GcLoop, JournalWriter, PackStore, type Bucket, type CommitRecord, type Digest, type Generation, type Head, type HeadStatus } from '../store/index.js';
import { learnChunksFromBucket, type LearnBounds } from './bucket-chunks.js';
import { BurstCollector } from './burst.js';
import type { CheckpointPolicy } from './checkpoint-policy.js';
import { chooseGeneration, type WriterPosition } from './generation.js';
import { CommitYield } from './commit-yield.js';
import { ImageShipper } from './image-shipper.js';
import { ContainerReplicator, type ReplicatorStatus } from './replicator.js';
import { ShippedStateStore, type ShippedFile } from './shipped-state.js';
import { watchUpper, type UpperWatch } from './upper-watcher.js';

export interface PusherOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  hostId: string;
  group: string;
  label: string;
  stateDir: string;
  excludes: readonly string[];
  debounceQuietMs: number;
  debounceMaxMs: number;
  uploadConcurrency: number;
  reconcileIntervalMs: number;
  /** How often to look for new protected containers. */
  discoverIntervalMs?: number;
  /** The generation to write, chosen by the caller (the agent, which claimed it); default: chooseGeneration. */
  position?: WriterPosition;
  /** Protect labelled twins too (the agent: a promoted twin is protected; the role decides, not a label). */
  includeTwins?: boolean;
  /** Runs before every record is published; rejecting stops the publish (the agent's self-fence). */
  beforePublish?: () => Promise<void>;
  /** Runs between the read of a spec.json and its conditional put; rejects unless a look at the bucket begun at or
   *  after `since` (performance.now() ms, the monotonic clock) found this host still the owner (the agent's self-fence).
   *  Default: beforePublish. */
  confirmOwnerSince?: (since: number) => Promise<void>;
  /** Regular files larger than this ship as content-defined chunks (src/changeset/chunker.ts). Default 1 MiB. */
  chunkThresholdBytes?: number;
  /** Where the replication lag, commit ages and failures of this primary are reported while it runs. */
  metrics?: Metrics | undefined;
  /** The chunk indexes a puller of this host kept of its twins (a promoted standby): a container whose twin it was
   *  starts with the places of its chunks known, so its first full commit uploads none the bucket holds. */
  chunkIndexDir?: string;
  /** When a container's next commit is a full checkpoint (checkpoint-policy.ts); default DEFAULT_CHECKPOINT_POLICY. */
  checkpoints?: CheckpointPolicy;
  /** Bounds of what a pusher that knows no chunk reads of the newest chunk lists at start (bucket-chunks.ts). */
  learnBounds?: Partial<LearnBounds>;
  /** Garbage collection of the bucket while this pusher runs (the primary): every intervalMs, 0 = off. */
  gc?: { intervalMs: number; retentionMs: number; graceMs: number; firstDelayMs?: number } | undefined;
  /** Ship each protected container's image to the bucket (image-shipper.ts), in the background. Default false (the
   *  config's shipImages, default true, is passed by `push` and the agent). */
  shipImages?: boolean;
}

interface Watched {
  container: ProtectedContainer;
  replicator: ContainerReplicator;
  collector: BurstCollector;
  watcher: Pick<UpperWatch, 'close'>;
}

export class Pusher {
  #opts: PusherOptions;
  #watched = new Map<string, Watched>();
  #uploads: PQueue;
  #shipped: ShippedStateStore;
  /** Shared by every container: a chunk one of them uploaded is known to all (the same file in 40 containers). */
  readonly packs: PackStore;
  #journal: JournalWriter | null = null;
  #generation: Generation | null = null;
  #timers: NodeJS.Timeout[] = [];
  #discovering: Promise<void> | null = null;
  #stopped = false;
  #unreport: (() => void) | null = null;
  #gc: GcLoop | null = null;
  #images: ImageShipper | null = null;

  constructor(opts: PusherOptions) {
    this.#opts = opts;
    this.#uploads = new PQueue({ concurrency: opts.uploadConcurrency });
    this.#shipped = new ShippedStateStore(opts.stateDir, opts.group);
    this.packs = new PackStore(opts.bucket.store, opts.bucket.layout, {
      log: opts.log.child({ unit: 'packs' }), cacheFile: join(opts.stateDir, 'push', opts.group, 'packs.jsonl'), gate: opts.bucket.gate,
    });
  }

  get generation(): Generation | null {
    return this.#generation;
  }

  /** Checks the engine, takes the writer position, ships a first sync of every protected container and starts watching. */
  async start(): Promise<void> {
    const { runtime, bucket, log, hostId } = this.#opts;
    await runtime.checkEngine();
    const position = this.#opts.position ?? (await chooseGeneration(bucket, hostId));
    let head = position.head;
    if (position.opened) {
      // Claim the new generation at once: pullers follow it (and stop following the old writer) and create twins
      // from the specs before the first commit arrives.
      head = { version: 1, generation: position.generation, seq: asSeq(0), writer: hostId, updatedAt: new Date().toISOString(), containers: {} };
      await bucket.writeHead(head);
    }
    this.#generation = position.generation;
    this.#journal = new JournalWriter(bucket, {
      generation: position.generation,
      writer: hostId,
      head,
      log: log.child({ unit: 'journal' }),
      ...(this.#opts.beforePublish ? { beforePublish: this.#opts.beforePublish } : {}),
      metrics: this.#opts.metrics,
    });
    this.#unreport = this.#opts.metrics?.addReplicationSource({
      side: 'primary',
      views: (now) => [...this.#watched.values()].map((w) => w.replicator.view(now, w.collector.firstChangeAt)),
    }) ?? null;
    log.info('pusher writing', { generation: position.generation, opened: position.opened, seq: position.head?.seq ?? 0 });
    if (this.#opts.shipImages === true) {
      const dir = join(this.#opts.stateDir, 'push', 'images');
      // What a killed shipper left there is never resumed.
      await rm(dir, { recursive: true, force: true });
      // The save is read only while no container has a change collected or a commit in flight (bounded: commit-yield.ts).
      const pace = new CommitYield({
        busy: () => {
          for (const w of this.#watched.values()) if (w.collector.pending || w.replicator.busy) return true;
          return false;
        },
      });
      this.#images = new ImageShipper({ runtime, bucket, dir, log: log.child({ unit: 'images' }), metrics: this.#opts.metrics, pace });
    }
    await this.#learnFromBucket(position.opened ? null : head);
    await this.discover();
    const discoverEvery = this.#opts.discoverIntervalMs ?? 2000;
    this.#timers.push(setInterval(() => void this.discover().catch((err: unknown) => log.warn('discovery failed', { err })), discoverEvery));
    this.#timers.push(setInterval(() => this.#reconcileAll(), this.#opts.reconcileIntervalMs));
    this.#timers.push(setInterval(() => void this.#writeStatus().catch((err: unknown) => log.warn('cannot write status file', { err })), 1000));
    if (this.#opts.gc !== undefined && this.#opts.gc.intervalMs > 0) {
      this.#gc = new GcLoop(bucket, {
        ...this.#opts.gc,
        // Deletes only while this host writes the newest generation: a demoted or fenced primary's run stops.
        owner: { generation: position.generation, host: hostId },
        log: log.child({ unit: 'gc' }),
        metrics: this.#opts.metrics,
        // Packs about to go are forgotten: a build started after that uploads their chunks again; a commit shipping
        // now may name them, so GC looks for references once it is out.
        beforeSecondPhase: async (deletions) => {
          this.packs.forgetPacks(deletions.flatMap((d) => (d.kind === 'pack' ? [d.key.slice(-64)] : [])));
          await Promise.all([...this.#watched.values()].map((w) => w.replicator.shipped()));
        },
      });
      this.#gc.start();
    }
  }

  /** `<stateDir>/push/<group>/status.json`: what `twinlayer status` shows of this pusher (lag, failures). */
  get statusFile(): string {
    return join(this.#opts.stateDir, 'push', this.#opts.group, 'status.json');
  }

  #lastStatus = '';
  async #writeStatus(): Promise<void> {
    const status = { writer: this.#opts.hostId, ...this.status(), signatures: this.#opts.bucket.signatureStatus() };
    const text = JSON.stringify(status);
    if (text === this.#lastStatus) return;
    this.#lastStatus = text;
    await writeFileDurable(this.statusFile, JSON.stringify({ ...status, updatedAt: new Date().toISOString() }, null, 1));
  }

  /** Finds protected containers not yet watched (also ones started after the pusher). */
  async discover(): Promise<void> {
    if (this.#discovering) return this.#discovering;
    this.#discovering = this.#discoverOnce().finally(() => {
      this.#discovering = null;
    });
    return this.#discovering;
  }

  async #discoverOnce(): Promise<void> {
    const { runtime, label, log } = this.#opts;
    // The containers watched already are only listed (not inspected again) while their id is the same.
    const known = new Map([...this.#watched].map(([name, w]) => [name, w.container.id]));
    const { containers, kept } = await runtime.listProtectedChanges(label, { includeTwins: this.#opts.includeTwins === true, known });
    const present = new Set([...containers.map((c) => c.name), ...kept]);
    for (const [name, w] of this.#watched) {
      if (!present.has(name)) await this.#unprotect(name, w, 'container gone or no longer labelled');
    }
    for (const container of containers) {
      if (this.#stopped) return;
      const watched = this.#watched.get(container.name);
      // `docker rm` + `docker run` under the same name (a compose update): a new upper dir, shipped in full.
      const replaced = watched !== undefined && watched.container.id !== container.id;
      if (watched && !replaced) continue;
      if (watched) await this.#unprotect(container.name, watched, 'container replaced');
      try {
        await this.#protect(container, replaced);
      } catch (err) {
        log.error('cannot protect container', { container: container.name, err });
      }
    }
  }

  /** Stops watching a container; what was pending is shipped first when the old upper dir still exists. */
  async #unprotect(name: string, w: Watched, why: string): Promise<void> {
    this.#watched.delete(name);
    this.#images?.release(name);
    await w.watcher.close();
    w.collector.flush();
    await w.replicator.close();
    w.collector.close();
    this.#opts.log.info('no longer watching', { container: name, reason: why });
  }

  async #protect(container: ProtectedContainer, forceFull = false): Promise<void> {
    const { runtime, bucket, log, stateDir, excludes } = this.#opts;
    const journal = this.#journal;
    const generation = this.#generation;
    if (journal === null || generation === null) throw new Error('pusher not started');
    const spec = await runtime.captureSpec(container.id);
    if ((spec.unsupported ?? []).length > 0) log.warn('the container has settings a twin cannot be created with; standbys will refuse it', { container: container.name, unsupported: spec.unsupported });
    if ((spec.unreplicatedVolumes ?? []).length > 0) {
      log.warn('volumes not replicated (another driver, or driver options); a standby creates the twin without their data only if its policy allows', { container: container.name, volumes: spec.unreplicatedVolumes });
    }
    // A fenced writer must not replace the group's specs either (the agent's fence; a no-op for `push`), nor may its
    // put land after the new owner's: the put is conditional on the spec read before the owner check (bucket.ts).
    const { beforePublish, confirmOwnerSince } = this.#opts;
    const confirmOwner = confirmOwnerSince !== undefined ? () => confirmOwnerSince(performance.now()) : beforePublish;
    await bucket.putSpec(container.name, spec, confirmOwner === undefined ? {} : { confirmOwner });
    const digestOfSpec = asDigest(specDigest(spec));
    const recovered = await this.#recoverShipped(container.name, container.id, generation, journal, digestOfSpec);
    const { shipped, needFull } = forceFull ? { shipped: undefined, needFull: true } : recovered;
    const { lastPublishedAt, lastFullAt, sinceFull } = recovered;
    await this.#learnFromTwin(container);
    const workDir = join(stateDir, 'push', 'work', container.name);
    // What a killed pusher left there (a changeset, a spool of chunks as large as the files it held) is never resumed.
    await rm(workDir, { recursive: true, force: true });
    const volumes = container.volumes.map((v) => ({ key: v.name, destination: v.destination, dir: v.dir }));
    await mkdir(workDir, { recursive: true });
    const clog = log.child({ container: container.name });
    const replicator = new ContainerReplicator({
      name: container.name,
      containerId: container.id,
      generation,
      makeTracker: (s) => new UpperTracker({
        upperDir: container.layers.upperDir, workDir, excludes, volumes, ...(s ? { shipped: s } : {}), log: clog,
        chunking: { thresholdBytes: this.#opts.chunkThresholdBytes ?? 1024 * 1024, openSink: this.packs.openSink },
      }),
      shipped,
      needFull,
      specDigest: digestOfSpec,
      bucket,
      journal,
      uploads: this.#uploads,
      shippedState: this.#shipped,
      retry: (paths) => collector.retry(paths),
      log: clog,
      lastPublishedAt,
      lastFullAt,
      ...(forceFull ? {} : { sinceFull }),
      ...(this.#opts.checkpoints === undefined ? {} : { checkpoints: this.#opts.checkpoints }),
      metrics: this.#opts.metrics,
    });
    const collector: BurstCollector = new BurstCollector({
      quietMs: this.#opts.debounceQuietMs,
      maxMs: this.#opts.debounceMaxMs,
      onFlush: (burst) => replicator.submit(burst),
    });
    const upper = container.layers.upperDir;
    const onLost = (err: unknown): void => {
      // An overflowed or failed watch costs a full comparison, never a lost change.
      clog.warn('watcher error; reconciling', { err });
      collector.addReconcile(true);
    };
    // The volumes are watched like the upper dir; their paths go into the same changesets under their prefix.
    const watches: UpperWatch[] = [];
    try {
      watches.push(await watchUpper({ upperDir: upper, onPath: (rel) => collector.add(rel), onLost, log: clog }));
      for (const v of container.volumes) {
        watches.push(await watchUpper({ upperDir: v.dir, onPath: (rel) => collector.add(volumeTarPath(v.name, rel)), onLost, log: clog }));
      }
    } catch (err) {
      await Promise.all(watches.map((w) => w.close()));
      await replicator.close();
      collector.close();
      throw err;
    }
    const watcher: Pick<UpperWatch, 'close'> = { close: async () => { await Promise.all(watches.map((w) => w.close())); } };
    this.#watched.set(container.name, { container, replicator, collector, watcher });
    // Only once watched: #unprotect (which releases it) then knows the container, whatever failed before.
    if (this.#images !== null) {
      if (spec.imageIdentity === undefined) log.warn('the image\'s identity is not known; it is not shipped to the bucket', { container: container.name, imageId: spec.imageId });
      else this.#images.want(container.name, spec.imageId, spec.imageIdentity);
    }
    log.info('protecting', { container: container.name, upperDir: upper, volumes: container.volumes.map((v) => `${v.name}:${v.destination}`), firstSync: needFull ? 'full' : 'reconcile' });
    collector.addReconcile();
    collector.flush();
  }

  /** Knowing no chunk of the bucket (no pack cache: a new host, a lost state dir), learns where the chunks of the
   *  newest commits are from their chunk lists (bucket-chunks.ts): `head` when this pusher continues its generation,
   *  else the newest earlier generation's. Not a promoted standby (its twins' chunk indexes tell it the same), nor a
   *  pusher that shipped these containers before (its pack cache would hold what it uploaded).
   *  Best effort: a failure costs uploads, never a commit. */
  async #learnFromBucket(own: Head | null): Promise<void> {
    const { bucket, log, stateDir } = this.#opts;
    const dir = join(stateDir, 'push', 'learn');
    try {
      if (await this.packs.remembered() > 0 || await this.#hasTwinIndexes()) return;
      const g = this.#generation;
      // The previous generation's head as it stands, read only: folding its journal into a new head (recoverHead)
      // would write a head into a generation this host does not own, racing its writer until it is fenced.
      const previous = own === null && g !== null && g > 1 ? await bucket.readHead(asGeneration(g - 1)) : null;
      const head = own ?? (previous?.status === 'ok' ? previous.head : null);
      if (head === null || Object.keys(head.containers).length === 0) return;
      // A pusher that shipped these containers before and has no pack cache never uploaded a chunk: a restart of the
      // agent would only pay the reads (up to 64 records a container) for nothing.
      const shipped = new Set(await readdir(join(stateDir, 'push', this.#opts.group)).catch(() => []));
      if (Object.keys(head.containers).some((name) => shipped.has(`${name}.json`))) return;
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const learnt = await learnChunksFromBucket({ bucket, packs: this.packs, head, limits: defaultLimits, log, dir, ...(this.#opts.learnBounds ? { bounds: this.#opts.learnBounds } : {}) });
      log.info('chunks known from the chunk lists of the newest commits', { generation: head.generation, ...learnt });
    } catch (err) {
      log.warn('cannot learn the chunks the bucket holds; the first commits may upload some again', { err });
    } finally {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Whether this host kept chunk indexes of twins (a promoted standby): its containers learn from those. */
  async #hasTwinIndexes(): Promise<boolean> {
    const dir = this.#opts.chunkIndexDir;
    if (dir === undefined) return false;
    const names = await readdir(dir).catch(() => []);
    return names.some((n) => n.endsWith('.json'));
  }

  /** Takes in the chunk index this host kept while `container` was its twin (same container id), if any. */
  async #learnFromTwin(container: ProtectedContainer): Promise<void> {
    const dir = this.#opts.chunkIndexDir;
    if (dir === undefined) return;
    const index = await ChunkIndex.load(chunkIndexFile(dir, container.name), container.id);
    const learnt = this.packs.learn(index.places());
    if (learnt > 0) this.#opts.log.info('chunks known from the twin\'s chunk index', { container: container.name, chunks: learnt });
  }

  /** The shipped state to resume from, or a full sync when it cannot be trusted; and when the last commit and the
   *  last full checkpoint were published, as far as the last record and the shipped state tell (for the metrics). */
  async #recoverShipped(name: string, containerId: string, generation: Generation, journal: JournalWriter, spec: Digest): Promise<{
    shipped: SerializedIndex | undefined; needFull: boolean; lastPublishedAt: number | null; lastFullAt: number | null; sinceFull: { deltas: number; bytes: number };
  }> {
    const known = await this.#recoverShippedState(name, containerId, generation, journal, spec);
    const last = known.last;
    // Only a state of this very container in this generation speaks of its checkpoints.
    const own = known.committed !== null && known.committed.containerId === containerId && known.committed.generation === generation;
    const recordedFull = !own || known.committed?.lastFullAt === undefined ? null : Date.parse(known.committed.lastFullAt);
    return {
      shipped: known.shipped,
      needFull: known.needFull,
      lastPublishedAt: last === null ? null : Date.parse(last.publishedAt),
      lastFullAt: last?.kind === 'full' ? Date.parse(last.publishedAt) : Number.isFinite(recordedFull) ? recordedFull : null,
      // Counted by the state that matches the last record (a full one resets them); unknown counts as none.
      sinceFull: last?.kind === 'full' || !own || known.needFull ? { deltas: 0, bytes: 0 } : known.committed?.sinceFull ?? { deltas: 0, bytes: 0 },
    };
  }

  async #recoverShippedState(name: string, containerId: string, generation: Generation, journal: JournalWriter, spec: Digest): Promise<{ shipped: SerializedIndex | undefined; needFull: boolean; last: CommitRecord | null; committed: ShippedFile | null }> {
    const lastSeq = journal.lastSeqOf(name);
    const committed = await this.#shipped.load(name, false);
    const pending = await this.#shipped.load(name, true);
    await this.#shipped.clearPending(name);
    if (lastSeq === 0) return { shipped: undefined, needFull: true, last: null, committed };
    // Pullers take a spec only from a record that names it: a spec changed since the last record (a restart policy
    // updated, an older record without the name) is named at once by a full commit, not at the next write.
    // A record that cannot be read (the bucket fails, or the record is refused) cannot vouch for the shipped state:
    // a full commit is safe either way, but the operator sees why one was made.
    const last = await this.#opts.bucket.readRecord(generation, lastSeq).catch((err: unknown) => {
      this.#opts.log.warn('last record unreadable; a full commit follows', { container: name, generation, seq: lastSeq, key: this.#opts.bucket.journalKey(generation, lastSeq), err });
      return null;
    });
    if (last?.specDigest !== spec) return { shipped: undefined, needFull: true, last, committed };
    // A state of another container of this name (removed and run again between two discoveries): full.
    if (committed && committed.generation === generation && committed.lastSeq === lastSeq && committed.containerId === containerId) return { shipped: committed.shipped, needFull: false, last, committed };
    if (pending && pending.generation === generation && pending.containerId === containerId) {
      // Crashed after publishing and before recording it: the record's digest says whether pending went out.
      if (last.digest === pending.digest) return { shipped: pending.shipped, needFull: false, last, committed: pending };
    }
    return { shipped: undefined, needFull: true, last, committed };
  }

  #reconcileAll(): void {
    for (const w of this.#watched.values()) w.collector.addReconcile();
  }

  /** Ships everything pending now and waits until it is published (tests and shutdown call this). */
  async syncOnce(): Promise<void> {
    // A ship hands what it found torn back to its collector: flushed again, a few rounds at most (a file its writer
    // is still at stays torn; the next flush takes it).
    for (let round = 0; round < 4; round++) {
      for (const w of this.#watched.values()) {
        w.collector.flush();
        w.replicator.wake();
      }
      await Promise.all([...this.#watched.values()].map((w) => w.replicator.idle()));
      if (![...this.#watched.values()].some((w) => w.collector.pending)) return;
    }
  }

  /** Forces a reconcile of every container and waits for it. */
  async reconcileNow(): Promise<void> {
    this.#reconcileAll();
    await this.syncOnce();
  }

  /** `head.behind` while the head pointer pullers poll lags the journal (its write is being retried). */
  status(): { generation: number | null; head: HeadStatus | null; containers: ReplicatorStatus[] } {
    return {
      generation: this.#generation,
      head: this.#journal?.headStatus() ?? null,
      containers: [...this.#watched.values()].map((w) => w.replicator.status(w.collector.firstChangeAt)),
    };
  }

  /** Names of the containers being protected now. */
  protectedNames(): string[] {
    return [...this.#watched.keys()].sort();
  }

  /** No run is started after this; one in flight is aborted and stops at its next step (its order of deletions is
   *  safe to stop at any point) without being waited for, so a demotion is not held up by a listing of the bucket. */
  #stopGc(): void {
    void this.#gc?.stop();
    this.#gc = null;
  }

  /** Aborts the image upload in flight; nothing more is shipped. */
  async #stopImages(): Promise<void> {
    const images = this.#images;
    this.#images = null;
    await images?.stop();
  }

  /** What the image shipper is doing, image by image (tests; empty when images are not shipped). */
  imageStatus(): ReturnType<ImageShipper['status']> {
    return this.#images?.status() ?? [];
  }

  /** Resolves when no image is being shipped or queued (tests). */
  async imagesIdle(): Promise<void> {
    await this.#images?.idle();
  }

  /** Stops at once without shipping what is pending (a demoted or fenced primary must publish nothing more); a
   *  commit already being published finishes. What was not shipped stays in the upper dirs and the shipped state. */
  async halt(): Promise<void> {
    this.#stopped = true;
    this.#stopGc();
    // Aborted now, awaited last: the other timers and watchers stop meanwhile, whatever an image save still holds.
    const images = this.#stopImages();
    this.#unreport?.();
    this.#unreport = null;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#discovering?.catch(() => undefined);
    await Promise.all([...this.#watched.values()].map((w) => w.watcher.close()));
    for (const w of this.#watched.values()) {
      w.collector.close();
      await w.replicator.close();
    }
    this.#watched.clear();
    await images;
    await this.#journal?.close();
    // A halted pusher is no longer this host's pusher: `twinlayer status` must not show its last figures as current.
    await rm(this.statusFile, { force: true });
  }

  /** Stops watching; ships what is pending within `deadlineMs`. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.#stopped = true;
    this.#stopGc();
    // Aborted now, awaited last: the other timers and watchers stop meanwhile, whatever an image save still holds.
    const images = this.#stopImages();
    this.#unreport?.();
    this.#unreport = null;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#discovering?.catch(() => undefined);
    await Promise.all([...this.#watched.values()].map((w) => w.watcher.close()));
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.syncOnce().then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), deadlineMs); }),
    ]);
    clearTimeout(timer);
    if (!drained) this.#opts.log.warn('stopping with changes not yet shipped; the next start reconciles them', { deadlineMs });
    for (const w of this.#watched.values()) {
      w.collector.close();
      await w.replicator.close();
    }
    this.#watched.clear();
    await images;
    // Last: the replicators' publishes are done; this ends the background head retry.
    await this.#journal?.close();
  }
}
