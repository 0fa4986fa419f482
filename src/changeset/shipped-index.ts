// What the pusher last shipped for each path of one upper dir, with the stat fingerprint it was shipped at.
// Serialized as JSON by the pusher; parsed with zod on load.
import { z } from 'zod';
import type { BigIntStats } from 'node:fs';
import { ancestorsOf } from './paths.js';

export type RecKind = 'f' | 'd' | 'l' | 'w';

/** f file, d dir, l symlink, w whiteout (char device 0/0) present in the upper. */
export interface ShippedRec {
  t: RecKind;
  ino: number;
  size: number;
  /** mtime and ctime in ns, as decimal strings (JSON has no bigint). */
  m: string;
  c: string;
  mode: number;
  uid: number;
  gid: number;
  /** dir is overlayfs-opaque */
  o?: true;
  /** Racily clean (racy.ts): shipped within a timestamp tick of its last change, so its stat cannot be trusted; the
   *  fingerprint of what was shipped ('' when unknown: ship it again). */
  h?: string;
}

export type SerializedIndex = { version: 1; entries: Array<[string, unknown]> };

const recSchema = z.object({
  t: z.enum(['f', 'd', 'l', 'w']),
  ino: z.number().int().nonnegative(),
  size: z.number().int().nonnegative(),
  m: z.string().regex(/^-?\d+$/),
  c: z.string().regex(/^-?\d+$/),
  mode: z.number().int().nonnegative(),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  o: z.literal(true).optional(),
  h: z.string().regex(/^([0-9a-f]{64})?$/).optional(),
});
const indexSchema = z.object({ version: z.literal(1), entries: z.array(z.tuple([z.string(), recSchema])) });

export function parseIndex(raw: unknown): Map<string, ShippedRec> {
  const parsed = indexSchema.parse(raw);
  const out = new Map<string, ShippedRec>();
  for (const [path, rec] of parsed.entries) {
    const r: ShippedRec = { t: rec.t, ino: rec.ino, size: rec.size, m: rec.m, c: rec.c, mode: rec.mode, uid: rec.uid, gid: rec.gid };
    if (rec.o === true) r.o = true;
    if (rec.h !== undefined) r.h = rec.h;
    out.set(path, r);
  }
  return out;
}

export function serializeIndex(index: ReadonlyMap<string, ShippedRec>): SerializedIndex {
  return { version: 1, entries: [...index.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) };
}

export const whiteoutRec: ShippedRec = { t: 'w', ino: 0, size: 0, m: '0', c: '0', mode: 0, uid: 0, gid: 0 };

export function recFromStat(t: 'f' | 'd' | 'l', st: BigIntStats, opaque: boolean): ShippedRec {
  const r: ShippedRec = {
    t,
    ino: Number(st.ino),
    size: t === 'f' ? Number(st.size) : 0,
    m: st.mtimeNs.toString(),
    c: st.ctimeNs.toString(),
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
  if (opaque) r.o = true;
  return r;
}

/** Same content and metadata as far as a stat shows (ctime catches chmod, chown, xattr and link changes, except
 *  within one timestamp tick: see `h`). */
export function sameRec(a: ShippedRec | undefined, b: ShippedRec): boolean {
  if (a === undefined || a.t !== b.t) return false;
  if (a.t === 'w') return true;
  return a.ino === b.ino && a.size === b.size && a.m === b.m && a.c === b.c && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.o === b.o;
}

/** The index change a build implies, applied by commit() once its changeset is published. */
export interface IndexDelta {
  full: boolean;
  /** Paths whose shipped subtree the changeset replaces: what the index held under them is dropped. */
  deleteUnder: string[];
  /** Paths removed from the upper: dropped with everything under them. */
  remove: string[];
  set: Array<[string, ShippedRec]>;
}

export function applyDelta(index: Map<string, ShippedRec>, delta: IndexDelta): void {
  if (delta.full) index.clear();
  if (delta.deleteUnder.length > 0 || delta.remove.length > 0) {
    const roots = new Set([...delta.deleteUnder, ...delta.remove]);
    for (const key of [...index.keys()]) {
      if (ancestorsOf(key).some((a) => roots.has(a))) index.delete(key);
    }
  }
  for (const path of delta.remove) index.delete(path);
  for (const [path, rec] of delta.set) index.set(path, rec);
}

/** Trusts the stat of `paths` again: their content matched the fingerprint after their timestamps got old enough. */
export function dropRacyMarks(index: Map<string, ShippedRec>, paths: Iterable<string>): void {
  for (const path of paths) {
    const rec = index.get(path);
    if (rec?.h === undefined) continue;
    const { h: _h, ...clean } = rec;
    index.set(path, clean);
  }
}
