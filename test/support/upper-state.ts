// Everything staging can change in an upper dir, path by path: type, mode, owner, content, link target, device
// number (whiteouts), mtime (not of whiteouts), xattrs (trusted.overlay.* included), link count and hard-link group. Directory mtimes are
// kept apart: an undo restores them through utimes (a double of seconds, so within a microsecond), and a commit
// leaves "now" on the parents it does not carry. The atomic-staging tests compare states with it.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { readXattrs } from '../../src/changeset/xattr.js';

export interface UpperState {
  /** Relative path ('' for the upper dir itself) -> a canonical description. */
  entries: Map<string, string>;
  /** Directory -> mtime in nanoseconds. */
  dirTimes: Map<string, bigint>;
}

export async function upperState(root: string, max = 200_000): Promise<UpperState> {
  const entries = new Map<string, string>();
  const dirTimes = new Map<string, bigint>();
  const firstPathOfInode = new Map<bigint, string>();
  const paths: string[] = [];
  const describe = new Map<string, Record<string, unknown>>();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const d: Record<string, unknown> = { mode: (st.mode & 0o7777n).toString(8), uid: Number(st.uid), gid: Number(st.gid) };
    if (st.isDirectory()) {
      d['type'] = 'dir';
      dirTimes.set(rel, st.mtimeNs);
    } else {
      // A whiteout's mtime is when staging made it; nothing ships or reads it.
      if (!st.isCharacterDevice()) d['mtimeNs'] = st.mtimeNs.toString();
      if (st.isFile()) {
        d['type'] = 'file';
        d['sha256'] = createHash('sha256').update(await readFile(abs)).digest('hex');
        d['nlink'] = Number(st.nlink);
        const first = firstPathOfInode.get(st.ino);
        if (first === undefined) firstPathOfInode.set(st.ino, rel);
        else d['linkOf'] = first;
      } else if (st.isSymbolicLink()) {
        d['type'] = 'symlink';
        d['target'] = await readlink(abs);
      } else if (st.isCharacterDevice()) {
        d['type'] = 'char';
        d['rdev'] = st.rdev.toString();
      } else d['type'] = 'other';
    }
    paths.push(rel);
    describe.set(rel, d);
    if (paths.length > max) throw new Error(`${root} holds more than ${max} entries`);
    if (st.isDirectory()) for (const name of (await readdir(abs)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
  };
  await visit('');
  const xattrs = await readXattrs(paths.map((p) => (p === '' ? root : join(root, p))));
  for (const p of paths) {
    const x = xattrs.get(p === '' ? root : join(root, p)) ?? [];
    entries.set(p, JSON.stringify({ ...describe.get(p), xattrs: x.map(([n, v]) => `${n}=${v.toString('hex')}`) }));
  }
  return { entries, dirTimes };
}

/** Differences between two states, at most `limit`; directory mtimes compared within `dirTimeSlackNs`, or not at all
 *  when null. */
export function diffStates(a: UpperState, b: UpperState, dirTimeSlackNs: bigint | null = 2000n, limit = 20): string[] {
  const out: string[] = [];
  for (const [p, v] of a.entries) {
    const w = b.entries.get(p);
    if (w === undefined) out.push(`only in A: ${p || '.'} ${v}`);
    else if (w !== v) out.push(`differs: ${p || '.'}: A=${v} B=${w}`);
  }
  for (const [p, w] of b.entries) if (!a.entries.has(p)) out.push(`only in B: ${p || '.'} ${w}`);
  if (dirTimeSlackNs !== null) {
    for (const [p, t] of a.dirTimes) {
      const u = b.dirTimes.get(p);
      if (u === undefined) continue;
      const d = t > u ? t - u : u - t;
      if (d > dirTimeSlackNs) out.push(`dir mtime differs: ${p || '.'}: A=${t} B=${u}`);
    }
  }
  return out.slice(0, limit);
}
