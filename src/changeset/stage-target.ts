// Where a commit is staged: a stopped twin's upper dir, and a tmp dir on the same file system outside it (temp files
// renamed in, the undo log and the undo area of the commit in progress).
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { StageTargetError } from './errors.js';

export interface StageTarget { upperDir: string; tmpDir: string }

/** Resolves both dirs and checks them: the upper dir a real directory, the tmp dir (created when missing) a real
 *  directory on the same file system, outside the upper dir. */
export async function checkTarget(target: StageTarget): Promise<{ upper: string; tmp: string }> {
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
  // `..foo` is a name inside the upper dir; only `..` itself or a path through it leads out.
  const outside = rel === '..' || rel.startsWith('../') || isAbsolute(rel);
  if (!outside) {
    throw new StageTargetError('tmp dir must lie outside the upper dir', { path: tmp });
  }
  return { upper, tmp };
}
