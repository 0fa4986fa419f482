// Staging: each container's queue, in order, into its stopped twin's upper dir — fetched, verified, staged whole,
// then the staged seq recorded durably. A gap, a running twin or a replaced twin stops that container only.
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import PQueue from 'p-queue';
import { ChangesetRejectedError, stageChangeset } from '../changeset/index.js';
import { specDigest, type DockerRuntime, type TwinState } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Bucket, CommitRecord } from '../store/index.js';
import type { AppliedState, AppliedStateFile } from './applied-state.js';
import type { ContainerRuntimeState, ContainerStates } from './container-state.js';
import type { JournalFollower } from './journal-follower.js';
import type { TwinKeeper } from './twin-keeper.js';

export interface StagerOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  file: AppliedStateFile;
  /** Where blobs are downloaded to (emptied at open). */
  blobDir: string;
  downloadConcurrency: number;
}

function stageable(twin: TwinState): boolean {
  return twin.state === 'stopped' && !twin.mounted;
}

export class Stager {
  readonly #o: StagerOptions;
  readonly #containers: ContainerStates;
  readonly #journal: JournalFollower;
  readonly #keeper: TwinKeeper;
  /** stageChangeset calls in progress; a promotion waits for these, not for a poll stuck on the network. */
  readonly #stagings = new Set<Promise<unknown>>();
  /** Set when the twins are about to start: no staging starts any more (the twins then own their layers). */
  #frozen = false;

  constructor(opts: StagerOptions, containers: ContainerStates, journal: JournalFollower, keeper: TwinKeeper) {
    this.#o = opts;
    this.#containers = containers;
    this.#journal = journal;
    this.#keeper = keeper;
  }

  /** No staging starts from now on; resolves once the ones in progress are done. */
  async freeze(): Promise<void> {
    this.#frozen = true;
    while (this.#stagings.size > 0) await Promise.allSettled([...this.#stagings]);
  }

  /** Resolves once no staging is in progress (new ones may still start unless frozen). */
  async idle(): Promise<void> {
    while (this.#stagings.size > 0) await Promise.allSettled([...this.#stagings]);
  }

  thaw(): void {
    this.#frozen = false;
  }

  async stageQueues(state: AppliedState, signal: AbortSignal): Promise<number> {
    const queue = new PQueue({ concurrency: this.#o.downloadConcurrency });
    let staged = 0;
    const jobs = this.#containers.entries()
      .filter(([, c]) => c.queue.length > 0 && c.refused === null && !c.restage)
      .map(([name, c]) => queue.add(async () => {
        staged += await this.#stageContainer(state, name, c, signal);
      }));
    await Promise.all(jobs);
    return staged;
  }

  async #stageContainer(state: AppliedState, name: string, c: ContainerRuntimeState, signal: AbortSignal): Promise<number> {
    let staged = 0;
    while (c.queue.length > 0 && !signal.aborted && !this.#frozen) {
      const record = c.queue[0]!;
      const applied = state.containers[name];
      const appliedSeq = applied && applied.generation === record.generation ? applied.seq : null;
      if (appliedSeq !== null && appliedSeq >= record.seq) {
        c.queue.shift();
        continue;
      }
      if (record.kind !== 'full' && appliedSeq !== record.parentSeq) {
        if (c.gap?.seq !== record.seq) {
          const why = await this.#journal.explainParent(record, name);
          c.gap = { seq: record.seq, reason: `journal gap: record ${record.seq} follows ${record.parentSeq}, staged is ${appliedSeq ?? 'nothing'} of generation ${record.generation}; ${why}; waiting for a full checkpoint` };
          this.#o.log.error('staging stopped at a gap', { container: name, seq: record.seq, parentSeq: record.parentSeq, stagedSeq: appliedSeq, reason: why });
        }
        c.blocked = c.gap.reason;
        return staged;
      }
      const twin = await this.#o.runtime.twinState(name);
      if (twin.state === 'absent' || !stageable(twin)) {
        // A twin removed since the last check is recreated by the next poll.
        if (twin.state === 'absent') this.#keeper.checkSoon();
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
      // A twin made from an older spec (the primary was recreated) gets no commit of the new container: it is
      // recreated from the new spec first (twin-keeper), so a failover never boots new files in an old config.
      if (c.specStale || (twin.specDigest !== null && twin.specDigest !== specDigest(c.spec))) {
        this.#keeper.checkSoon();
        c.blocked = 'the twin was made from an older spec; it is recreated before staging';
        return staged;
      }
      if (applied?.twinId !== undefined && applied.twinId !== twin.id) {
        c.restage = true;
        c.blocked = 'twin was replaced; restaging from the journal';
        return staged;
      }
      const blob = join(this.#o.blobDir, `${record.digest}.${record.seq}`);
      try {
        await this.#download(record, blob, signal);
        if (signal.aborted || this.#frozen) break;
        const staging = stageChangeset(blob, record.kind, { upperDir: twin.layers.upperDir, tmpDir: join(dirname(twin.layers.upperDir), 'twinlayer-tmp') }, { log: this.#o.log.child({ container: name }) });
        this.#stagings.add(staging);
        try {
          await staging;
        } finally {
          this.#stagings.delete(staging);
        }
        const after = await this.#o.runtime.twinState(name);
        if (!stageable(after)) throw new Error(`twin ${name} started while a commit was being staged; restaging later`);
        state.containers[name] = { generation: record.generation, seq: record.seq, digest: record.digest, stagedAt: new Date().toISOString(), twinId: twin.id };
        c.queue.shift();
        c.gap = null;
        state.cursor = this.#journal.durableCursor();
        await this.#o.file.save(state);
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
}
