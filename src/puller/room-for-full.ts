// Room for a full checkpoint. Staged as one undoable step, a full checkpoint keeps the tree it replaces (in the undo
// area) until it is recorded, so it needs free space for all of itself: a twin whose disk cannot hold its tree twice
// would wait for space forever, never getting the checkpoint that replaces it. When the space its prune frees would
// make the room, and the twin's upper dir is no trusted state anyway (it holds no staged commit, or is held after a
// restart mid-commit or an earlier emptying), the old upper dir goes first: the twin is held (an emptied upper dir is no state of its container, so it
// does not boot) until the full checkpoint is staged. A twin that holds a trusted staged state is never emptied: it
// waits for room, and boots what it holds if a failover comes first. Volumes are left alone (a full checkpoint
// replaces only the volumes it carries).
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Entries looked at while adding up a tree, at most: a tree larger than this counts as what was seen. */
const maxEntries = 1_000_000;

/**
 * The bytes the files and directories under `dir` take on its file system (each inode once), counted until they
 * reach `enough`: that many are freed when the tree goes. Symlinks are not followed, other file systems (a mount
 * point under the dir) not counted.
 */
export async function bytesFreedByEmptying(dir: string, enough: number): Promise<number> {
  const root = await lstat(dir, { bigint: true });
  const seen = new Set<bigint>();
  let total = 0;
  let entries = 0;
  const stack: string[] = [dir];
  while (stack.length > 0 && total < enough && entries < maxEntries) {
    const at = stack.pop()!;
    let names: string[];
    try {
      names = await readdir(at);
    } catch {
      continue;
    }
    for (const name of names) {
      if (++entries > maxEntries || total >= enough) break;
      const p = join(at, name);
      const st = await lstat(p, { bigint: true }).catch(() => null);
      if (st === null || st.dev !== root.dev || seen.has(st.ino)) continue;
      if (st.nlink > 1n) seen.add(st.ino);
      total += Number(st.blocks) * 512;
      if (st.isDirectory()) stack.push(p);
    }
  }
  return total;
}

/** Removes everything in `dir`, not `dir` itself. */
export async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}
