// Where the tar paths of a container's changeset land on the standby: the twin's upper dir, and each volume's dir
// for paths under the reserved volumes dir (volume-paths.ts). The reserved dir itself exists nowhere on disk. A
// volume the twin does not have is refused, never created: nothing is written outside the dirs given here.
import { join } from 'node:path';
import { ChangesetRejectedError } from './errors.js';
import { treeOf, volumesDir } from './volume-paths.js';

export class TreeRoots {
  readonly upper: string;
  readonly volumes: ReadonlyMap<string, string>;

  constructor(upper: string, volumes: ReadonlyMap<string, string> = new Map()) {
    this.upper = upper;
    this.volumes = volumes;
  }

  /** Every real dir a commit may write into: the upper dir and the volumes. */
  dirs(): string[] {
    return [this.upper, ...this.volumes.values()];
  }

  /** The absolute path of a validated tar path; throws ChangesetRejectedError for a volume the twin does not have
   *  and for the reserved dir itself (callers never need its path: it is no directory). */
  abs(rel: string): string {
    const t = treeOf(rel);
    if (t.root === 'upper') return rel === '' ? this.upper : join(this.upper, rel);
    if (t.root === 'volumes') throw new ChangesetRejectedError('the reserved volumes dir has no path on disk', { entry: rel });
    const dir = this.volumes.get(t.key);
    if (dir === undefined) throw new ChangesetRejectedError(`volume ${t.key} is not a volume of this twin`, { entry: rel });
    return t.rel === '' ? dir : join(dir, t.rel);
  }

  /** `rel` as raw bytes (undo log records may name non-UTF-8 names): the dir it starts from and the rest below it
   *  ('' for the dir itself); null for the reserved dir or an unknown volume. */
  split(rel: Buffer): { base: Buffer; rest: Buffer } | null {
    const prefix = Buffer.from(`${volumesDir}/`);
    if (rel.equals(Buffer.from(volumesDir))) return null;
    if (!rel.subarray(0, prefix.length).equals(prefix)) return { base: Buffer.from(this.upper, 'utf8'), rest: rel };
    const after = rel.subarray(prefix.length);
    const slash = after.indexOf(0x2f);
    const key = (slash < 0 ? after : after.subarray(0, slash)).toString('utf8');
    const dir = this.volumes.get(key);
    if (dir === undefined) return null;
    return { base: Buffer.from(dir, 'utf8'), rest: slash < 0 ? Buffer.alloc(0) : after.subarray(slash + 1) };
  }
}
