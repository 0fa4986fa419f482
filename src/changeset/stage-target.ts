// Where a commit is staged: a stopped twin's upper dir, its volumes' dirs, and a tmp dir on the same file system
// outside all of them (temp files renamed in, the undo log and the undo area of the commit in progress). One undo
// log covers the upper dir and the volumes, so a commit is staged whole or not at all.
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import { StageTargetError } from './errors.js';
import { TreeRoots } from './tree-roots.js';
import { volumeKeyProblem } from './volume-paths.js';

export interface StageTarget {
  upperDir: string;
  tmpDir: string;
  /** The twin's volumes by name (the same name as on the primary): the dir each one's content lives in. */
  volumes?: Readonly<Record<string, string>>;
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
}

/** Resolves the dirs and checks them: the upper dir and each volume dir a real directory reached without a symlink
 *  (a volume's), the tmp dir (created when missing) a real directory on the same file system, outside all of them. */
export async function checkTarget(target: StageTarget): Promise<{ upper: string; tmp: string; roots: TreeRoots }> {
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
  const realUpper = await realpath(upper);
  const realTmp = await realpath(tmp);
  if (isInside(realTmp, realUpper)) throw new StageTargetError('tmp dir must lie outside the upper dir', { path: tmp });
  const volumes = new Map<string, string>();
  for (const [key, raw] of Object.entries(target.volumes ?? {})) {
    const problem = volumeKeyProblem(key);
    if (problem !== null) throw new StageTargetError(`volume ${problem}`, { path: raw });
    const dir = resolve(raw);
    const vst = await lstat(dir).catch((err: unknown) => {
      throw new StageTargetError(`volume ${key}: its dir cannot be read: ${(err as Error).message}`, { path: dir });
    });
    if (!vst.isDirectory()) throw new StageTargetError(`volume ${key}: its dir is not a directory (or is a symlink)`, { path: dir });
    if ((await realpath(dir)) !== dir) throw new StageTargetError(`volume ${key}: its dir is reached through a symlink`, { path: dir });
    // Moves into the undo area and renames of temp files in must not cross file systems.
    if (vst.dev !== tst.dev) throw new StageTargetError(`volume ${key}: its dir must be on the same file system as the tmp dir`, { path: dir });
    if (isInside(realTmp, dir) || isInside(dir, realTmp)) throw new StageTargetError(`volume ${key}: its dir and the tmp dir must not contain each other`, { path: dir });
    if (isInside(dir, realUpper) || isInside(realUpper, dir)) throw new StageTargetError(`volume ${key}: its dir and the upper dir must not contain each other`, { path: dir });
    for (const [other, otherDir] of volumes) {
      if (isInside(dir, otherDir) || isInside(otherDir, dir)) throw new StageTargetError(`volumes ${other} and ${key} share a dir`, { path: dir });
    }
    volumes.set(key, dir);
  }
  return { upper, tmp, roots: new TreeRoots(upper, volumes) };
}
