// Which volumes a changeset names, read before it is staged: a restore from the bucket alone (no twin, no spec of
// that time) makes a dir for each one first, since staging writes only into the volumes its target has.
import { ChangesetRejectedError } from './errors.js';
import type { Limits } from './limits.js';
import { readChangeset } from './tar-reader.js';
import { treeOf, volumeKeyProblem } from './volume-paths.js';

/** More volumes than this in one container is no container's: refused, so a hostile changeset cannot make a
 *  restore create dirs without end. */
export const maxVolumesNamed = 256;

/** The volume names under the reserved dir of the changeset `blobFile`, sorted; each a valid Docker volume name.
 *  The tar is read with the same bounds as validation (a refusal throws ChangesetRejectedError); bodies are skipped. */
export async function volumesNamed(blobFile: string, limits: Limits, signal?: AbortSignal): Promise<string[]> {
  const keys = new Set<string>();
  await readChangeset(blobFile, limits, (e) => {
    const t = treeOf(e.path);
    if (t.root !== 'volume' || keys.has(t.key)) return Promise.resolve();
    const problem = volumeKeyProblem(t.key);
    if (problem !== null) throw new ChangesetRejectedError(`volume ${problem}`, { entry: e.path });
    if (keys.size >= maxVolumesNamed) throw new ChangesetRejectedError(`names more than ${maxVolumesNamed} volumes`, { entry: e.path });
    keys.add(t.key);
    return Promise.resolve();
  }, signal === undefined ? {} : { signal });
  return [...keys].sort();
}
