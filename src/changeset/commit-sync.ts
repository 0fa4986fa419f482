// Making an applied commit durable before it is recorded. A small commit of regular files and directories syncs
// exactly what it changed: each file and directory written (data, owner, mode, times, xattrs) and each directory whose
// entries changed (the renames into it). Anything else — a symlink, a hard link, a whiteout, a removal, a full
// commit, more than SMALL_COMMIT_PATHS paths, a path that cannot be opened as a file or directory — syncs the whole
// file system (syncfs through `sync -f`), as every commit did before. Why: syncfs flushes everything dirty on the
// file system, whoever wrote it; on a host whose Docker data root shares its file system with busy containers or
// builds, that made a 4 KiB commit wait for other writers' data (and a spawn), where a few fsyncs are a fraction of
// a millisecond each.
import { constants as fsc } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { syncFileSystem } from './tools.js';

/** Paths a commit may sync one by one; past this the whole file system is synced (one call, whatever the size). */
export const SMALL_COMMIT_PATHS = 64;

export class CommitSync {
  readonly #paths = new Set<string>();
  #whole = false;
  readonly #syncWhole: (dir: string) => Promise<void>;

  /** `syncWhole` syncs the file system holding a dir (default: syncfs through `sync -f`). */
  constructor(syncWhole: (dir: string) => Promise<void> = syncFileSystem) {
    this.#syncWhole = syncWhole;
  }

  /** A file or directory the commit wrote, or a directory whose entries it changed (an absolute path). */
  add(abs: string): void {
    if (this.#whole) return;
    this.#paths.add(abs);
    if (this.#paths.size > SMALL_COMMIT_PATHS) this.wholeFileSystem();
  }

  /** The commit changed something a path-by-path sync does not cover. */
  wholeFileSystem(): void {
    this.#whole = true;
    this.#paths.clear();
  }

  /** Whether sync() will sync the whole file system. */
  get whole(): boolean {
    return this.#whole;
  }

  /** Makes what the commit changed durable; `fsDir` names the file system synced whole when it must be. */
  async sync(fsDir: string): Promise<void> {
    if (!this.#whole) {
      const done = await Promise.allSettled([...this.#paths].map(fsyncPath));
      if (done.every((r) => r.status === 'fulfilled')) return;
      // A write error (EIO, ENOSPC, EDQUOT) is the commit's failure: after a failed fsync the kernel has dropped the
      // dirty pages, and a syncfs run now may not report it (another one may have taken the error first).
      const failed = done.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof NotSyncableAlone));
      if (failed !== undefined) throw failed.reason;
    }
    // A path that could not be synced alone (gone, or not a file or directory): the whole file system is.
    await this.#syncWhole(fsDir);
  }
}

/** A path that is not a regular file or directory any more (gone, replaced by a symlink or a device). */
class NotSyncableAlone extends Error {}

const goneCodes = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/** fsync(2) of a regular file or directory, never through a symlink, never opening anything else (a device). */
async function fsyncPath(abs: string): Promise<void> {
  const notAlone = (err: unknown): never => {
    if (goneCodes.has((err as NodeJS.ErrnoException).code ?? '')) throw new NotSyncableAlone(`${abs}: ${(err as Error).message}`);
    throw err;
  };
  const before = await lstat(abs).catch(notAlone);
  if (!before.isFile() && !before.isDirectory()) throw new NotSyncableAlone(`${abs} is neither a regular file nor a directory`);
  const fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY).catch(notAlone);
  try {
    const st = await fh.stat();
    if (!st.isFile() && !st.isDirectory()) throw new NotSyncableAlone(`${abs} is neither a regular file nor a directory`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
