// Standby side, first pass: reads the whole changeset without writing anything and refuses it if any entry is
// unsafe (THREATS.md "Changeset content") or would fail while being applied. Entries are checked in stream order,
// as the second pass applies them: a parent must be a real directory when its child comes (an earlier entry of
// this changeset, or on disk and left alone by the rest of it), a hard link's target must be there when the link
// comes.
//
// Memory is bounded whatever the blob holds: nothing is kept per entry but one small integer per path in `index`
// (the paths the changeset changes, and those on disk it relies on), charged against `limits.maxIndexBytes`, plus
// the mtime of each directory entry. xattr values are checked and dropped; the second pass reads them again.
import { createReadStream } from 'node:fs';
import { lstat, stat, statfs } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { bytesNeeded, type DeclaredChangeset } from './declared.js';
import { ChangesetNoRoomError, ChangesetRejectedError } from './errors.js';
import { indexBytesPerPath, maxMtimeSec, minMtimeSec, pathMaxBytes, xattrProbeFromBytes, type Limits } from './limits.js';
import { ancestorsOf, parentOf, relPathProblem } from './paths.js';
import type { TarEntry } from './tar-format.js';
import { readChangesetFrom } from './tar-reader.js';
import type { ChangesetKind } from './built-changeset.js';
import type { ListedFile, ChunkList } from './chunk-list.js';
import type { TreeRoots } from './tree-roots.js';
import { treeOf, treePathMeaning, volumesDir } from './volume-paths.js';
import { probeXattrRoom } from './xattr.js';
import { xattrFootprint, xattrProblem } from './xattr-rules.js';

/** What a changeset makes of a path: the entry type, or a whiteout. */
export type TargetKind = 'dir' | 'file' | 'symlink' | 'hardlink' | 'whiteout';

export interface StagePlan {
  /** What the changeset makes of each path it changes (a whiteout by its target path). */
  readonly targets: { get(rel: string): TargetKind | undefined; has(rel: string): boolean };
  /** Directories carrying an opaque marker. */
  readonly opaqueDirs: { has(rel: string): boolean };
  /** The mtime of each directory entry: set last, once its children are written. */
  readonly dirMtimes: ReadonlyMap<string, bigint>;
  entries: number;
  files: number;
  deletions: number;
  bytes: number;
}

export interface ValidateOptions {
  kind: ChangesetKind;
  /** The resolved upper dir and volume dirs. */
  roots: TreeRoots;
  /** On the upper dir's file system, outside it: where the xattr probe's scratch file goes. */
  tmpDir: string;
  limits: Limits;
  /** What the commit record declares; the blob may not hold more. */
  declared?: DeclaredChangeset;
  signal?: AbortSignal;
  /** The commit's chunk list (parsed and bounded, chunk-list.ts): each chunked entry must be in it, and it may name
   *  nothing else. */
  chunks?: ChunkList;
}

// Bits of an index value. The low three say what this changeset makes of the path (0: nothing).
const KIND_MASK = 0b111;
const kindCode: Record<TargetKind, number> = { dir: 1, file: 2, symlink: 3, hardlink: 4, whiteout: 5 };
const kindName: Array<TargetKind | undefined> = [undefined, 'dir', 'file', 'symlink', 'hardlink', 'whiteout'];
/** The path carries an opaque marker. */
const OPAQUE = 1 << 3;
/** An entry relies on this path being a directory on disk that the changeset leaves in place. */
const RELIED_DIR = 1 << 4;
/** A hard link relies on this path being a regular file on disk that the changeset leaves in place. */
const RELIED_FILE = 1 << 5;
/** Some path strictly below this one is relied on (an opaque marker here would remove it). */
const RELIED_BELOW = 1 << 6;

type DiskKind = 'dir' | 'file' | 'symlink' | 'other' | 'absent';

function reject(message: string, entry: string): never {
  throw new ChangesetRejectedError(message, { entry });
}

/** Reads and checks the whole blob; throws ChangesetRejectedError naming the first bad entry, ChangesetNoRoomError
 *  when the target lacks the space, or the signal's reason when aborted. Writes nothing but the xattr probe's
 *  scratch file in tmpDir (removed). */
export async function validateChangeset(blobFile: string, o: ValidateOptions): Promise<StagePlan> {
  const stored = (await stat(blobFile)).size;
  return validateChangesetStream(createReadStream(blobFile, { highWaterMark: 1 << 20 }), stored, o);
}

/** validateChangeset of the blob's bytes as `input` streams them (a download on its way); `stored`: the blob's size
 *  as its record declares it. The same checks, in the same order, and the same plan. */
export async function validateChangesetStream(input: Readable, stored: number, o: ValidateOptions): Promise<StagePlan> {
  const v = new Validator(o);
  try {
    await v.prepare();
  } catch (err) {
    input.destroy();
    throw err;
  }
  await readChangesetFrom(input, stored, o.limits, (e) => v.entry(e), o.signal === undefined ? {} : { signal: o.signal });
  await v.finish();
  return v.plan;
}

class Validator {
  readonly #o: ValidateOptions;
  readonly #index = new Map<string, number>();
  readonly #dirMtimes = new Map<string, bigint>();
  readonly #disk: DiskView;
  /** Longest relative path whose absolute form still fits PATH_MAX under this upper dir. */
  readonly #maxRel: number;
  #indexBytes = 0;
  #xattrBytes = 0;
  #opaqueMarkers = 0;
  #free = Infinity;
  readonly #chunked = new Map<string, ListedFile>();
  #chunkedUsed = 0;
  #chunkedBytes = 0;
  /** The entry whose xattrs take the most room, probed on the target before anything is written. */
  #widest: { entry: string; footprint: number; layout: Array<readonly [string, number]> } | null = null;
  readonly plan: StagePlan;

  constructor(o: ValidateOptions) {
    this.#o = o;
    this.#disk = new DiskView(o.roots);
    const longest = Math.max(...o.roots.dirs().map((d) => Buffer.byteLength(d)));
    this.#maxRel = Math.min(o.limits.maxPathBytes, pathMaxBytes - 1 - longest - 1);
    for (const f of o.chunks?.files ?? []) this.#chunked.set(f.path, f);
    const index = this.#index;
    this.plan = {
      targets: {
        get: (rel) => kindName[(index.get(rel) ?? 0) & KIND_MASK],
        has: (rel) => ((index.get(rel) ?? 0) & KIND_MASK) !== 0,
      },
      opaqueDirs: { has: (rel) => ((index.get(rel) ?? 0) & OPAQUE) !== 0 },
      dirMtimes: this.#dirMtimes,
      entries: 0,
      files: 0,
      deletions: 0,
      bytes: 0,
    };
  }

  async prepare(): Promise<void> {
    const fs = await statfs(this.#o.roots.upper);
    this.#free = fs.bavail * fs.bsize;
  }

  #flags(rel: string): number {
    return this.#index.get(rel) ?? 0;
  }

  /** Sets bits on a path, charging a path seen for the first time against the index budget. */
  #mark(rel: string, bits: number, entry: string): void {
    const had = this.#index.get(rel);
    if (had === undefined) {
      this.#indexBytes += Buffer.byteLength(rel) + indexBytesPerPath;
      if (this.#indexBytes > this.#o.limits.maxIndexBytes) {
        reject(`the changeset changes or relies on more paths than validation indexes (${this.#o.limits.maxIndexBytes} bytes of paths)`, entry);
      }
    }
    this.#index.set(rel, (had ?? 0) | bits);
  }

  async entry(e: TarEntry): Promise<void> {
    const { limits, declared } = this.#o;
    const p = this.plan;
    const problem = relPathProblem(e.path, this.#maxRel);
    if (problem !== null) reject(this.#maxRel < limits.maxPathBytes && problem.startsWith('path longer') ? `${problem} (the upper dir's path and the entry's must fit PATH_MAX)` : problem, e.path);
    const meaning = treePathMeaning(e.path);
    if (typeof meaning === 'string') reject(meaning, e.path);
    this.#checkTree(e, meaning.kind);
    if (e.mtimeNs < minMtimeSec * 1_000_000_000n || e.mtimeNs >= maxMtimeSec * 1_000_000_000n) {
      reject(`mtime ${e.mtimeNs / 1_000_000_000n} s is outside what staging can set (${minMtimeSec} to ${maxMtimeSec - 1n})`, e.path);
    }
    this.#checkXattrs(e);
    if (e.removeOnly === true && meaning.kind !== 'whiteout') reject('remove-only flag on an entry that is not a whiteout', e.path);
    if (e.chunked !== undefined && meaning.kind !== 'plain') reject('a whiteout or opaque marker shipped in chunks', e.path);
    p.entries++;

    if (meaning.kind === 'opaque') {
      if (e.type !== 'file' || e.size !== 0 || e.xattrs.length > 0) reject('opaque marker must be an empty file', e.path);
      const d = meaning.dir;
      if (d === '') reject('opaque marker at the root of the changeset (it would mark the upper dir itself opaque)', e.path);
      const f = this.#flags(d);
      if ((f & OPAQUE) !== 0) reject('repeated opaque marker', e.path);
      // Each opaque marker follows the entry of its dir, which the record counts among its files.
      if (declared !== undefined && ++this.#opaqueMarkers > declared.files) reject(`more opaque markers than the ${declared.files} files the commit record declares`, e.path);
      await this.#requireParents(d, e.path, true);
      if ((this.#flags(d) & RELIED_BELOW) !== 0) reject(`an earlier entry of this changeset needs a path under ${d} that this opaque marker removes`, e.path);
      this.#mark(d, OPAQUE, e.path);
      return;
    }

    const target = meaning.kind === 'whiteout' ? meaning.target : meaning.path;
    if (meaning.kind === 'whiteout' && (e.type !== 'file' || e.size !== 0 || e.xattrs.length > 0)) reject('whiteout must be an empty file', e.path);
    const tk: TargetKind = meaning.kind === 'whiteout' ? 'whiteout' : e.type;
    const f = this.#flags(target);
    const prior = kindName[f & KIND_MASK];
    if (prior !== undefined) reject(prior === 'whiteout' || tk === 'whiteout' ? 'whiteout and entry for the same name' : 'repeated path', e.path);
    if ((f & RELIED_FILE) !== 0) reject(`an earlier hard link of this changeset points to ${target}, which this entry replaces`, e.path);
    if ((f & RELIED_DIR) !== 0 && tk !== 'dir') reject(`earlier entries of this changeset are under ${target}, which this one makes a ${tk}`, e.path);
    await this.#requireParents(target, e.path, false);

    if (tk === 'whiteout') {
      p.deletions++;
      if (declared !== undefined && p.deletions > declared.deletions) reject(`more deletions than the ${declared.deletions} the commit record declares`, e.path);
    } else {
      p.files++;
      if (declared !== undefined && p.files > declared.files) reject(`more entries than the ${declared.files} files the commit record declares`, e.path);
    }
    if (e.type === 'file' && tk === 'file') {
      p.bytes += e.size;
      if (declared !== undefined && p.bytes > declared.bytes) reject(`the file bodies pass the ${declared.bytes} bytes the commit record declares`, e.path);
    }
    if (e.chunked !== undefined) {
      const f = this.#chunked.get(e.path);
      if (f === undefined) reject('an entry shipped in chunks that the chunk list does not name', e.path);
      if (f.digest !== e.chunked) reject(`the entry names sha256 ${e.chunked}, its chunk list ${f.digest}`, e.path);
      this.#chunkedUsed++;
      this.#chunkedBytes += f.size;
    }
    // The disk budget is checked as it grows, not at the end: a header declaring 70 GiB stops the read right there.
    const need = bytesNeeded({ files: p.files, deletions: p.deletions, bytes: p.bytes }) + this.#chunkedBytes;
    if (need > this.#free) {
      throw new ChangesetNoRoomError(`changeset needs at least ${need} bytes, the target has ${this.#free} free`, { entry: e.path, path: this.#o.roots.upper, hint: 'free disk space on the standby' });
    }
    if (tk === 'hardlink') await this.#checkLink(e);
    // symlink(2) takes a target of PATH_MAX - 1 bytes at most.
    if (tk === 'symlink' && Buffer.byteLength(e.linkpath ?? '') > pathMaxBytes - 1) reject(`symlink target longer than ${pathMaxBytes - 1} bytes`, e.path);
    this.#mark(target, kindCode[tk], e.path);
    if (tk === 'dir') this.#dirMtimes.set(target, e.mtimeNs);
  }

  /** A volume is a plain directory of the twin: the changeset may only name volumes the twin has, a volume's root is
   *  a dir, and a deletion there is a removal (overlayfs whiteouts and opaque dirs exist only in the upper dir). */
  #checkTree(e: TarEntry, kind: 'plain' | 'whiteout' | 'opaque'): void {
    const t = treeOf(e.path);
    if (t.root !== 'volume') return;
    if (!this.#o.roots.volumes.has(t.key)) reject(`volume ${t.key} is not a volume of this twin`, e.path);
    if (t.rel === '' && e.type !== 'dir') reject(`the root of volume ${t.key} must be a directory`, e.path);
    if (kind === 'opaque') reject('opaque marker inside a volume (a volume is a plain directory)', e.path);
    if (kind === 'whiteout' && e.removeOnly !== true) reject('whiteout inside a volume without the remove-only flag (a volume is a plain directory: a deletion is a removal)', e.path);
  }

  #checkXattrs(e: TarEntry): void {
    if (e.xattrs.length === 0) return;
    for (const [name, value] of e.xattrs) {
      const xp = xattrProblem(name, value, e.type);
      if (xp !== null) reject(xp, e.path);
      this.#xattrBytes += Buffer.byteLength(name) + value.length;
    }
    if (this.#xattrBytes > this.#o.limits.maxXattrBytes) reject(`the changeset's xattrs pass ${this.#o.limits.maxXattrBytes} bytes`, e.path);
    // Sizes only: the probe writes placeholder values of the same lengths.
    const layout = e.xattrs.map(([n, value]) => [n, value.length] as const);
    const footprint = xattrFootprint(layout);
    if (footprint > xattrProbeFromBytes && footprint > (this.#widest?.footprint ?? 0)) this.#widest = { entry: e.path, footprint, layout };
  }

  /**
   * Every proper ancestor of `rel` (and `rel` itself when `self`) must be a real directory when the entry is applied:
   * a dir entry earlier in this changeset, or a directory on disk that no earlier entry replaced or removed. The
   * latter are marked as relied on, so a later entry that replaces them, or an opaque marker above them, is refused.
   */
  async #requireParents(rel: string, entry: string, self: boolean): Promise<void> {
    const chain = ancestorsOf(rel);
    if (self) chain.push(rel);
    let opaqueAbove = false;
    const relied: string[] = [];
    for (const a of chain) {
      // The reserved volumes dir is no directory anywhere; the volume dirs under it are.
      if (a === volumesDir) continue;
      const f = this.#flags(a);
      const k = kindName[f & KIND_MASK];
      if (k !== undefined) {
        if (k !== 'dir') reject(`entry under ${a}, which this changeset makes a ${k}`, entry);
      } else {
        if (this.#o.kind === 'full') reject(`parent ${a} is missing from a full changeset (or comes after this entry)`, entry);
        if (opaqueAbove) reject(`parent ${a} would be removed by an opaque marker of this changeset`, entry);
        if ((f & RELIED_DIR) === 0) {
          const dk = await this.#disk.kind(a);
          if (dk !== 'dir') reject(dk === 'absent' ? `parent ${a} does not exist (on disk, or earlier in this changeset)` : `parent ${a} is a ${dk} on disk, not a directory`, entry);
          this.#mark(a, RELIED_DIR, entry);
          relied.push(a);
        }
      }
      if ((f & OPAQUE) !== 0) opaqueAbove = true;
    }
    for (const r of relied) this.#markAncestorsReliedBelow(r);
  }

  #markAncestorsReliedBelow(rel: string): void {
    for (const a of ancestorsOf(rel)) {
      const f = this.#flags(a);
      if ((f & RELIED_BELOW) === 0) this.#index.set(a, f | RELIED_BELOW);
    }
  }

  async #checkLink(e: TarEntry): Promise<void> {
    const t = e.linkpath ?? '';
    const lprob = relPathProblem(t, this.#maxRel);
    if (lprob !== null) reject(`hard link target: ${lprob}`, e.path);
    const lm = treePathMeaning(t);
    if (typeof lm === 'string' || lm.kind !== 'plain') reject('hard link to a whiteout name', e.path);
    const from = treeOf(e.path);
    const to = treeOf(t);
    if (from.root !== to.root || (from.root === 'volume' && to.root === 'volume' && from.key !== to.key)) reject('hard link across the upper dir and a volume, or two volumes', e.path);
    if (to.root === 'volume' && to.rel === '') reject('hard link to a volume root', e.path);
    if (t === e.path) reject('hard link to itself', e.path);
    const f = this.#flags(t);
    const k = kindName[f & KIND_MASK];
    if (k !== undefined) {
      if (k !== 'file') reject(`hard link to a ${k === 'whiteout' ? 'path this changeset deletes' : k}, not a regular file`, e.path);
      return;
    }
    if (this.#o.kind === 'full') reject('hard link to a path absent from a full changeset (or after the link)', e.path);
    await this.#requireParents(t, e.path, false);
    if (ancestorsOf(t).some((a) => (this.#flags(a) & OPAQUE) !== 0)) reject('hard link to a path an opaque marker removes', e.path);
    if ((f & RELIED_FILE) === 0) {
      const dk = await this.#disk.kind(t);
      if (dk === 'absent') reject('hard link to an absent path (on disk, or earlier in this changeset)', e.path);
      if (dk !== 'file') reject(`hard link to a ${dk}`, e.path);
      this.#mark(t, RELIED_FILE, e.path);
      this.#markAncestorsReliedBelow(t);
    }
  }

  async finish(): Promise<void> {
    if (this.#chunkedUsed !== this.#chunked.size) reject(`the chunk list names ${this.#chunked.size} files, the changeset ships ${this.#chunkedUsed} in chunks`, '<chunk list>');
    const w = this.#widest;
    if (w !== null) {
      const why = await probeXattrRoom(this.#o.tmpDir, w.layout);
      if (why !== null) reject(why, w.entry);
    }
  }
}

/** What is on disk at a relative path, never following a symlink: a path below a non-directory is absent. Its
 *  cache is dropped when it grows large (it only saves lstat calls). */
class DiskView {
  static readonly maxCached = 65_536;
  readonly #roots: TreeRoots;
  readonly #cache = new Map<string, DiskKind>();

  constructor(roots: TreeRoots) {
    this.#roots = roots;
  }

  async kind(rel: string): Promise<DiskKind> {
    if (rel === '') return 'dir';
    if (rel === volumesDir) return this.#roots.volumes.size > 0 ? 'dir' : 'absent';
    const cached = this.#cache.get(rel);
    if (cached !== undefined) return cached;
    let k: DiskKind;
    const parentKind = await this.kind(parentOf(rel));
    if (parentKind === 'symlink') k = 'symlink';
    else if (parentKind !== 'dir') k = 'absent';
    else {
      try {
        // abs() refuses a volume the twin does not have.
        const st = await lstat(this.#roots.abs(rel));
        k = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
        k = 'absent';
      }
    }
    if (this.#cache.size >= DiskView.maxCached) this.#cache.clear();
    this.#cache.set(rel, k);
    return k;
  }
}
