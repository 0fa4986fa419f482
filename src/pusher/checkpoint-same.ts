// Whether a periodic checkpoint carries anything its parent commit did not. The tracker's shipped state after the
// commits up to the parent is what a standby that staged them holds; the checkpoint's build is a walk of the whole
// container: when it finds every path with the stat it was shipped at (the same paths, each the same inode, size,
// times, mode, owner, racy fingerprint), the checkpoint's content is the parent's, and the record says so (sameAs).
// A write that came between the last delta and the checkpoint's walk shows as a difference: that checkpoint carries
// it, and is staged.
import type { SerializedIndex } from '../changeset/index.js';
import { canonicalJson } from '../store/index.js';

/** True when `before` (shipped state by the parent commit) and `after` (by the checkpoint) name the same paths with
 *  the same records. */
export function sameShippedState(before: SerializedIndex, after: SerializedIndex): boolean {
  if (before.version !== after.version || before.entries.length !== after.entries.length) return false;
  const key = (e: readonly [string, unknown]): string => canonicalJson([e[0], e[1]]);
  const a = before.entries.map(key).sort();
  const b = after.entries.map(key).sort();
  return a.every((x, i) => x === b[i]);
}
