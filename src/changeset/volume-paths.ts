// Where a container's volumes live in its changesets: under one reserved top-level name, one dir per volume
// (`.wh..twinlayer-volumes/<volume>/<path in the volume>`). No path of an upper dir can take that name: names
// starting with `.wh.` cannot be represented in an OCI layer and are never shipped from it (paths.ts), so the
// volumes and the upper layer share one changeset, one commit and one consistent point. Pure functions.
import { tarPathMeaning, type TarPathMeaning } from './paths.js';

export const volumesDir = '.wh..twinlayer-volumes';

/** Docker's own charset for volume names. */
const volumeKey = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

export function volumeKeyProblem(key: string): string | null {
  return volumeKey.test(key) ? null : `${JSON.stringify(key.slice(0, 80))} is not a Docker volume name`;
}

/** The tar path of `rel` (relative to the volume's root; '' is the root itself) of volume `key`. */
export function volumeTarPath(key: string, rel: string): string {
  return rel === '' ? `${volumesDir}/${key}` : `${volumesDir}/${key}/${rel}`;
}

export type TreePath =
  | { root: 'upper'; rel: string }
  | { root: 'volumes' }
  | { root: 'volume'; key: string; rel: string };

/** Which tree a validated relative tar path lies in: the upper dir, the reserved dir itself, or one volume. */
export function treeOf(path: string): TreePath {
  if (path === volumesDir) return { root: 'volumes' };
  if (!path.startsWith(`${volumesDir}/`)) return { root: 'upper', rel: path };
  const rest = path.slice(volumesDir.length + 1);
  const slash = rest.indexOf('/');
  return slash < 0 ? { root: 'volume', key: rest, rel: '' } : { root: 'volume', key: rest.slice(0, slash), rel: rest.slice(slash + 1) };
}

/** tarPathMeaning (OCI whiteout conventions) read inside the tree the path lies in, with paths given back as tar
 *  paths: a whiteout inside a volume names a path of that volume. The volume's root itself is a plain dir. */
export function treePathMeaning(path: string): TarPathMeaning | string {
  const t = treeOf(path);
  if (t.root === 'upper') return tarPathMeaning(path);
  if (t.root === 'volumes') return 'the reserved volumes dir named as an entry';
  const problem = volumeKeyProblem(t.key);
  if (problem !== null) return `volume ${problem}`;
  if (t.rel === '') return { kind: 'plain', path };
  const m = tarPathMeaning(t.rel);
  if (typeof m === 'string') return m;
  const at = (rel: string): string => volumeTarPath(t.key, rel);
  if (m.kind === 'plain') return { kind: 'plain', path };
  if (m.kind === 'whiteout') return { kind: 'whiteout', path, target: at(m.target) };
  return { kind: 'opaque', path, dir: at(m.dir) };
}
