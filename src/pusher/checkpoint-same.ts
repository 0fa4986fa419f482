// Whether a periodic checkpoint carries anything its parent commit did not. The tracker's shipped state after the
// commits up to the parent is what a standby that staged them holds; the checkpoint's build is a walk of the whole
// container: when it finds every path with the stat it was shipped at (the same paths, each the same inode, size,
// times, mode, owner, opaque flag), the checkpoint's content is the parent's, and the record says so (sameAs). A write
// that came between the last delta and the checkpoint's walk shows as a difference: that checkpoint carries it, and is
// staged.
//
// A path shipped racily clean (changed within a timestamp tick of its read, racy.ts) may have changed since without
// its stat showing it: its fingerprint then decides, and a checkpoint that read it once it was no longer racy has
// none to compare. That checkpoint is not called the same (it is staged). So the replicator settles such paths first
// (racyPaths): once past their window, a reconcile's walk checks their fingerprints and trusts their stat again.
import type { SerializedIndex } from '../changeset/index.js';
import { canonicalJson } from '../store/index.js';

function parts(rec: unknown): { stat: string; h: unknown } {
  if (typeof rec !== 'object' || rec === null) return { stat: canonicalJson(rec), h: undefined };
  const { h, ...stat } = rec as Record<string, unknown>;
  return { stat: canonicalJson(stat), h };
}

/** True when `before` (shipped state by the parent commit) and `after` (by the checkpoint) name the same paths with
 *  the same stat, and every racy fingerprint of `before` is known and the one the checkpoint took. */
export function sameShippedState(before: SerializedIndex, after: SerializedIndex): boolean {
  if (before.version !== after.version || before.entries.length !== after.entries.length) return false;
  const b = new Map(after.entries);
  for (const [path, rec] of before.entries) {
    if (!b.has(path)) return false;
    const x = parts(rec);
    const y = parts(b.get(path));
    if (x.stat !== y.stat) return false;
    // '' is an unknown fingerprint: shipped to be shipped again, so not known to be what the standby holds.
    if (x.h !== undefined && (x.h === '' || x.h !== y.h)) return false;
  }
  return true;
}

/** How many paths of `index` were shipped racily clean (they carry a fingerprint). */
export function racyPaths(index: SerializedIndex): number {
  return index.entries.filter(([, rec]) => typeof rec === 'object' && rec !== null && 'h' in rec).length;
}
