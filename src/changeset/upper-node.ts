// One node of an upper dir as a scan found it: what it is, its stat, and whether it ships whatever the index says.
import type { BigIntStats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { isWhiteoutStat } from './whiteout-node.js';
import type { Xattrs } from './xattr.js';

/** f file, d dir, l symlink, w whiteout (char device 0/0). */
export type NodeKind = 'f' | 'd' | 'l' | 'w';

export interface Cand {
  path: string;
  st: BigIntStats;
  kind: NodeKind;
  /** Under a new or replaced dir (or a full build), or a dir above something that ships: shipped whatever the index
   *  says. */
  forced: boolean;
  xattrs?: Xattrs;
  opaque: boolean;
  /** A racily clean node whose stat matches the index: whether its fingerprint still does (racy.ts). */
  racy?: 'same' | 'changed';
}

export function kindOf(st: BigIntStats): NodeKind | null {
  if (st.isDirectory()) return 'd';
  if (st.isFile()) return 'f';
  if (st.isSymbolicLink()) return 'l';
  if (isWhiteoutStat(st)) return 'w';
  return null;
}

export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** lstat, or null when the path (or a dir on the way) is gone: the container may remove anything at any time. */
export async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}
