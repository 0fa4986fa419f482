// Copies one node of the upper dir into the tar, never torn: a file is read between two stats that must both
// match the scan's (inode, size, mtime, ctime), and an entry that changed meanwhile is cut off again.
import { constants as fsc, type BigIntStats } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import type { ChangesetCounts } from './built-changeset.js';
import type { TarEntry } from './tar-format.js';
import type { TarFileWriter } from './tar-writer.js';
import { isMissing, lstatOrNull, type Cand } from './upper-node.js';

/** Writes `c` (a file, dir, symlink, or a hard link to `linkTo`); false when it changed while being read (torn). */
export async function copyEntry(writer: TarFileWriter, abs: string, c: Cand, linkTo: string | undefined, counts: ChangesetCounts): Promise<boolean> {
  const base: TarEntry = {
    path: c.path,
    type: 'dir',
    mode: Number(c.st.mode) & 0o7777,
    uid: Number(c.st.uid),
    gid: Number(c.st.gid),
    mtimeNs: c.st.mtimeNs,
    size: 0,
    xattrs: (c.xattrs ?? []).filter(([n]) => !n.startsWith('trusted.overlay.')),
  };
  if (c.kind === 'd') {
    await writer.writeEntry(base);
    return true;
  }
  if (c.kind === 'l') {
    let target: string;
    try {
      target = await readlink(abs);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw err;
    }
    const after = await lstatOrNull(abs);
    if (after === null || after.ino !== c.st.ino || after.ctimeNs !== c.st.ctimeNs) return false;
    await writer.writeEntry({ ...base, type: 'symlink', linkpath: target });
    return true;
  }
  if (linkTo !== undefined) {
    await writer.writeEntry({ path: c.path, type: 'hardlink', mode: base.mode, uid: base.uid, gid: base.gid, mtimeNs: base.mtimeNs, size: 0, linkpath: linkTo, xattrs: [] });
    return true;
  }
  const size = Number(c.st.size);
  const start = writer.position;
  const ok = await copyFileBody(writer, abs, c.st, { ...base, type: 'file', size });
  if (!ok) {
    await writer.truncateTo(start);
    return false;
  }
  await writer.padBody(size);
  counts.bytes += size;
  return true;
}

/** Header and body of a regular file; false (the caller truncates) when it is gone or differs from `st`. */
async function copyFileBody(writer: TarFileWriter, abs: string, st: BigIntStats, header: TarEntry): Promise<boolean> {
  let fh;
  try {
    fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (isMissing(err) || code === 'ELOOP') return false;
    throw err;
  }
  try {
    const same = (s: BigIntStats): boolean => s.ino === st.ino && s.size === st.size && s.mtimeNs === st.mtimeNs && s.ctimeNs === st.ctimeNs;
    if (!same(await fh.stat({ bigint: true }))) return false;
    const size = header.size;
    await writer.writeHeader(header);
    const buf = Buffer.allocUnsafe(Math.min(Math.max(size, 1), 1024 * 1024));
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - done), done);
      if (bytesRead === 0) break;
      await writer.writeBody(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    if (done !== size || !same(await fh.stat({ bigint: true }))) return false;
    const after = await lstatOrNull(abs);
    return after !== null && same(after);
  } finally {
    await fh.close();
  }
}
