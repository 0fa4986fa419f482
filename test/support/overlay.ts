// Real overlayfs mounts for tests (root only), and a tree snapshot to compare two merged views.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface OverlayDirs {
  lower: string;
  upper: string;
  work: string;
  merged: string;
}

/** Fails loudly (never skips) when the test cannot mount. */
export function requireRoot(): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('this test needs root (overlayfs mounts, mknod, trusted.* xattrs); run it as root');
  }
}

/** Creates upper/work/merged under `base/name` over an existing lower dir. */
export async function makeOverlayDirs(base: string, name: string, lower: string): Promise<OverlayDirs> {
  const dirs = { lower, upper: join(base, name, 'upper'), work: join(base, name, 'work'), merged: join(base, name, 'merged') };
  for (const d of [dirs.upper, dirs.work, dirs.merged]) await mkdir(d, { recursive: true });
  return dirs;
}

/** Mounts like Docker's overlay2 with "Native Overlay Diff": no redirect_dir, no metacopy, no index. */
export async function mountOverlay(d: OverlayDirs): Promise<void> {
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work},redirect_dir=off,index=off,metacopy=off`, d.merged]);
}

export async function unmountOverlay(d: OverlayDirs): Promise<void> {
  await run('umount', [d.merged]);
}

/** Unmounts if mounted; for `after` hooks. */
export async function unmountQuietly(d: OverlayDirs): Promise<void> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  if (mounts.split('\n').some((l) => l.split(' ')[1] === d.merged)) await run('umount', ['-l', d.merged]);
}

/** A small lower dir with what the merged-view tests exercise: nested dirs, an executable, symlinks (relative and
 *  absolute), a hard link pair, an empty dir. */
export async function buildSampleLower(lower: string): Promise<void> {
  const f = async (rel: string, data: string, mode = 0o644): Promise<void> => {
    await mkdir(join(lower, rel, '..'), { recursive: true });
    await writeFile(join(lower, rel), data, { mode });
  };
  await f('etc/app.conf', 'listen 80\n');
  await f('etc/hosts.d/one', 'one\n');
  await f('etc/hosts.d/two', 'two\n');
  await f('usr/bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  await f('usr/lib/libx.so', 'ELF...');
  await f('data/deep/er/file', 'deep');
  await mkdir(join(lower, 'var/empty'), { recursive: true });
  await symlink('usr/lib', join(lower, 'lib'));
  await symlink('/etc/app.conf', join(lower, 'etc/abs'));
  await f('h1', 'hard-linked');
  await link(join(lower, 'h1'), join(lower, 'h2'));
}

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  target?: string;
  /** microseconds: what the standby can restore through utimes */
  mtimeUs?: bigint;
  ino: bigint;
}

/** Walks a tree without following symlinks; `skip` leaves out relative paths (and what is under them). */
export async function snapshotTree(root: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (skip(child)) continue;
      const abs = join(root, child);
      const st = await lstat(abs, { bigint: true });
      const info: NodeInfo = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: st.isFile() ? Number(st.size) : 0,
        ino: st.ino,
      };
      if (info.type === 'file') {
        info.sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
        info.mtimeUs = st.mtimeNs / 1000n;
      }
      if (info.type === 'symlink') info.target = await readlink(abs);
      out.set(child, info);
      if (info.type === 'dir') await visit(child);
    }
  };
  await visit('');
  return out;
}

/** Human-readable differences between two snapshots (inode numbers are not compared). */
export function diffTrees(a: Map<string, NodeInfo>, b: Map<string, NodeInfo>): string[] {
  const diffs: string[] = [];
  // utimes on the standby goes through a double of seconds: allow 2 microseconds of rounding.
  const strip = (n: NodeInfo): Omit<NodeInfo, 'ino' | 'mtimeUs'> => {
    const { ino: _ino, mtimeUs: _m, ...rest } = n;
    return rest;
  };
  const closeTimes = (x: NodeInfo, y: NodeInfo): boolean => {
    if (x.mtimeUs === undefined || y.mtimeUs === undefined) return x.mtimeUs === y.mtimeUs;
    const d = x.mtimeUs - y.mtimeUs;
    return d <= 2n && d >= -2n;
  };
  for (const [p, x] of a) {
    const y = b.get(p);
    if (y === undefined) diffs.push(`only in A: ${p}`);
    else if (JSON.stringify(strip(x), bigintJson) !== JSON.stringify(strip(y), bigintJson) || !closeTimes(x, y)) {
      diffs.push(`differs: ${p}: A=${JSON.stringify(x, bigintJson)} B=${JSON.stringify(y, bigintJson)}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) diffs.push(`only in B: ${p}`);
  return diffs;
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

/** Groups of regular files sharing an inode, as sorted path lists; compare two upper dirs with it. */
export function hardLinkGroups(m: Map<string, NodeInfo>): string[] {
  const byIno = new Map<bigint, string[]>();
  for (const [p, n] of m) if (n.type === 'file') byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), p]);
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort().join('|')).sort();
}
