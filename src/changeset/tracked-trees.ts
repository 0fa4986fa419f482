// The trees one container's tracker follows: its upper dir first, then each volume (sorted by key), each with the
// index of what was shipped from it and the paths left dirty by the last build. Made from the tracker's options
// and a serialized shipped index, and serialized back into one index of tar paths (a volume's under its reserved
// prefix, volume-paths.ts).
import { comparePaths } from './paths.js';
import { parseIndex, serializeIndex, type SerializedIndex, type ShippedRec } from './shipped-index.js';
import { treeOf, volumeKeyProblem, volumeTarPath } from './volume-paths.js';

/** A volume of the container: its name (the same on the twin), where it is mounted in the container, and its dir
 *  on this host (resolved and checked by the caller). */
export interface TrackedVolume {
  key: string;
  destination: string;
  dir: string;
}

export interface Tree {
  /** '' for the upper dir, else the volume's key. */
  key: string;
  dir: string;
  plain: boolean;
  prefix: string;
  excludes: readonly string[];
  index: Map<string, ShippedRec>;
  /** Paths (tree-relative) the last build left out because they changed while being read. */
  pending: Set<string>;
  /** A volume's root dir as last shipped (its owner and mode are the volume's). */
  root: ShippedRec | null;
}

/** The excludes (container paths) that fall inside a volume mounted at `destination`, relative to the volume. */
function excludesInside(excludes: readonly string[], destination: string): string[] {
  const dest = destination.replace(/^\/+/, '').replace(/\/+$/, '');
  const out: string[] = [];
  for (const raw of excludes) {
    const ex = raw.replace(/^\/+/, '');
    if (ex === dest || ex === `${dest}/**`) out.push('**');
    else if (ex.startsWith(`${dest}/`)) out.push(ex.slice(dest.length + 1));
  }
  return out;
}

/** The upper dir's tree and one per volume, holding what `shipped` says was shipped from each. */
export function makeTrees(upperDir: string, excludes: readonly string[], volumes: readonly TrackedVolume[], shipped: SerializedIndex | undefined): Tree[] {
  const trees: Tree[] = [{ key: '', dir: upperDir, plain: false, prefix: '', excludes, index: new Map(), pending: new Set(), root: null }];
  for (const v of [...volumes].sort((a, b) => comparePaths(a.key, b.key))) {
    const problem = volumeKeyProblem(v.key);
    if (problem !== null) throw new Error(`volume ${problem}`);
    trees.push({
      key: v.key, dir: v.dir, plain: true, prefix: `${volumeTarPath(v.key, '')}/`, excludes: excludesInside(excludes, v.destination),
      index: new Map(), pending: new Set(), root: null,
    });
  }
  if (shipped === undefined) return trees;
  for (const [path, rec] of parseIndex(shipped)) {
    const t = treeOf(path);
    if (t.root === 'upper') trees[0]!.index.set(path, rec);
    else if (t.root === 'volume') {
      // A volume the container no longer has is forgotten.
      const tree = trees.find((x) => x.key === t.key);
      if (tree === undefined) continue;
      if (t.rel === '') tree.root = rec;
      else tree.index.set(t.rel, rec);
    }
  }
  return trees;
}

/** Everything shipped from every tree, as one index of tar paths. */
export function serializeTrees(trees: readonly Tree[]): SerializedIndex {
  const all = new Map<string, ShippedRec>();
  for (const tree of trees) {
    if (tree.root !== null) all.set(tree.prefix.slice(0, -1), tree.root);
    for (const [path, rec] of tree.index) all.set(tree.prefix + path, rec);
  }
  return serializeIndex(all);
}

/** The tree a path named by an event (a tar path) belongs to, and the path within it; null for none of them. */
export function treeOfPath(trees: readonly Tree[], path: string): { tree: Tree; rel: string } | null {
  const t = treeOf(path);
  const tree = t.root === 'upper' ? trees[0] : t.root === 'volume' ? trees.find((x) => x.key === t.key) : undefined;
  if (tree === undefined) return null;
  return { tree, rel: t.root === 'volume' ? t.rel : path };
}
