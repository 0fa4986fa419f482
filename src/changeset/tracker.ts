// Pusher side: scans an overlayfs upper dir, compares it with what was last shipped and writes the next changeset.
import { constants as fsc, type BigIntStats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import {
  ancestorsOf, comparePaths, isAtOrUnder, isReservedName, joinRel, opaquePathFor, parentOf, relPathIsExcluded,
  relPathProblem, whiteoutPathFor, baseOf,
} from './paths.js';
import { defaultLimits } from './limits.js';
import {
  parseIndex, recFromStat, sameRec, serializeIndex, whiteoutRec, type SerializedIndex, type ShippedRec,
} from './shipped-index.js';
import type { TarEntry } from './tar-format.js';
import { gzipAndHash, TarFileWriter } from './tar-writer.js';
import { isWhiteoutStat } from './whiteout-node.js';
import { readXattrs, type Xattrs } from './xattr.js';

export type ChangesetKind = 'delta' | 'full';
export interface ChangesetCounts { files: number; deletions: number; bytes: number }

export interface BuiltChangeset {
  kind: ChangesetKind;
  /** The gzip tar, written inside workDir; the caller deletes it after upload. */
  file: string;
  /** 64 lowercase hex, sha256 of the file's bytes. */
  digest: string;
  size: number;
  counts: ChangesetCounts;
  /** Relative paths left out because they changed while being read; they stay dirty in the tracker. */
  torn: string[];
}

type Kind = 'f' | 'd' | 'l' | 'w';

interface Cand {
  path: string;
  st: BigIntStats;
  kind: Kind;
  /** Under a new or replaced dir (or a full build): shipped whatever the index says. */
  forced: boolean;
  xattrs?: Xattrs;
  opaque: boolean;
}

/** The index change a build implies, applied by commit(). */
interface IndexDelta {
  full: boolean;
  deleteUnder: string[];
  /** Paths removed from the upper: dropped with everything under them. */
  remove: string[];
  set: Array<[string, ShippedRec]>;
}

const opaqueXattr = 'trusted.overlay.opaque';
const nsZero = 0n;

function kindOf(st: BigIntStats): Kind | null {
  if (st.isDirectory()) return 'd';
  if (st.isFile()) return 'f';
  if (st.isSymbolicLink()) return 'l';
  if (isWhiteoutStat(st)) return 'w';
  return null;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/** Remembers what was shipped for one upper dir and builds the next changeset. */
export class UpperTracker {
  readonly #upper: string;
  readonly #workDir: string;
  readonly #excludes: readonly string[];
  readonly #log: Logger;
  #index: Map<string, ShippedRec>;
  #pending = new Set<string>();
  readonly #warned = new Set<string>();
  readonly #deltas = new WeakMap<BuiltChangeset, IndexDelta>();

  constructor(opts: { upperDir: string; workDir: string; excludes?: readonly string[]; shipped?: SerializedIndex; log?: Logger }) {
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
    if (delta.full) this.#index.clear();
    if (delta.deleteUnder.length > 0 || delta.remove.length > 0) {
      const roots = new Set([...delta.deleteUnder, ...delta.remove]);
      for (const key of [...this.#index.keys()]) {
        if (ancestorsOf(key).some((a) => roots.has(a))) this.#index.delete(key);
      }
    }
    for (const path of delta.remove) this.#index.delete(path);
    for (const [path, rec] of delta.set) this.#index.set(path, rec);
  }

  async build(scope: 'full' | 'reconcile' | ReadonlySet<string>): Promise<BuiltChangeset | null> {
    const full = scope === 'full';
    const scan = new Scan(this.#upper, this.#index, this.#excludes, this.#warnOnce);
    if (scope === 'full' || scope === 'reconcile') {
      await scan.walk('', full);
    } else {
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
    await scan.complete(full);
    const torn: string[] = [...scan.torn];
    const result = await this.#write(scan, full, torn);
    // Torn paths stay dirty: every later build looks at them again, whatever its scope.
    this.#pending = new Set(torn);
    return result;
  }

  readonly #warnOnce = (rel: string, why: string): void => {
    if (this.#warned.has(rel)) return;
    this.#warned.add(rel);
    this.#log.warn('changeset: path skipped', { path: rel, reason: why });
  };

  async #write(scan: Scan, full: boolean, torn: string[]): Promise<BuiltChangeset | null> {
    const shipping = scan.shipping();
    const vanished = full ? [] : scan.topVanished();
    if (shipping.length === 0 && vanished.length === 0) return null;

    // Plan entries: tar path -> how to produce it.
    type Plan = { tarPath: string; cand?: Cand; entry?: TarEntry; linkTo?: string; group?: string };
    const plans: Plan[] = [];
    const groups = new Map<string, string[]>(); // ino -> paths (regular files with nlink > 1)
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
    const zeroEntry = (tarPath: string): TarEntry => ({ path: tarPath, type: 'file', mode: 0, uid: 0, gid: 0, mtimeNs: nsZero, size: 0, xattrs: [] });
    for (const c of shipping) {
      if (c.kind === 'w') {
        plans.push({ tarPath: whiteoutPathFor(c.path), entry: zeroEntry(whiteoutPathFor(c.path)) });
        continue;
      }
      const first = firstOf.get(c.path);
      const plan: Plan = { tarPath: c.path, cand: c };
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

    await mkdir(this.#workDir, { recursive: true });
    const id = randomBytes(8).toString('hex');
    const tmpTar = join(this.#workDir, `.changeset-${id}.tar`);
    const file = join(this.#workDir, `changeset-${id}.tar.gz`);
    const writer = await TarFileWriter.create(tmpTar);
    const tornGroups = new Set<string>();
    const counts: ChangesetCounts = { files: 0, deletions: 0, bytes: 0 };
    const delta: IndexDelta = { full, deleteUnder: [], remove: [], set: [] };
    let entries = 0;
    try {
      for (const plan of plans) {
        const c = plan.cand;
        if (c === undefined) {
          await writer.writeEntry(plan.entry ?? zeroEntry(plan.tarPath));
          entries++;
          if (baseOf(plan.tarPath) !== '.wh..wh..opq') counts.deletions++;
          continue;
        }
        if (plan.group !== undefined && tornGroups.has(plan.group)) {
          torn.push(c.path);
          continue;
        }
        const ok = await this.#writeCand(writer, c, plan.linkTo, counts);
        if (!ok) {
          torn.push(c.path);
          if (plan.group !== undefined) tornGroups.add(plan.group);
          continue;
        }
        entries++;
        counts.files++;
        delta.set.push([c.path, recFromStat(c.kind === 'd' ? 'd' : c.kind === 'l' ? 'l' : 'f', c.st, c.opaque)]);
        if (c.kind !== 'd' || scan.newDirs.has(c.path) || (c.opaque && scan.covered(c.path))) delta.deleteUnder.push(c.path);
      }
      for (const c of shipping) {
        if (c.kind === 'w') {
          delta.set.push([c.path, whiteoutRec]);
          delta.deleteUnder.push(c.path);
        }
      }
      for (const v of vanished) delta.remove.push(v);
      await writer.finish();
      if (entries === 0) {
        await rm(tmpTar, { force: true });
        return null;
      }
      const { digest, size } = await gzipAndHash(tmpTar, file);
      const built: BuiltChangeset = { kind: full ? 'full' : 'delta', file, digest, size, counts, torn: [...new Set(torn)].sort(comparePaths) };
      this.#deltas.set(built, delta);
      return built;
    } catch (err) {
      await writer.abandon();
      await rm(file, { force: true });
      throw err;
    } finally {
      await rm(tmpTar, { force: true });
    }
  }

  /** Writes one file, dir, symlink or hard link entry; false when the path changed while being read (torn). */
  async #writeCand(writer: TarFileWriter, c: Cand, linkTo: string | undefined, counts: ChangesetCounts): Promise<boolean> {
    const abs = join(this.#upper, c.path);
    const base: TarEntry = {
      path: c.path,
      type: 'dir',
      mode: Number(c.st.mode) & 0o7777,
      uid: Number(c.st.uid),
      gid: Number(c.st.gid),
      mtimeNs: c.st.mtimeNs,
      size: 0,
      xattrs: (c.xattrs ?? []).filter(([n]) => !n.startsWith('trusted.overlay.')),
    };
    if (c.kind === 'd') {
      await writer.writeEntry(base);
      return true;
    }
    if (c.kind === 'l') {
      let target: string;
      try {
        target = await readlink(abs);
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return false;
        throw err;
      }
      const after = await lstatOrNull(abs);
      if (after === null || after.ino !== c.st.ino || after.ctimeNs !== c.st.ctimeNs) return false;
      await writer.writeEntry({ ...base, type: 'symlink', linkpath: target });
      return true;
    }
    if (linkTo !== undefined) {
      await writer.writeEntry({ path: c.path, type: 'hardlink', mode: base.mode, uid: base.uid, gid: base.gid, mtimeNs: base.mtimeNs, size: 0, linkpath: linkTo, xattrs: [] });
      return true;
    }
    const size = Number(c.st.size);
    const start = writer.position;
    let fh;
    try {
      fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (isMissing(err) || code === 'ELOOP') return false;
      throw err;
    }
    let ok = true;
    try {
      const same = (s: BigIntStats): boolean => s.ino === c.st.ino && s.size === c.st.size && s.mtimeNs === c.st.mtimeNs && s.ctimeNs === c.st.ctimeNs;
      if (!same(await fh.stat({ bigint: true }))) ok = false;
      if (ok) {
        await writer.writeHeader({ ...base, type: 'file', size });
        const buf = Buffer.allocUnsafe(Math.min(Math.max(size, 1), 1024 * 1024));
        let done = 0;
        while (done < size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - done), done);
          if (bytesRead === 0) break;
          await writer.writeBody(buf.subarray(0, bytesRead));
          done += bytesRead;
        }
        if (done !== size || !same(await fh.stat({ bigint: true }))) ok = false;
        const after = ok ? await lstatOrNull(abs) : null;
        if (after === null || !same(after)) ok = false;
      }
    } finally {
      await fh.close();
    }
    if (!ok) {
      await writer.truncateTo(start);
      return false;
    }
    await writer.padBody(size);
    counts.bytes += size;
    return true;
  }
}

/** One build's view of the upper dir: candidates found by walking, and paths that vanished since shipping. */
class Scan {
  readonly cands = new Map<string, Cand>();
  readonly vanished = new Set<string>();
  /** Roots of subtrees walked in full (new/replaced dirs, dirs that became opaque, the whole tree for 'full'). */
  readonly forcedRoots: string[] = [];
  readonly newDirs = new Set<string>();
  readonly torn: string[] = [];
  readonly #upper: string;
  readonly #index: ReadonlyMap<string, ShippedRec>;
  readonly #excludes: readonly string[];
  readonly #warn: (rel: string, why: string) => void;
  readonly #children = new Map<string, string[]>();
  readonly #byIno = new Map<number, string[]>();
  readonly #recheck = new Set<string>();
  /** Paths named by events whose ancestors must be compared even when they themselves ship nothing. */
  readonly dirtyParents = new Set<string>();

  constructor(upper: string, index: ReadonlyMap<string, ShippedRec>, excludes: readonly string[], warn: (rel: string, why: string) => void) {
    this.#upper = upper;
    this.#index = index;
    this.#excludes = excludes;
    this.#warn = warn;
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

  covered(path: string): boolean {
    return this.forcedRoots.some((r) => isAtOrUnder(path, r));
  }

  #isNewDir(path: string, st: BigIntStats): boolean {
    const old = this.#index.get(path);
    return old === undefined || old.t !== 'd' || old.ino !== Number(st.ino);
  }

  /** A removed or replaced hard link changes its siblings' link count (and ctime) without an event naming them. */
  #noteVanished(path: string): void {
    this.vanished.add(path);
    this.#recheckSiblings(path, null);
  }

  #recheckSiblings(path: string, st: BigIntStats | null): void {
    const rec = this.#index.get(path);
    if (rec?.t === 'd' && (st === null || !st.isDirectory() || Number(st.ino) !== rec.ino)) {
      // The old dir and all it held are gone: so are the hard links it held.
      const stack = [...(this.#children.get(path) ?? [])];
      for (let i = 0; i < stack.length; i++) {
        const p = stack[i] ?? '';
        const r = this.#index.get(p);
        if (r?.t === 'd') stack.push(...(this.#children.get(p) ?? []));
        else if (r?.t === 'f') for (const sibling of this.#byIno.get(r.ino) ?? []) if (!isAtOrUnder(sibling, path)) this.#recheck.add(sibling);
      }
      return;
    }
    if (rec?.t !== 'f' || (st !== null && st.isFile() && Number(st.ino) === rec.ino)) return;
    for (const sibling of this.#byIno.get(rec.ino) ?? []) if (sibling !== path) this.#recheck.add(sibling);
  }

  #live(path: string): boolean {
    const rec = this.#index.get(path);
    return rec !== undefined;
  }

  /** The path to walk for a dirty `rel`: the highest ancestor that is gone, not a dir, or a new/replaced dir. */
  async widen(rel: string): Promise<string> {
    for (const a of ancestorsOf(rel)) {
      const st = await lstatOrNull(join(this.#upper, a));
      if (st === null || !st.isDirectory() || this.#isNewDir(a, st)) return a;
    }
    return rel;
  }

  async walk(root: string, forced: boolean): Promise<void> {
    if (forced) this.forcedRoots.push(root);
    await this.#visit(root, forced);
  }

  async #visit(rel: string, forced: boolean): Promise<void> {
    if (rel !== '') {
      if (relPathIsExcluded(rel, this.#excludes)) return;
      if (isReservedName(baseOf(rel))) {
        this.#warn(rel, 'name starts with .wh. and cannot be represented in an OCI changeset');
        return;
      }
    }
    const st = await lstatOrNull(join(this.#upper, rel));
    if (st === null) {
      if (rel !== '' && this.#live(rel)) this.#noteVanished(rel);
      return;
    }
    const kind = kindOf(st);
    if (kind === null) {
      this.#warn(rel, 'device, FIFO or socket cannot be shipped');
      return;
    }
    let childForced = forced;
    if (rel !== '') {
      const isNew = kind === 'd' && this.#isNewDir(rel, st);
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
      names = await readdir(join(this.#upper, rel), { encoding: 'buffer' });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    const present = new Set<string>();
    for (const raw of names) {
      const name = raw.toString('utf8');
      const child = joinRel(rel, name);
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        this.#warn(child, 'name is not valid UTF-8');
        continue;
      }
      present.add(child);
      await this.#visit(child, childForced);
    }
    for (const old of this.#children.get(rel) ?? []) {
      if (!present.has(old) && this.#live(old) && !relPathIsExcluded(old, this.#excludes)) this.#noteVanished(old);
    }
  }

  #ships(c: Cand): boolean {
    if (c.forced) return true;
    const old = this.#index.get(c.path);
    if (c.kind === 'w') return old?.t !== 'w';
    const opaque = c.xattrs === undefined ? old?.o === true : c.opaque;
    return !sameRec(old, recFromStat(c.kind, c.st, opaque));
  }

  shipping(): Cand[] {
    return [...this.cands.values()].filter((c) => this.#ships(c));
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

  /** Adds hard-link siblings, ancestor dirs and xattrs; walks in full every dir that must carry its opaque marker.
   *  Repeats until nothing new appears (bounded by the tree). */
  async complete(full: boolean): Promise<void> {
    for (let round = 0; round < 10_000; round++) {
      let grew = false;
      for (const p of [...this.#recheck]) {
        this.#recheck.delete(p);
        if (this.cands.has(p) || this.vanished.has(p) || this.covered(p)) continue;
        if (ancestorsOf(p).some((a) => this.vanished.has(a))) continue;
        await this.#visit(p, false);
        grew = true;
      }
      // Hard-link siblings of shipped files ship together.
      for (const c of this.shipping()) {
        if (c.kind !== 'f' || c.st.nlink <= 1n) continue;
        const known = new Set([...(this.#byIno.get(Number(c.st.ino)) ?? [])]);
        for (const other of this.cands.values()) if (other.kind === 'f' && other.st.ino === c.st.ino) known.add(other.path);
        for (const p of known) {
          const existing = this.cands.get(p);
          if (existing !== undefined) {
            if (existing.st.ino === c.st.ino && !existing.forced && existing.kind === 'f') {
              existing.forced = true;
              grew = true;
            }
            continue;
          }
          if (relPathIsExcluded(p, this.#excludes)) continue;
          const st = await lstatOrNull(join(this.#upper, p));
          if (st !== null && st.isFile() && st.ino === c.st.ino && st.dev === c.st.dev) {
            this.cands.set(p, { path: p, st, kind: 'f', forced: true, opaque: false });
            grew = true;
          }
        }
      }
      // Ancestors of shipped entries: included when they differ from what was shipped; a new one is walked whole.
      const needParents = [
        ...this.shipping().map((c) => ({ path: c.path, hint: false })),
        ...[...this.vanished].map((v) => ({ path: v, hint: false })),
        ...[...this.dirtyParents].map((v) => ({ path: v, hint: true })),
      ];
      this.dirtyParents.clear();
      for (const c of needParents) {
        for (const a of ancestorsOf(c.path)) {
          if (this.cands.has(a)) continue;
          const st = await lstatOrNull(join(this.#upper, a));
          if (st === null || !st.isDirectory()) {
            if (c.hint) break;
            // Raced with a removal: leave this path for the next build.
            this.torn.push(c.path);
            this.cands.delete(c.path);
            this.vanished.delete(c.path);
            break;
          }
          if (this.#isNewDir(a, st)) {
            await this.walk(a, true);
            this.newDirs.add(a);
          } else {
            this.cands.set(a, { path: a, st, kind: 'd', forced: false, opaque: false });
          }
          grew = true;
        }
      }
      // Xattrs of everything that may ship (dirs need them to know whether they are opaque).
      const need = [...this.cands.values()].filter((c) => c.kind !== 'w' && c.xattrs === undefined && (c.forced || this.#statDiffers(c)));
      if (need.length > 0) {
        const got = await readXattrs(need.map((c) => join(this.#upper, c.path)));
        for (const c of need) {
          c.xattrs = got.get(join(this.#upper, c.path)) ?? [];
          c.opaque = c.kind === 'd' && c.xattrs.some(([n, v]) => n === opaqueXattr && v.toString('latin1') === 'y');
        }
      }
      for (const c of this.cands.values()) {
        if (c.kind === 'd' && c.xattrs === undefined) c.opaque = this.#index.get(c.path)?.o === true;
      }
      // A dir that is (newly, or replaced while) opaque ships its marker, so it must ship its whole subtree.
      for (const c of [...this.cands.values()]) {
        if (c.kind !== 'd' || !c.opaque || this.covered(c.path)) continue;
        const old = this.#index.get(c.path);
        if (full || this.#isNewDir(c.path, c.st) || old?.o !== true) {
          await this.walk(c.path, true);
          grew = true;
        }
      }
      if (!grew) return;
    }
  }

  #statDiffers(c: Cand): boolean {
    const old = this.#index.get(c.path);
    if (c.kind === 'w') return old?.t !== 'w';
    return !sameRec(old, recFromStat(c.kind, c.st, old?.o === true));
  }
}
