// The comparison of what a scan found with what was last shipped: by stat fingerprint (shipped-index.ts), and
// by content for a node shipped within a timestamp tick of its last change (racy.ts).
import type { BigIntStats } from 'node:fs';
import { recFromStat, sameRec, type ShippedRec } from './shipped-index.js';
import type { Cand } from './upper-node.js';

export type ShippedIndex = ReadonlyMap<string, ShippedRec>;

/** A dir the index does not know as this dir (absent, another kind, another inode): everything under it ships. */
export function isNewDir(index: ShippedIndex, path: string, st: BigIntStats): boolean {
  const old = index.get(path);
  return old === undefined || old.t !== 'd' || old.ino !== Number(st.ino);
}

/** Whether `c` goes into the changeset. Before its xattrs are read, a dir keeps the opaque flag it was shipped with;
 *  a racily clean node ships once its content check found a change. */
export function candShips(index: ShippedIndex, c: Cand): boolean {
  if (c.forced) return true;
  const old = index.get(c.path);
  if (c.kind === 'w') return old?.t !== 'w';
  const opaque = c.xattrs === undefined ? old?.o === true : c.opaque;
  return !sameRec(old, recFromStat(c.kind, c.st, opaque)) || c.racy === 'changed';
}

/** Its xattrs are worth reading: the stat differs from the index, or it is racily clean (they are in its fingerprint). */
export function needsXattrs(index: ShippedIndex, c: Cand): boolean {
  const old = index.get(c.path);
  if (c.kind === 'w') return old?.t !== 'w';
  return old?.h !== undefined || !sameRec(old, recFromStat(c.kind, c.st, old?.o === true));
}

/** Racily clean and unchanged by stat: only a content check can tell whether it changed. */
export function needsContentCheck(index: ShippedIndex, c: Cand): boolean {
  if (c.forced || c.kind === 'w' || c.racy !== undefined || c.xattrs === undefined) return false;
  const old = index.get(c.path);
  return old?.h !== undefined && sameRec(old, recFromStat(c.kind, c.st, c.opaque));
}
