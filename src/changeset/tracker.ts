// Pusher side: remembers what was shipped for one container (its upper dir and its volumes) and builds the next
// changeset from it, one changeset for all of them, so one commit is one consistent point of the whole container.
// The trees it follows and their shipped indexes are tracked-trees.ts, the walk upper-scan.ts (closed by
// scan-closure.ts), the comparison with the index shipped-compare.ts, and the writing changeset-writer.ts. Paths (scopes, torn paths, the serialized index) are tar paths: a volume's under
// its reserved prefix (volume-paths.ts).
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { BuiltChangeset } from './built-changeset.js';
import { writeChangeset, type ScanPart } from './changeset-writer.js';
import type { ChunkingOptions } from './chunked-copy.js';
import { defaultLimits } from './limits.js';
import { comparePaths, isAtOrUnder, relPathProblem } from './paths.js';
import { completeScan } from './scan-closure.js';
import { applyDelta, dropRacyMarks, recFromStat, type IndexDelta, type SerializedIndex, type ShippedRec } from './shipped-index.js';
import { makeTrees, serializeTrees, treeOfPath, type TrackedVolume, type Tree } from './tracked-trees.js';
import { lstatOrNull, type Cand } from './upper-node.js';
import { Scan } from './upper-scan.js';
import { readXattrs } from './xattr.js';

export type { TrackedVolume } from './tracked-trees.js';

/** Remembers what was shipped for one container and builds the next changeset. */
export class UpperTracker {
  readonly #workDir: string;
  readonly #log: Logger;
  readonly #chunking: ChunkingOptions | undefined;
  readonly #trees: Tree[];
  readonly #warned = new Set<string>();
  readonly #deltas = new WeakMap<BuiltChangeset, { deltas: IndexDelta[]; roots: Array<ShippedRec | null> }>();
  #tornBytes = 0;

  /** `chunking`: ship files above its threshold as chunks, in the upper dir and in the volumes (none without it). */
  constructor(opts: {
    upperDir: string; workDir: string; excludes?: readonly string[]; volumes?: readonly TrackedVolume[]; shipped?: SerializedIndex; log?: Logger;
    chunking?: ChunkingOptions;
  }) {
    this.#chunking = opts.chunking;
    this.#workDir = opts.workDir;
    this.#log = opts.log ?? silentLogger;
    this.#trees = makeTrees(opts.upperDir, opts.excludes ?? [], opts.volumes ?? [], opts.shipped);
  }

  serialize(): SerializedIndex {
    return serializeTrees(this.#trees);
  }

  /** Tar paths the last build left out because they changed while being read; every later build looks at them. */
  get torn(): string[] {
    return this.#trees.flatMap((tree) => [...tree.pending].map((p) => tree.prefix + p));
  }

  /** The size of those paths' regular files as the last build found them before reading (what reading them again
   *  costs, about). */
  get tornBytes(): number {
    return this.#tornBytes;
  }

  /** Adopt what `built` shipped as the shipped state; call after its commit is published. */
  commit(built: BuiltChangeset): void {
    const adopted = this.#deltas.get(built);
    if (adopted === undefined) throw new Error('commit() of a changeset this tracker did not build');
    this.#deltas.delete(built);
    this.#trees.forEach((tree, i) => {
      applyDelta(tree.index, adopted.deltas[i]!);
      const root = adopted.roots[i];
      if (root !== undefined && root !== null) tree.root = root;
    });
  }

  /** Null when nothing ships; with `emptyFull`, a full build of empty trees gives an empty full changeset instead. */
  async build(scope: 'full' | 'reconcile' | ReadonlySet<string>, opts: { emptyFull?: boolean } = {}): Promise<BuiltChangeset | null> {
    const full = scope === 'full';
    const named = new Map<Tree, Set<string>>();
    if (typeof scope !== 'string') {
      for (const raw of scope) {
        const found = treeOfPath(this.#trees, raw.replace(/^(\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, ''));
        if (found === null) continue;
        const set = named.get(found.tree) ?? new Set<string>();
        set.add(found.rel);
        named.set(found.tree, set);
      }
    }
    const parts: ScanPart[] = [];
    const roots: Array<ShippedRec | null> = [];
    for (const tree of this.#trees) {
      const scan = new Scan(tree.dir, tree.index, tree.excludes, (rel, why) => this.#warnOnce(tree.prefix + rel, why), tree.plain);
      if (scope === 'full' || scope === 'reconcile') await scan.walk('', full);
      else await this.#walkNamed(tree, scan, named.get(tree) ?? new Set());
      await completeScan(scan, full);
      // A fact about what is on disk and what was shipped, whether or not this build is published.
      dropRacyMarks(tree.index, scan.settled);
      const root = tree.plain ? await this.#volumeRoot(tree, scan, full) : null;
      roots.push(root === null ? null : recFromStat('d', root.st, false));
      parts.push({ scan, prefix: tree.prefix, root, torn: [...scan.torn] });
    }
    const written = await writeChangeset(parts, this.#workDir, full, this.#chunking, opts.emptyFull === true);
    // Torn paths stay dirty: every later build looks at them again, whatever its scope.
    this.#tornBytes = 0;
    this.#trees.forEach((tree, i) => {
      const part = parts[i]!;
      tree.pending = new Set(part.torn);
      for (const p of tree.pending) this.#tornBytes += Number(part.scan.cands.get(p)?.st.size ?? 0n);
    });
    if (written === null) return null;
    this.#deltas.set(written.built, { deltas: written.deltas, roots });
    return written.built;
  }

  /** A volume's root dir ships with a full build, with anything else of the volume (its mtime moved), and when its
   *  owner or mode changed. */
  async #volumeRoot(tree: Tree, scan: Scan, full: boolean): Promise<Cand | null> {
    const st = await lstatOrNull(tree.dir);
    if (st === null || !st.isDirectory()) throw new Error(`volume ${tree.key}: ${tree.dir} is no longer a directory`);
    const old = tree.root;
    const ownerOrMode = old === null || old.mode !== (Number(st.mode) & 0o7777) || old.uid !== Number(st.uid) || old.gid !== Number(st.gid);
    const ships = full || ownerOrMode || scan.shipping().length > 0 || scan.topVanished().length > 0;
    if (!ships) return null;
    const xattrs = (await readXattrs([tree.dir])).get(tree.dir) ?? [];
    return { path: '', st, kind: 'd', forced: true, opaque: false, xattrs };
  }

  /** Walks the smallest set of subtrees that covers the paths events named and those left dirty by earlier builds. */
  async #walkNamed(tree: Tree, scan: Scan, scope: ReadonlySet<string>): Promise<void> {
    const roots = new Set<string>();
    for (const rel of [...scope, ...tree.pending]) {
      if (rel === '') {
        roots.add('');
        continue;
      }
      if (relPathProblem(rel, defaultLimits.maxPathBytes) !== null) {
        this.#warnOnce(tree.prefix + rel, 'path cannot be shipped');
        continue;
      }
      roots.add(await scan.widen(rel));
    }
    const sorted = [...roots].sort(comparePaths);
    const minimal: string[] = [];
    for (const r of sorted) if (!minimal.some((m) => isAtOrUnder(r, m))) minimal.push(r);
    for (const r of minimal) await scan.walk(r, false);
    // A path created and removed between two builds still changed its parent dir's mtime.
    for (const r of roots) if (r !== '') scan.dirtyParents.add(r);
  }

  readonly #warnOnce = (rel: string, why: string): void => {
    if (this.#warned.has(rel)) return;
    this.#warned.add(rel);
    this.#log.warn('changeset: path skipped', { path: rel, reason: why });
  };
}
