// Standby side: validate the whole changeset (validate.ts), then apply it into a stopped twin's upper dir as one
// undoable step (staging-txn.ts): a failure, an abort or a crash midway leaves the upper dir as it was before.
// Nothing is written through a symlink: every parent is a real directory checked with lstat; files, symlinks,
// hard links and whiteouts are made under a temp name in the txn dir and renamed in (rename replaces the final
// component without following it); what they replace or remove is moved into the undo area, not deleted.
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, rename, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import type { DeclaredChangeset } from './declared.js';
import { ChangesetRejectedError, StageUndoError } from './errors.js';
import { defaultLimits, type Limits } from './limits.js';
import { joinRel, parentOf } from './paths.js';
import { checkTarget, type StageTarget } from './stage-target.js';
import type { TreeRoots } from './tree-roots.js';
import { treePathMeaning, volumesDir, volumeTarPath } from './volume-paths.js';
import { StagingTxn, timeOf } from './staging-txn.js';
import type { ListedFile, ChunkList } from './chunk-list.js';
import { ChunkSupply, type ChunkLocation, type FetchRange, type SupplyStats } from './chunk-supply.js';
import type { TarEntry } from './tar-format.js';
import { readChangeset } from './tar-reader.js';
import type { ChangesetKind } from './built-changeset.js';
import type { StageIntent } from './undo-log.js';
import { validateChangeset, type StagePlan } from './validate.js';
import { validatedAgainst, type ValidatedChangeset } from './streamed-validation.js';
import { makeWhiteoutNode } from './whiteout-node.js';
import { readXattrs, removeXattr, writeXattrs } from './xattr.js';
import { CommitSync } from './commit-sync.js';

export type { StageTarget } from './stage-target.js';
export interface StageResult {
  entries: number; files: number; deletions: number; bytes: number;
  /** Chunks of chunked files taken from the twin's upper dir or volumes and fetched (when the commit has a chunk list). */
  chunks?: SupplyStats;
  /** Where the call's time went (ms, performance.now()): for the standby's per-commit log line. */
  ms: StagePhases;
}

/** The phases of one stageChangeset call, in ms. `apply` holds `take` (completing and checking assembled files) and
 *  `sync` (making the commit durable); `record` is the caller's record(). */
export interface StagePhases {
  /** Validating the file (0 when a plan validated while downloading was given). */
  validate: number;
  /** Finding and fetching the chunks (ChunkSupply.prepare). */
  gather: number;
  apply: number;
  take: number;
  sync: number;
  record: number;
  /** Removing the undo log. */
  discard: number;
}

const since = (t: number): number => Math.round(performance.now() - t);

/** A commit's chunk list, parsed and bounded (chunk-list.ts), and where its chunks come from (chunk-supply.ts). */
export interface StageChunks {
  list: ChunkList;
  /** The twin's chunk index (chunk-index.ts): where (a tar path: the upper dir or a volume) the twin may hold a chunk. */
  locate: (digest: string) => ChunkLocation | undefined;
  /** Ranged reads of the packs the list names. */
  fetch: FetchRange;
  /** Fetched chunks wait here until the commit is applied (created, then removed). Default: `.stage-chunks` in the
   *  target's tmp dir, on the upper dir's mount, so take() links each assembled file into the twin instead of copying
   *  it. Another mount (even of the same file system: dockerd bind-mounts its overlay2 dir onto itself) makes every
   *  link(2) fail with EXDEV: the standby copied a 206 MB file again at every commit (0.8-1.8 s in the cluster). */
  dir?: string;
}

/** The chunk dir's name in the tmp dir: a stray-temp prefix (staging-txn.ts), so recovery removes one a crash left. */
const chunkDirName = '.stage-chunks';
export interface StageOptions {
  limits?: Limits;
  log?: Logger;
  /** What the commit record declares: the blob is refused as soon as it holds more. */
  declared?: DeclaredChangeset;
  /** Aborts validation (between chunks) or the apply (between entries; what was applied is undone). */
  signal?: AbortSignal;
  /** Which commit this is, written into the undo log's intent: recovery rolls it forward when the caller recorded it. */
  intent?: StageIntent;
  /** Runs right before the first write into the upper dir or a volume (after validation and the chunks' fetch); a
   *  throw stages nothing (no undo log is begun) and is rethrown. The stager looks there whether the twin's layers
   *  were mounted since its check (a twin started); a start after it, during the apply, is found by the read that
   *  records the commit, which then records nothing. */
  beforeWrite?: () => Promise<void>;
  /** Records the commit as staged (durably), once it is applied and synced, before its undo log is discarded. When
   *  it throws, the log stays: recoverStaging then rolls the commit forward or undoes it by what is recorded. */
  record?: () => Promise<void>;
  /** Required when the commit record names a chunk list. */
  chunks?: StageChunks;
  /** The plan validated from this blob's bytes as they were downloaded (streamed-validation.ts), for this target:
   *  the blob is then read once, to apply it. */
  validated?: ValidatedChangeset;
}

const opaqueXattr = 'trusted.overlay.opaque';
/** xattrs are written in batches (one setfattr per batch), so what waits for it stays small whatever the changeset. */
const xattrBatchItems = 4096;
const xattrBatchBytes = 4 * 1024 * 1024;

/** Validates the whole changeset first (unless opts.validated did, from the same bytes; throws ChangesetRejectedError naming the entry, ChangesetNoRoomError, or the
 *  signal's reason; nothing written), then applies it into upperDir, syncs the file system and calls `record`. A
 *  failure or an abort while applying undoes what was applied and rethrows (StageUndoError when undoing failed too:
 *  recoverStaging must then run before the upper dir is used). Throws StagePendingError when an earlier commit was
 *  left half staged there. Re-staging the same changeset converges. */
export async function stageChangeset(blobFile: string, kind: ChangesetKind, target: StageTarget, opts: StageOptions = {}): Promise<StageResult> {
  const limits = opts.limits ?? defaultLimits;
  opts.signal?.throwIfAborted();
  // A missing or unreadable blob is an I/O error to retry, not a hostile changeset.
  await access(blobFile, fsc.R_OK);
  const { upper, tmp, roots } = await checkTarget(target);
  await StagingTxn.assertNone(tmp);
  const v = opts.validated;
  if (v !== undefined && v.against !== validatedAgainst(kind, upper, roots)) throw new Error(`a plan validated against ${v.against} given for ${upper}`);
  const ms: StagePhases = { validate: 0, gather: 0, apply: 0, take: 0, sync: 0, record: 0, discard: 0 };
  let t = performance.now();
  const plan = v?.plan ?? await validateChangeset(blobFile, {
    kind, roots, tmpDir: tmp, limits,
    ...(opts.declared === undefined ? {} : { declared: opts.declared }),
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    ...(opts.chunks === undefined ? {} : { chunks: opts.chunks.list }),
  });
  ms.validate = since(t);
  opts.signal?.throwIfAborted();
  // Every chunk is at hand and checked before the first write (a missing or corrupt chunk changes nothing).
  const c = opts.chunks;
  t = performance.now();
  const supply = c === undefined ? null : await ChunkSupply.prepare({
    list: c.list, packs: c.list.packs, roots, locate: c.locate, fetch: c.fetch, dir: c.dir ?? join(tmp, chunkDirName), ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  });
  ms.gather = since(t);
  try {
    return await applyAndRecord(blobFile, kind, roots, tmp, plan, limits, opts, supply, ms);
  } finally {
    // A failure to remove the chunk dir must not replace the outcome (a commit recorded, a refusal): the next prepare()
    // or recovery removes it.
    await supply?.close().catch((err: unknown) => opts.log?.warn('could not remove the chunk dir of a staged commit', { path: join(tmp, chunkDirName), err }));
  }
}

async function applyAndRecord(
  blobFile: string, kind: ChangesetKind, roots: TreeRoots, tmp: string, plan: StagePlan, limits: Limits, opts: StageOptions, supply: ChunkSupply | null,
  ms: StagePhases,
): Promise<StageResult> {
  opts.signal?.throwIfAborted();
  let t = performance.now();
  await opts.beforeWrite?.();
  opts.signal?.throwIfAborted();
  const txn = await StagingTxn.begin(roots, tmp, kind, opts.intent ?? null);
  try {
    const chunked = supply === null ? null : { supply, files: new Map((opts.chunks?.list.files ?? []).map((f) => [f.path, f])) };
    await new Applier(roots, txn, plan, kind, opts.signal, chunked, ms).run(blobFile, limits);
    ms.apply = since(t);
  } catch (err) {
    let steps: number;
    try {
      steps = await txn.undo();
    } catch (undoErr) {
      throw new StageUndoError(`staging failed (${(err as Error).message}) and undoing it failed: ${(undoErr as Error).message}`, { path: roots.upper }, { cause: err, undoError: undoErr });
    }
    opts.log?.info('commit undone after a failure midway', { path: roots.upper, steps, reason: (err as Error).message });
    throw err;
  }
  t = performance.now();
  try {
    await opts.record?.();
  } catch (err) {
    // Whether the record landed is unknown: the log stays, and recovery goes by what the caller finds recorded.
    await txn.leave();
    throw err;
  }
  ms.record = since(t);
  t = performance.now();
  await txn.discard();
  ms.discard = since(t);
  opts.log?.debug('changeset staged', { path: roots.upper, entries: plan.entries, files: plan.files, deletions: plan.deletions, bytes: plan.bytes });
  return { entries: plan.entries, files: plan.files, deletions: plan.deletions, bytes: plan.bytes, ...(supply === null ? {} : { chunks: supply.stats }), ms };
}

interface XattrItem {
  rel: string;
  xattrs: ReadonlyArray<readonly [string, Buffer]>;
  /** A dir updated in place: its stale xattrs go. */
  preexisting?: boolean;
  /** The path existed before the commit: its xattrs are logged before they change. */
  existing?: boolean;
}

class Applier {
  readonly #roots: TreeRoots;
  readonly #txn: StagingTxn;
  readonly #plan: StagePlan;
  readonly #kind: ChangesetKind;
  readonly #signal: AbortSignal | undefined;
  readonly #chunked: { supply: ChunkSupply; files: ReadonlyMap<string, ListedFile> } | null;
  #template: string | null = null;
  #xattrItems: XattrItem[] = [];
  #xattrBytes = 0;
  /** What must be durable before the commit is recorded. */
  readonly #durable = new CommitSync();
  /** Where take() and the sync are counted. */
  readonly #ms: StagePhases;

  constructor(
    roots: TreeRoots, txn: StagingTxn, plan: StagePlan, kind: ChangesetKind, signal: AbortSignal | undefined,
    chunked: { supply: ChunkSupply; files: ReadonlyMap<string, ListedFile> } | null, ms: StagePhases,
  ) {
    this.#ms = ms;
    this.#chunked = chunked;
    this.#roots = roots;
    this.#txn = txn;
    this.#plan = plan;
    this.#kind = kind;
    this.#signal = signal;
  }

  #abs(rel: string): string {
    return this.#roots.abs(rel);
  }

  /** Temp names live in the txn dir: whatever a crash leaves there goes with it. */
  #tempName(): string {
    return join(this.#txn.dir, `t-${randomBytes(8).toString('hex')}`);
  }

  async run(blobFile: string, limits: Limits): Promise<void> {
    // A full changeset replaces the tree: drop everything it does not name first. A volume it names (its root dir
    // is an entry of every full changeset that carries it) is replaced the same way.
    if (this.#kind === 'full') {
      this.#durable.wholeFileSystem();
      await this.#prune('');
      for (const key of this.#roots.volumes.keys()) if (this.#plan.targets.get(volumeTarPath(key, '')) === 'dir') await this.#prune(volumeTarPath(key, ''));
    }
    await readChangeset(blobFile, limits, async (e, body) => {
      this.#signal?.throwIfAborted();
      const meaning = treePathMeaning(e.path);
      if (typeof meaning === 'string') throw new ChangesetRejectedError(meaning, { entry: e.path });
      if (meaning.kind === 'opaque') {
        this.#durable.wholeFileSystem();
        await this.#parentDir(meaning.dir, e.path);
        await this.#prune(meaning.dir);
        // A dir entry of this changeset gets the flag with its own xattrs; a dir on disk changes in place.
        if (!this.#plan.targets.has(meaning.dir)) await this.#queueXattrs({ rel: meaning.dir, xattrs: [[opaqueXattr, Buffer.from('y')]], existing: true });
        return;
      }
      if (meaning.kind === 'whiteout') {
        this.#durable.wholeFileSystem();
        await this.#whiteout(meaning.target, e.removeOnly === true);
        return;
      }
      await this.#parentDir(parentOf(e.path), e.path);
      switch (e.type) {
        case 'dir':
          await this.#dir(e);
          break;
        case 'file':
          await this.#file(e, body.chunks());
          break;
        case 'symlink':
          await this.#symlink(e);
          break;
        case 'hardlink':
          await this.#hardlink(e);
          break;
      }
    });
    this.#signal?.throwIfAborted();
    await this.#flushXattrs();
    // Directory mtimes last: writing their children changed them (setting a dir's own mtime changes no parent's).
    // Each dir entry was noted (its old times logged, or created) when it was written.
    for (const [rel, ns] of this.#plan.dirMtimes) {
      const t = timeOf(ns);
      await lutimes(this.#abs(rel), t, t);
      this.#durable.add(this.#abs(rel));
    }
    const t = performance.now();
    await this.#durable.sync(this.#roots.upper);
    this.#ms.sync = since(t);
  }

  /** `rel` was written, and its parent dir's entries changed (unless the parent is the reserved volumes dir, which
   *  is no directory: a volume's root is its own). */
  #wrote(rel: string): void {
    this.#durable.add(this.#abs(rel));
    if (rel === '') return;
    const parent = parentOf(rel);
    if (parent !== volumesDir) this.#durable.add(this.#abs(parent));
  }

  /** Defence in depth (validation already proved it): `rel` is a real directory. Its owner, mode and times are
   *  logged before the first change to it or its entries. */
  async #parentDir(rel: string, entry: string): Promise<void> {
    // The reserved volumes dir exists nowhere; the volume dirs below it were checked by checkTarget.
    if (rel === volumesDir || this.#txn.isNoted(rel)) return;
    const st = await lstat(this.#abs(rel), { bigint: true });
    if (!st.isDirectory()) throw new ChangesetRejectedError(`parent ${rel || '.'} is not a real directory`, { entry });
    this.#txn.noteDir(rel, st);
  }

  /** Moves children under `dir` (recursively) that this changeset does not name into the undo area. Names on disk
   *  that are not UTF-8 cannot be named by a changeset: they go too. */
  async #prune(dir: string): Promise<void> {
    const absDir = this.#abs(dir);
    const names = await readdir(absDir, { withFileTypes: true, encoding: 'buffer' });
    for (const d of names) {
      const raw = d.name;
      const name = raw.toString('utf8');
      const child = joinRel(dir, name);
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        await this.#parentDir(dir, child);
        const relBytes = Buffer.concat([Buffer.from(dir === '' ? '' : `${dir}/`, 'utf8'), raw]);
        await this.#txn.clearRaw(relBytes, Buffer.concat([Buffer.from(`${absDir}/`, 'utf8'), raw]));
        continue;
      }
      const planned = this.#plan.targets.get(child);
      if (planned === undefined) {
        await this.#parentDir(dir, child);
        await this.#txn.clear(child, false);
      } else if (d.isDirectory() && planned === 'dir') {
        await this.#prune(child);
      }
    }
  }

  async #dir(e: TarEntry): Promise<void> {
    const abs = this.#abs(e.path);
    const st = await lstat(abs, { bigint: true }).catch(() => null);
    const preexisting = st?.isDirectory() === true;
    if (preexisting) {
      this.#txn.noteDir(e.path, st);
    } else {
      await this.#txn.clear(e.path, true);
      await mkdir(abs, { mode: 0o700 });
      this.#txn.noteNewDir(e.path);
    }
    await lchown(abs, e.uid, e.gid);
    await chmod(abs, e.mode);
    this.#wrote(e.path);
    const xattrs = [...e.xattrs];
    if (this.#plan.opaqueDirs.has(e.path)) xattrs.push([opaqueXattr, Buffer.from('y')]);
    await this.#queueXattrs({ rel: e.path, xattrs, preexisting, existing: preexisting });
  }

  /** Puts the temp `tmp` at `rel`; what was there goes to the undo area. */
  async #renameIn(tmp: string, rel: string): Promise<void> {
    await this.#txn.clear(rel, true);
    await rename(tmp, this.#abs(rel));
  }

  async #file(e: TarEntry, chunks: AsyncGenerator<Buffer>): Promise<void> {
    const tmp = this.#tempName();
    let flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    if (e.chunked !== undefined) {
      // Validation matched the entry with its chunk list and the supply gathered every chunk of it: the file it
      // assembled (and checked) becomes the temp file.
      const f = this.#chunked?.files.get(e.path);
      if (f === undefined || this.#chunked === null) throw new ChangesetRejectedError('an entry shipped in chunks without its chunk list', { entry: e.path });
      const t = performance.now();
      await this.#chunked.supply.take(f, tmp);
      this.#ms.take += since(t);
      flags = fsc.O_WRONLY | fsc.O_NOFOLLOW;
    }
    const fh = await open(tmp, flags, 0o600);
    try {
      let pos = 0;
      for await (const chunk of chunks) {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, pos);
          off += bytesWritten;
          pos += bytesWritten;
        }
      }
      // chown before chmod: chown clears setuid/setgid.
      await fh.chown(e.uid, e.gid);
      await fh.chmod(e.mode);
      const t = timeOf(e.mtimeNs);
      await fh.utimes(t, t);
    } finally {
      await fh.close();
    }
    await this.#renameIn(tmp, e.path);
    this.#wrote(e.path);
    if (e.xattrs.length > 0) await this.#queueXattrs({ rel: e.path, xattrs: e.xattrs });
  }

  async #symlink(e: TarEntry): Promise<void> {
    // A symlink cannot be opened to be synced (it would be followed, or refused).
    this.#durable.wholeFileSystem();
    const tmp = this.#tempName();
    await symlink(e.linkpath ?? '', tmp);
    await lchown(tmp, e.uid, e.gid);
    const t = timeOf(e.mtimeNs);
    await lutimes(tmp, t, t);
    await this.#renameIn(tmp, e.path);
    if (e.xattrs.length > 0) await this.#queueXattrs({ rel: e.path, xattrs: e.xattrs });
  }

  async #hardlink(e: TarEntry): Promise<void> {
    this.#durable.wholeFileSystem();
    const target = e.linkpath ?? '';
    await this.#parentDir(parentOf(target), e.path);
    const st = await lstat(this.#abs(target));
    if (!st.isFile()) throw new ChangesetRejectedError('hard link target is not a regular file', { entry: e.path });
    const tmp = this.#tempName();
    // link(2) does not follow a symlink given as the source; the source was checked to be a regular file anyway.
    await link(this.#abs(target), tmp);
    await this.#renameIn(tmp, e.path);
  }

  async #whiteout(rel: string, removeOnly: boolean): Promise<void> {
    await this.#parentDir(parentOf(rel), rel);
    if (removeOnly) {
      await this.#txn.clear(rel, false);
      return;
    }
    if (this.#template === null) {
      const t = this.#tempName();
      await makeWhiteoutNode(t);
      this.#template = t;
    }
    const tmp = this.#tempName();
    await link(this.#template, tmp);
    await this.#renameIn(tmp, rel);
  }

  async #queueXattrs(item: XattrItem): Promise<void> {
    if (item.xattrs.length === 0 && item.preexisting !== true) return;
    this.#xattrItems.push(item);
    for (const [, v] of item.xattrs) this.#xattrBytes += v.length;
    if (this.#xattrItems.length >= xattrBatchItems || this.#xattrBytes >= xattrBatchBytes) await this.#flushXattrs();
  }

  async #flushXattrs(): Promise<void> {
    const items = this.#xattrItems;
    this.#xattrItems = [];
    this.#xattrBytes = 0;
    // Paths that existed before the commit: their xattrs now are what undo restores, logged before any changes.
    const existing = items.filter((i) => i.existing === true).map((i) => this.#abs(i.rel));
    const current = existing.length > 0 ? await readXattrs(existing) : new Map<string, Array<[string, Buffer]>>();
    this.#txn.xattrsBefore(items.filter((i) => i.existing === true).map((i) => [i.rel, current.get(this.#abs(i.rel)) ?? []] as const));
    // Dirs updated in place keep old xattrs: drop those the changeset no longer carries.
    const removals = new Map<string, string[]>();
    for (const i of items) {
      if (i.preexisting !== true) continue;
      const abs = this.#abs(i.rel);
      const wanted = new Set(i.xattrs.map(([n]) => n));
      for (const [name] of current.get(abs) ?? []) {
        if (wanted.has(name)) continue;
        // overlayfs' own bookkeeping stays, except an opaque flag a full changeset no longer carries.
        if (name.startsWith('trusted.overlay.') && !(name === opaqueXattr && this.#kind === 'full')) continue;
        const l = removals.get(name) ?? [];
        l.push(abs);
        removals.set(name, l);
      }
    }
    for (const [name, paths] of removals) await removeXattr(name, paths);
    await writeXattrs(items.map((i) => ({ path: this.#abs(i.rel), xattrs: i.xattrs })), this.#txn.dir);
  }
}
