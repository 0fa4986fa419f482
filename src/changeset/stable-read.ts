// Torn-read detection: a node is read between stats that must all show what the scan saw (inode, size, mtime,
// ctime); a writer that changed it meanwhile makes the read fail, never a mix of two versions. Within one timestamp
// tick a change can keep every stat field as it was: racy.ts covers that case.
import { constants as fsc, type BigIntStats } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import { isMissing, lstatOrNull } from './upper-node.js';

type StatLike = Pick<BigIntStats, 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>;

function sameStat(a: StatLike | null, b: StatLike): boolean {
  return a !== null && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** A file being read is stat'ed again after every read of this many bytes or more (see readFileStable). */
export const recheckEveryBytes = 4 * 1024 * 1024;

/** Streams the regular file `abs` to `onChunk` (after `onStart`); false when it is gone, a symlink now, or differs
 *  from `st` before, during or after the read — `onChunk` may then have seen part of it. A large file is stat'ed
 *  again every `recheckEveryBytes` while it is read, and the read gives up at the first difference: a file still
 *  being written (a bulk write the burst's first flush found) cannot be shipped anyway, and reading, chunking and
 *  uploading the rest of it only delays the build that will ship it once the writer is done. */
export async function readFileStable(abs: string, st: StatLike, onStart: () => Promise<void>, onChunk: (chunk: Buffer) => Promise<void> | void): Promise<boolean> {
  let fh;
  try {
    fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') return false;
    throw err;
  }
  try {
    if (!sameStat(await fh.stat({ bigint: true }), st)) return false;
    await onStart();
    const size = Number(st.size);
    const buf = Buffer.allocUnsafe(Math.min(Math.max(size, 1), 1024 * 1024));
    let done = 0;
    let checkedAt = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - done), done);
      if (bytesRead === 0) break;
      // Before the bytes are handed on: what a changed file read since the last check is not worth chunking.
      if (done + bytesRead - checkedAt >= recheckEveryBytes && done + bytesRead < size) {
        if (!sameStat(await fh.stat({ bigint: true }), st)) return false;
        checkedAt = done + bytesRead;
      }
      await onChunk(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    if (done !== size || !sameStat(await fh.stat({ bigint: true }), st)) return false;
  } finally {
    await fh.close();
  }
  return sameStat(await lstatOrNull(abs), st);
}

/** The target of the symlink `abs`, or null when it is gone or was replaced or changed while being read. */
export async function readLinkStable(abs: string, st: StatLike): Promise<string | null> {
  let target: string;
  try {
    target = await readlink(abs);
  } catch (err) {
    if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return null;
    throw err;
  }
  const after = await lstatOrNull(abs);
  return after !== null && after.ino === st.ino && after.ctimeNs === st.ctimeNs ? target : null;
}
