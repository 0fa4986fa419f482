// One build's walk of the upper dir: candidates found by walking, and paths that vanished since shipping.
// Completing the set (hard-link siblings, ancestors, xattrs, opaque subtrees) is scan-closure.ts.
import type { BigIntStats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ancestorsOf, baseOf, comparePaths, isAtOrUnder, isReservedName, joinRel, parentOf, relPathIsExcluded } from './paths.js';
import { scanClockNs } from './racy.js';
import { candShips, isNewDir, type ShippedIndex } from './shipped-compare.js';
import { isMissing, kindOf, lstatOrNull, type Cand } from './upper-node.js';

export type WarnOnce = (rel: string, why: string) => void;

export class Scan {
  readonly upper: string;
  readonly index: ShippedIndex;
  readonly excludes: readonly string[];
  readonly warn: WarnOnce;
  /** A plain directory (a volume), not an overlayfs upper dir: a char device 0/0 there is a device like any other,
   *  never a whiteout, and no dir is opaque. */
  readonly plain: boolean;
  /** Taken before the first stat: a node changed within a tick of it is racily clean (racy.ts). */
  readonly startNs = scanClockNs();
  readonly cands = new Map<string, Cand>();
  readonly vanished = new Set<string>();
  /** Roots of subtrees walked in full (new/replaced dirs, dirs that became opaque, the whole tree for 'full'). */
  readonly forcedRoots: string[] = [];
  readonly newDirs = new Set<string>();
  readonly torn: string[] = [];
  /** Hard-link siblings of a changed or vanished path: named by no event, yet their link count (and ctime) moved. */
  readonly recheck = new Set<string>();
  /** Paths named by events whose ancestors must be compared even when they themselves ship nothing. */
  readonly dirtyParents = new Set<string>();
  /** Racily clean paths found unchanged with timestamps old enough to trust their stat again. */
  readonly settled = new Set<string>();
  readonly #children = new Map<string, string[]>();
  readonly #byIno = new Map<number, string[]>();

  constructor(upper: string, index: ShippedIndex, excludes: readonly string[], warn: WarnOnce, plain = false) {
    this.upper = upper;
    this.plain = plain;
    this.index = index;
    this.excludes = excludes;
    this.warn = warn;
    for (const [path, rec] of index) {
      const parent = parentOf(path);
      const list = this.#children.get(parent) ?? [];
      list.push(path);
      this.#children.set(parent, list);
      if (rec.t === 'f') {
        const same = this.#byIno.get(rec.ino) ?? [];
        same.push(path);
        this.#byIno.set(rec.ino, same);
      }
    }
  }

  abs(rel: string): string {
    return join(this.upper, rel);
  }

  /** Paths the index holds as regular files with inode `ino`. */
  shippedWithIno(ino: number): readonly string[] {
    return this.#byIno.get(ino) ?? [];
  }

  covered(path: string): boolean {
    return this.forcedRoots.some((r) => isAtOrUnder(path, r));
  }

  isNewDir(path: string, st: BigIntStats): boolean {
    return isNewDir(this.index, path, st);
  }

  shipping(): Cand[] {
    return [...this.cands.values()].filter((c) => candShips(this.index, c));
  }

  /** Vanished paths whose own ancestors are still present (their whiteout covers the subtree). */
  topVanished(): string[] {
    return [...this.vanished]
      .filter((v) => !ancestorsOf(v).some((a) => this.vanished.has(a)))
      .filter((v) => {
        const parent = parentOf(v);
        const pc = this.cands.get(parent);
        // Under a dir shipped with its opaque marker, staging removes stale children anyway.
        return !(pc !== undefined && pc.opaque && this.covered(parent));
      })
      .sort(comparePaths);
  }

  /** The path to walk for a dirty `rel`: the highest ancestor that is gone, not a dir, or a new/replaced dir. */
  async widen(rel: string): Promise<string> {
    for (const a of ancestorsOf(rel)) {
      const st = await lstatOrNull(this.abs(a));
      if (st === null || !st.isDirectory() || this.isNewDir(a, st)) return a;
    }
    return rel;
  }

  async walk(root: string, forced: boolean): Promise<void> {
    if (forced) this.forcedRoots.push(root);
    await this.visit(root, forced);
  }

  /** Looks at `rel` (and under it, when it is a dir): a candidate, or a vanished path. */
  async visit(rel: string, forced: boolean): Promise<void> {
    if (rel !== '') {
      if (relPathIsExcluded(rel, this.excludes)) return;
      if (isReservedName(baseOf(rel))) {
        this.warn(rel, 'name starts with .wh. and cannot be represented in an OCI changeset');
        return;
      }
    }
    const st = await lstatOrNull(this.abs(rel));
    if (st === null) {
      if (rel !== '' && this.index.has(rel)) this.#noteVanished(rel);
      return;
    }
    const kind = kindOf(st);
    if (kind === null || (kind === 'w' && this.plain)) {
      this.warn(rel, 'device, FIFO or socket cannot be shipped');
      return;
    }
    let childForced = forced;
    if (rel !== '') {
      const isNew = kind === 'd' && this.isNewDir(rel, st);
      if (isNew) {
        this.newDirs.add(rel);
        if (!forced) this.forcedRoots.push(rel);
        childForced = true;
      }
      this.#recheckSiblings(rel, st);
      this.cands.set(rel, { path: rel, st, kind, forced, opaque: false });
      this.vanished.delete(rel);
    }
    if (kind !== 'd') return;
    let names: Buffer[];
    try {
      names = await readdir(this.abs(rel), { encoding: 'buffer' });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    const present = new Set<string>();
    for (const raw of names) {
      const name = raw.toString('utf8');
      const child = joinRel(rel, name);
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        this.warn(child, 'name is not valid UTF-8');
        continue;
      }
      present.add(child);
      await this.visit(child, childForced);
    }
    for (const old of this.#children.get(rel) ?? []) {
      if (!present.has(old) && this.index.has(old) && !relPathIsExcluded(old, this.excludes)) this.#noteVanished(old);
    }
  }

  /** A removed or replaced hard link changes its siblings' link count (and ctime) without an event naming them. */
  #noteVanished(path: string): void {
    this.vanished.add(path);
    this.#recheckSiblings(path, null);
  }

  #recheckSiblings(path: string, st: BigIntStats | null): void {
    const rec = this.index.get(path);
    if (rec?.t === 'd' && (st === null || !st.isDirectory() || Number(st.ino) !== rec.ino)) {
      // The old dir and all it held are gone: so are the hard links it held.
      const stack = [...(this.#children.get(path) ?? [])];
      for (let i = 0; i < stack.length; i++) {
        const p = stack[i] ?? '';
        const r = this.index.get(p);
        if (r?.t === 'd') stack.push(...(this.#children.get(p) ?? []));
        else if (r?.t === 'f') for (const sibling of this.shippedWithIno(r.ino)) if (!isAtOrUnder(sibling, path)) this.recheck.add(sibling);
      }
      return;
    }
    if (rec?.t !== 'f' || (st !== null && st.isFile() && Number(st.ino) === rec.ino)) return;
    for (const sibling of this.shippedWithIno(rec.ino)) if (sibling !== path) this.recheck.add(sibling);
  }
}
