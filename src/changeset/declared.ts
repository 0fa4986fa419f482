// What a commit record says about its changeset (counts and stored size). The puller checks it before downloading
// the blob, and validation holds the blob to it entry by entry: a blob that declares more than its record is
// refused at the first header that passes the record, without reading on.
import { statfs } from 'node:fs/promises';
import { expansionAllowanceBytes, type Limits } from './limits.js';
import { blockSize } from './tar-format.js';

export interface DeclaredChangeset {
  /** Entries that are not deletions: files, directories, links (opaque markers are not counted). */
  files: number;
  /** Whiteouts. */
  deletions: number;
  /** Body bytes of the regular files. */
  bytes: number;
  /** Stored (gzip) bytes of the blob. */
  size: number;
}

/** The uncompressed bytes a blob of `size` stored bytes may expand to under `limits`. */
export function expansionBound(size: number, limits: Limits): number {
  return Math.min(limits.maxTotalBytes, Math.max(expansionAllowanceBytes, size * limits.maxExpansionRatio));
}

/** Why a changeset declaring this is refused without being downloaded, or null. */
export function declaredProblem(d: DeclaredChangeset, limits: Limits): string | null {
  const entries = d.files + d.deletions;
  if (entries > limits.maxEntries) return `the record declares ${entries} entries; the limit is ${limits.maxEntries}`;
  if (d.bytes > limits.maxTotalBytes) return `the record declares ${d.bytes} bytes of files; the limit is ${limits.maxTotalBytes}`;
  // The least the tar can hold: the bodies, a header per entry, the end-of-archive marker.
  const least = d.bytes + entries * blockSize + 2 * blockSize;
  const most = expansionBound(d.size, limits);
  if (least > most) {
    return `the record declares at least ${least} uncompressed bytes in a blob of ${d.size}; at most ${most} are accepted (expansion ratio ${limits.maxExpansionRatio}:1)`;
  }
  return null;
}

/** Free bytes staging needs on the target: the file bodies plus a block per entry for inodes and directory growth. */
export function bytesNeeded(d: Pick<DeclaredChangeset, 'files' | 'deletions' | 'bytes'>): number {
  return d.bytes + (d.files + d.deletions) * 4096;
}

/** Why the file system of `dir` has no room for `need` bytes right now, or null. */
export async function roomProblem(dir: string, need: number): Promise<string | null> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  return need > free ? `changeset needs ${need} bytes, the target has ${free} free` : null;
}
