// Copies one node of the upper dir into the tar, never torn (stable-read.ts): an entry whose node changed while
// being read is cut off again. A racily clean node (racy.ts) also feeds what is read to its fingerprint.
import type { ChangesetCounts } from './built-changeset.js';
import type { ChunkedFile } from './chunk-list.js';
import { copyChunked, type ChunkSink } from './chunked-copy.js';
import type { Fingerprint } from './racy.js';
import { readFileStable, readLinkStable } from './stable-read.js';
import type { TarEntry } from './tar-format.js';
import type { TarFileWriter } from './tar-writer.js';
import type { Cand } from './upper-node.js';

/** Where a file to be shipped in chunks goes: its new chunks to the sink, its list entry to `files`. */
export interface ChunkTarget {
  sink: ChunkSink;
  files: ChunkedFile[];
}

/** Writes `c` as `tarPath` (a file, dir, symlink, or a hard link to `linkTo`, a tar path too); false when it changed
 *  while being read (torn). A regular file with `chunk` goes out as chunks (chunked-copy.ts), its list entry named by
 *  `tarPath`. */
export async function copyEntry(
  writer: TarFileWriter, abs: string, c: Cand, tarPath: string, linkTo: string | undefined, counts: ChangesetCounts, print?: Fingerprint, chunk?: ChunkTarget,
): Promise<boolean> {
  const base: TarEntry = {
    path: tarPath,
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
    const target = await readLinkStable(abs, c.st);
    if (target === null) return false;
    print?.update(target);
    await writer.writeEntry({ ...base, type: 'symlink', linkpath: target });
    return true;
  }
  if (linkTo !== undefined) {
    await writer.writeEntry({ path: tarPath, type: 'hardlink', mode: base.mode, uid: base.uid, gid: base.gid, mtimeNs: base.mtimeNs, size: 0, linkpath: linkTo, xattrs: [] });
    return true;
  }
  if (chunk !== undefined) {
    const file = await copyChunked(writer, abs, c, base, chunk.sink, print);
    if (file === null) return false;
    chunk.files.push(file);
    return true;
  }
  const size = Number(c.st.size);
  const start = writer.position;
  const ok = await readFileStable(abs, c.st, () => writer.writeHeader({ ...base, type: 'file', size }), async (chunk) => {
    print?.update(chunk);
    await writer.writeBody(chunk);
  });
  if (!ok) {
    await writer.truncateTo(start);
    return false;
  }
  await writer.padBody(size);
  counts.bytes += size;
  return true;
}
