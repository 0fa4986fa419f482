// The entries of one changeset in tar order, each with how to produce it: a node to copy, a hard link to the first
// path of its inode group, or an empty whiteout / opaque marker.
import { comparePaths, opaquePathFor, whiteoutPathFor } from './paths.js';
import type { TarEntry } from './tar-format.js';
import type { Cand } from './upper-node.js';
import type { Scan } from './upper-scan.js';

export interface EntryPlan {
  tarPath: string;
  cand?: Cand;
  entry?: TarEntry;
  /** Hard link: the path of the group's first member, which carries the content. */
  linkTo?: string;
  /** The first path of the hard-link group this entry belongs to. */
  group?: string;
}

export function zeroEntry(tarPath: string): TarEntry {
  return { path: tarPath, type: 'file', mode: 0, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [] };
}

export function planEntries(scan: Scan, shipping: readonly Cand[], vanished: readonly string[]): EntryPlan[] {
  const plans: EntryPlan[] = [];
  const groups = new Map<string, string[]>(); // dev:ino -> paths (regular files with nlink > 1)
  for (const c of shipping) {
    if (c.kind === 'f' && c.st.nlink > 1n) {
      const key = `${c.st.dev}:${c.st.ino}`;
      const g = groups.get(key) ?? [];
      g.push(c.path);
      groups.set(key, g);
    }
  }
  const firstOf = new Map<string, string>();
  for (const g of groups.values()) {
    g.sort(comparePaths);
    const first = g[0] ?? '';
    for (const p of g) firstOf.set(p, first);
  }
  for (const c of shipping) {
    if (c.kind === 'w') {
      plans.push({ tarPath: whiteoutPathFor(c.path), entry: zeroEntry(whiteoutPathFor(c.path)) });
      continue;
    }
    const first = firstOf.get(c.path);
    const plan: EntryPlan = { tarPath: c.path, cand: c };
    if (first !== undefined) {
      plan.group = first;
      if (first !== c.path) plan.linkTo = first;
    }
    plans.push(plan);
    if (c.kind === 'd' && c.opaque && scan.covered(c.path)) {
      plans.push({ tarPath: opaquePathFor(c.path), entry: zeroEntry(opaquePathFor(c.path)) });
    }
  }
  // Gone from the upper without a whiteout: the lower has nothing there (or the dir is opaque), so the standby
  // must only remove it; a char device there would show as a broken entry in a non-merged dir.
  for (const v of vanished) plans.push({ tarPath: whiteoutPathFor(v), entry: { ...zeroEntry(whiteoutPathFor(v)), removeOnly: true } });
  plans.sort((a, b) => comparePaths(a.tarPath, b.tarPath));
  return plans;
}
