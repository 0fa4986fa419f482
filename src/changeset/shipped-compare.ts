// The comparison of what a scan found with what was last shipped: by stat fingerprint (shipped-index.ts).
import type { BigIntStats } from 'node:fs';
import { recFromStat, sameRec, type ShippedRec } from './shipped-index.js';
import type { Cand } from './upper-node.js';

export type ShippedIndex = ReadonlyMap<string, ShippedRec>;

/** A dir the index does not know as this dir (absent, another kind, another inode): everything under it ships. */
export function isNewDir(index: ShippedIndex, path: string, st: BigIntStats): boolean {
  const old = index.get(path);
  return old === undefined || old.t !== 'd' || old.ino !== Number(st.ino);
}

/** Whether `c` goes into the changeset. Before its xattrs are read, a dir keeps the opaque flag it was shipped with. */
export function candShips(index: ShippedIndex, c: Cand): boolean {
  if (c.forced) return true;
  const old = index.get(c.path);
  if (c.kind === 'w') return old?.t !== 'w';
  const opaque = c.xattrs === undefined ? old?.o === true : c.opaque;
  return !sameRec(old, recFromStat(c.kind, c.st, opaque));
}

/** The stat alone differs from the index (so its xattrs are worth reading). */
export function statDiffers(index: ShippedIndex, c: Cand): boolean {
  const old = index.get(c.path);
  if (c.kind === 'w') return old?.t !== 'w';
  return !sameRec(old, recFromStat(c.kind, c.st, old?.o === true));
}
