// Standby side: validate the whole changeset (validate.ts), then apply it into a stopped twin's upper dir.
// Nothing is written through a symlink: every parent is a real directory checked with lstat; files, symlinks,
// hard links and whiteouts are made under a temp name in tmpDir and renamed in (rename replaces the final
// component without following it).
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, rename, rm, symlink, unlink } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { realpath } from 'node:fs/promises';
import type { Logger } from '../log/logger.js';
import type { DeclaredChangeset } from './declared.js';
import { ChangesetRejectedError, StageTargetError } from './errors.js';
import { defaultLimits, type Limits } from './limits.js';
import { joinRel, parentOf, tarPathMeaning } from './paths.js';
import type { TarEntry } from './tar-format.js';
import { readChangeset } from './tar-reader.js';
import type { ChangesetKind } from './built-changeset.js';
import { validateChangeset, type StagePlan } from './validate.js';
import { makeWhiteoutNode } from './whiteout-node.js';
import { readXattrs, removeXattr, writeXattrs } from './xattr.js';
import { syncFileSystem } from './tools.js';

export interface StageTarget { upperDir: string; tmpDir: string }
export interface StageResult { entries: number; files: number; deletions: number; bytes: number }
export interface StageOptions {
  limits?: Limits;
  log?: Logger;
  /** What the commit record declares: the blob is refused as soon as it holds more. */
  declared?: DeclaredChangeset;
  /** Aborts validation (between chunks) and keeps applying from starting; an apply under way is finished. */
  signal?: AbortSignal;
}

const opaqueXattr = 'trusted.overlay.opaque';
/** xattrs are written in batches (one setfattr per batch), so what waits for it stays small whatever the changeset. */
const xattrBatchItems = 4096;
const xattrBatchBytes = 4 * 1024 * 1024;

/** A time utimes(2) sets exactly: seconds as a number; before 1970 a Date, since Node turns a negative number into
 *  "now". Validation bounds the range. */
function timeOf(ns: bigint): number | Date {
  return ns < 0n ? new Date(Number(ns / 1_000_000n)) : Number(ns) / 1e9;
}

async function checkTarget(target: StageTarget): Promise<{ upper: string; tmp: string }> {
  const upper = resolve(target.upperDir);
  const ust = await lstat(upper).catch((err: unknown) => {
    throw new StageTargetError(`upper dir cannot be read: ${(err as Error).message}`, { path: upper });
  });
  if (!ust.isDirectory()) throw new StageTargetError('upper dir is not a directory (or is a symlink)', { path: upper });
  const tmp = resolve(target.tmpDir);
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  const tst = await lstat(tmp);
  if (!tst.isDirectory()) throw new StageTargetError('tmp dir is not a directory (or is a symlink)', { path: tmp });
  if (tst.dev !== ust.dev) throw new StageTargetError('tmp dir must be on the same file system as the upper dir', { path: tmp });
  const rel = relative(await realpath(upper), await realpath(tmp));
  if (rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'))) {
    throw new StageTargetError('tmp dir must lie outside the upper dir', { path: tmp });
  }
  return { upper, tmp };
}

/** Validates the whole changeset first (throws ChangesetRejectedError naming the entry, ChangesetNoRoomError, or the
 *  signal's reason; nothing written), then applies it into upperDir and syncs the file system. Re-staging the same
 *  changeset converges. */
export async function stageChangeset(blobFile: string, kind: ChangesetKind, target: StageTarget, opts: StageOptions = {}): Promise<StageResult> {
  const limits = opts.limits ?? defaultLimits;
  opts.signal?.throwIfAborted();
  // A missing or unreadable blob is an I/O error to retry, not a hostile changeset.
  await access(blobFile, fsc.R_OK);
  const { upper, tmp } = await checkTarget(target);
  const plan = await validateChangeset(blobFile, {
    kind, upperDir: upper, tmpDir: tmp, limits,
    ...(opts.declared === undefined ? {} : { declared: opts.declared }),
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  });
  // The last point where a deadline may stop staging: nothing is written yet.
  opts.signal?.throwIfAborted();
  const applier = new Applier(upper, tmp, plan, kind);
  try {
    await applier.run(blobFile, limits);
  } finally {
    await applier.cleanup();
  }
  opts.log?.debug('changeset staged', { path: upper, entries: plan.entries, files: plan.files, deletions: plan.deletions, bytes: plan.bytes });
  return { entries: plan.entries, files: plan.files, deletions: plan.deletions, bytes: plan.bytes };
}

class Applier {
  readonly #upper: string;
  readonly #tmp: string;
  readonly #plan: StagePlan;
  readonly #kind: ChangesetKind;
  readonly #temps = new Set<string>();
  #template: string | null = null;
  /** xattrs waiting for the next batch; `preexisting` marks a dir updated in place, whose stale xattrs go. */
  #xattrItems: Array<{ path: string; xattrs: ReadonlyArray<readonly [string, Buffer]>; preexisting?: boolean }> = [];
  #xattrBytes = 0;

  constructor(upper: string, tmp: string, plan: StagePlan, kind: ChangesetKind) {
    this.#upper = upper;
    this.#tmp = tmp;
    this.#plan = plan;
    this.#kind = kind;
  }

  #abs(rel: string): string {
    return join(this.#upper, rel);
  }

  #tempName(): string {
    const p = join(this.#tmp, `.stage-${randomBytes(8).toString('hex')}`);
    this.#temps.add(p);
    return p;
  }

  async cleanup(): Promise<void> {
    for (const p of this.#temps) await rm(p, { force: true, recursive: true });
    this.#temps.clear();
  }

  async run(blobFile: string, limits: Limits): Promise<void> {
    // A full changeset replaces the tree: drop everything it does not name first (frees space too).
    if (this.#kind === 'full') await this.#prune('');
    await readChangeset(blobFile, limits, async (e, body) => {
      const meaning = tarPathMeaning(e.path);
      if (typeof meaning === 'string') throw new ChangesetRejectedError(meaning, { entry: e.path });
      if (meaning.kind === 'opaque') {
        await this.#assertRealDir(meaning.dir, e.path);
        await this.#prune(meaning.dir);
        // A dir entry of this changeset gets the flag with its own xattrs.
        if (!this.#plan.targets.has(meaning.dir)) await this.#queueXattrs({ path: this.#abs(meaning.dir), xattrs: [[opaqueXattr, Buffer.from('y')]] });
        return;
      }
      if (meaning.kind === 'whiteout') {
        await this.#whiteout(meaning.target, e.removeOnly === true);
        return;
      }
      await this.#assertRealDir(parentOf(e.path), e.path);
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
    await this.#flushXattrs();
    // Directory mtimes last: writing their children changed them (setting a dir's own mtime changes no parent's).
    for (const [rel, ns] of this.#plan.dirMtimes) {
      const t = timeOf(ns);
      await lutimes(this.#abs(rel), t, t);
    }
    await syncFileSystem(this.#upper);
  }

  /** Defence in depth: validation already proved this, but never write below anything but a real directory. */
  async #assertRealDir(rel: string, entry: string): Promise<void> {
    const st = await lstat(this.#abs(rel));
    if (!st.isDirectory()) throw new ChangesetRejectedError(`parent ${rel || '.'} is not a real directory`, { entry });
  }

  /** Removes whatever is at `rel`, a whole subtree included, without following links. */
  async #removeDirAt(rel: string): Promise<void> {
    const st = await lstat(this.#abs(rel)).catch(() => null);
    if (st?.isDirectory() === true) await rm(this.#abs(rel), { recursive: true, force: true });
  }

  /** Removes children under `dir` (recursively) that this changeset does not name. */
  async #prune(dir: string): Promise<void> {
    const names = await readdir(this.#abs(dir), { withFileTypes: true });
    for (const d of names) {
      const child = joinRel(dir, d.name);
      const planned = this.#plan.targets.get(child);
      if (planned === undefined) {
        await rm(this.#abs(child), { recursive: true, force: true });
      } else if (d.isDirectory() && planned === 'dir') {
        await this.#prune(child);
      }
    }
  }

  async #dir(e: TarEntry): Promise<void> {
    const abs = this.#abs(e.path);
    const st = await lstat(abs).catch(() => null);
    const preexisting = st?.isDirectory() === true;
    if (!preexisting) {
      if (st !== null) await rm(abs, { force: true });
      await mkdir(abs, { mode: 0o700 });
    }
    await lchown(abs, e.uid, e.gid);
    await chmod(abs, e.mode);
    const xattrs = [...e.xattrs];
    if (this.#plan.opaqueDirs.has(e.path)) xattrs.push([opaqueXattr, Buffer.from('y')]);
    await this.#queueXattrs({ path: abs, xattrs, preexisting });
  }

  async #file(e: TarEntry, chunks: AsyncGenerator<Buffer>): Promise<void> {
    const tmp = this.#tempName();
    const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
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
    await this.#removeDirAt(e.path);
    await rename(tmp, this.#abs(e.path));
    this.#temps.delete(tmp);
    if (e.xattrs.length > 0) await this.#queueXattrs({ path: this.#abs(e.path), xattrs: e.xattrs });
  }

  async #symlink(e: TarEntry): Promise<void> {
    const tmp = this.#tempName();
    await symlink(e.linkpath ?? '', tmp);
    await lchown(tmp, e.uid, e.gid);
    const t = timeOf(e.mtimeNs);
    await lutimes(tmp, t, t);
    await this.#removeDirAt(e.path);
    await rename(tmp, this.#abs(e.path));
    this.#temps.delete(tmp);
    if (e.xattrs.length > 0) await this.#queueXattrs({ path: this.#abs(e.path), xattrs: e.xattrs });
  }

  /** Renames `tmp` over `rel`; when both already name the same inode rename does nothing, so drop `tmp`. */
  async #renameIn(tmp: string, rel: string): Promise<void> {
    await this.#removeDirAt(rel);
    await rename(tmp, this.#abs(rel));
    await unlink(tmp).catch(() => undefined);
    this.#temps.delete(tmp);
  }

  async #hardlink(e: TarEntry): Promise<void> {
    const target = e.linkpath ?? '';
    await this.#assertRealDir(parentOf(target), e.path);
    const st = await lstat(this.#abs(target));
    if (!st.isFile()) throw new ChangesetRejectedError('hard link target is not a regular file', { entry: e.path });
    const tmp = this.#tempName();
    // link(2) does not follow a symlink given as the source; the source was checked to be a regular file anyway.
    await link(this.#abs(target), tmp);
    await this.#renameIn(tmp, e.path);
  }

  async #whiteout(rel: string, removeOnly: boolean): Promise<void> {
    await this.#assertRealDir(parentOf(rel), rel);
    if (removeOnly) {
      await rm(this.#abs(rel), { recursive: true, force: true });
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

  async #queueXattrs(item: { path: string; xattrs: ReadonlyArray<readonly [string, Buffer]>; preexisting?: boolean }): Promise<void> {
    if (item.xattrs.length === 0 && item.preexisting !== true) return;
    this.#xattrItems.push(item);
    for (const [, v] of item.xattrs) this.#xattrBytes += v.length;
    if (this.#xattrItems.length >= xattrBatchItems || this.#xattrBytes >= xattrBatchBytes) await this.#flushXattrs();
  }

  async #flushXattrs(): Promise<void> {
    const items = this.#xattrItems;
    this.#xattrItems = [];
    this.#xattrBytes = 0;
    // Dirs updated in place keep old xattrs: drop those the changeset no longer carries.
    const pre = items.filter((i) => i.preexisting === true).map((i) => i.path);
    if (pre.length > 0) {
      const current = await readXattrs(pre);
      const wanted = new Map(items.map((i) => [i.path, new Set(i.xattrs.map(([n]) => n))]));
      const removals = new Map<string, string[]>();
      for (const [path, list] of current) {
        for (const [name] of list) {
          if (wanted.get(path)?.has(name) === true) continue;
          // overlayfs' own bookkeeping stays, except an opaque flag a full changeset no longer carries.
          if (name.startsWith('trusted.overlay.') && !(name === opaqueXattr && this.#kind === 'full')) continue;
          const l = removals.get(name) ?? [];
          l.push(path);
          removals.set(name, l);
        }
      }
      for (const [name, paths] of removals) await removeXattr(name, paths);
    }
    await writeXattrs(items, this.#tmp);
  }
}
