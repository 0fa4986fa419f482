// Pusher side: remembers what was shipped for one upper dir and builds the next changeset from it. The walk is
// upper-scan.ts (closed by scan-closure.ts), the comparison with the index shipped-compare.ts, and the writing
// changeset-writer.ts.
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { BuiltChangeset } from './built-changeset.js';
import { writeChangeset } from './changeset-writer.js';
import type { ChunkingOptions } from './chunked-copy.js';
import { defaultLimits } from './limits.js';
import { comparePaths, isAtOrUnder, relPathProblem } from './paths.js';
import { completeScan } from './scan-closure.js';
import {
  applyDelta, dropRacyMarks, parseIndex, serializeIndex, type IndexDelta, type SerializedIndex, type ShippedRec,
} from './shipped-index.js';
import { Scan } from './upper-scan.js';

/** Remembers what was shipped for one upper dir and builds the next changeset. */
export class UpperTracker {
  readonly #upper: string;
  readonly #workDir: string;
  readonly #excludes: readonly string[];
  readonly #log: Logger;
  readonly #chunking: ChunkingOptions | undefined;
  #index: Map<string, ShippedRec>;
  #pending = new Set<string>();
  readonly #warned = new Set<string>();
  readonly #deltas = new WeakMap<BuiltChangeset, IndexDelta>();

  /** `chunking`: ship files above its threshold as chunks (none without it). */
  constructor(opts: { upperDir: string; workDir: string; excludes?: readonly string[]; shipped?: SerializedIndex; log?: Logger; chunking?: ChunkingOptions }) {
    this.#chunking = opts.chunking;
    this.#upper = opts.upperDir;
    this.#workDir = opts.workDir;
    this.#excludes = opts.excludes ?? [];
    this.#log = opts.log ?? silentLogger;
    this.#index = opts.shipped === undefined ? new Map<string, ShippedRec>() : parseIndex(opts.shipped);
  }

  serialize(): SerializedIndex {
    return serializeIndex(this.#index);
  }

  /** Adopt what `built` shipped as the shipped state; call after its commit is published. */
  commit(built: BuiltChangeset): void {
    const delta = this.#deltas.get(built);
    if (delta === undefined) throw new Error('commit() of a changeset this tracker did not build');
    this.#deltas.delete(built);
    applyDelta(this.#index, delta);
  }

  async build(scope: 'full' | 'reconcile' | ReadonlySet<string>): Promise<BuiltChangeset | null> {
    const full = scope === 'full';
    const scan = new Scan(this.#upper, this.#index, this.#excludes, this.#warnOnce);
    if (scope === 'full' || scope === 'reconcile') {
      await scan.walk('', full);
    } else {
      await this.#walkNamed(scan, scope);
    }
    await completeScan(scan, full);
    // A fact about what is on disk and what was shipped, whether or not this build is published.
    dropRacyMarks(this.#index, scan.settled);
    const torn: string[] = [...scan.torn];
    const written = await writeChangeset(scan, this.#workDir, full, torn, this.#chunking);
    // Torn paths stay dirty: every later build looks at them again, whatever its scope.
    this.#pending = new Set(torn);
    if (written === null) return null;
    this.#deltas.set(written.built, written.delta);
    return written.built;
  }

  /** Walks the smallest set of subtrees that covers the paths events named and those left dirty by earlier builds. */
  async #walkNamed(scan: Scan, scope: ReadonlySet<string>): Promise<void> {
    const roots = new Set<string>();
    for (const raw of [...scope, ...this.#pending]) {
      const rel = raw.replace(/^(\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, '');
      if (rel === '') {
        roots.add('');
        continue;
      }
      if (relPathProblem(rel, defaultLimits.maxPathBytes) !== null) {
        this.#warnOnce(rel, 'path cannot be shipped');
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
