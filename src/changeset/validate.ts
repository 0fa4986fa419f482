// Standby side, first pass: reads the whole changeset without writing anything and refuses it if any entry is
// unsafe (THREATS.md "Changeset content"). The result is the metadata of every entry (no bodies), which the
// second pass uses to apply it.
import { lstat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangesetRejectedError } from './errors.js';
import { maxNameBytes, type Limits } from './limits.js';
import { ancestorsOf, isAtOrUnder, parentOf, relPathProblem, tarPathMeaning } from './paths.js';
import type { TarEntry } from './tar-format.js';
import { readChangeset } from './tar-reader.js';
import type { ChangesetKind } from './built-changeset.js';

export type Meaning = 'plain' | 'whiteout' | 'opaque';

export interface PlannedEntry {
  e: TarEntry;
  meaning: Meaning;
  /** The path this entry changes: the entry's own path, a whiteout's target, or an opaque marker's dir. */
  target: string;
  seq: number;
}

export interface StagePlan {
  /** Plain entries and whiteouts by the path they change. */
  byTarget: Map<string, PlannedEntry>;
  opaqueDirs: Set<string>;
  entries: number;
  files: number;
  deletions: number;
  bytes: number;
}

type DiskKind = 'dir' | 'file' | 'symlink' | 'other' | 'absent';

const xattrNamespaces = ['user.', 'security.', 'trusted.'];
const xattrExact = new Set(['system.posix_acl_access', 'system.posix_acl_default']);

function reject(message: string, entry: string): never {
  throw new ChangesetRejectedError(message, { entry });
}

function xattrProblem(name: string): string | null {
  if (name.startsWith('trusted.overlay.')) return `xattr ${name} steers overlayfs and is never set from a changeset`;
  if (name.includes('\0') || Buffer.byteLength(name) > maxNameBytes) return 'malformed xattr name';
  if (xattrExact.has(name)) return null;
  const ns = xattrNamespaces.find((p) => name.startsWith(p));
  if (ns === undefined || name.length === ns.length) return `xattr namespace of ${JSON.stringify(name)} not allowed`;
  return null;
}

/** Reads and checks the whole blob; throws ChangesetRejectedError naming the first bad entry. */
export async function validateChangeset(blobFile: string, kind: ChangesetKind, upperDir: string, limits: Limits): Promise<StagePlan> {
  const plan: StagePlan = { byTarget: new Map(), opaqueDirs: new Set(), entries: 0, files: 0, deletions: 0, bytes: 0 };
  const links: PlannedEntry[] = [];
  await readChangeset(blobFile, limits, async (e) => {
    const problem = relPathProblem(e.path, limits.maxPathBytes);
    if (problem !== null) reject(problem, e.path);
    const meaning = tarPathMeaning(e.path);
    if (typeof meaning === 'string') reject(meaning, e.path);
    for (const [name] of e.xattrs) {
      const xp = xattrProblem(name);
      if (xp !== null) reject(xp, e.path);
    }
    if (e.removeOnly === true && meaning.kind !== 'whiteout') reject('remove-only flag on an entry that is not a whiteout', e.path);
    const seq = plan.entries++;
    if (meaning.kind === 'opaque') {
      if (e.type !== 'file' || e.size !== 0 || e.xattrs.length > 0) reject('opaque marker must be an empty file', e.path);
      if (plan.opaqueDirs.has(meaning.dir)) reject('repeated opaque marker', e.path);
      plan.opaqueDirs.add(meaning.dir);
      return;
    }
    const target = meaning.kind === 'whiteout' ? meaning.target : meaning.path;
    if (meaning.kind === 'whiteout' && (e.type !== 'file' || e.size !== 0 || e.xattrs.length > 0)) reject('whiteout must be an empty file', e.path);
    const prior = plan.byTarget.get(target);
    if (prior !== undefined) {
      reject(prior.meaning === 'whiteout' || meaning.kind === 'whiteout' ? 'whiteout and entry for the same name' : 'repeated path', e.path);
    }
    const planned: PlannedEntry = { e, meaning: meaning.kind, target, seq };
    plan.byTarget.set(target, planned);
    if (meaning.kind === 'whiteout') plan.deletions++;
    else plan.files++;
    if (e.type === 'file') plan.bytes += e.size;
    if (e.type === 'hardlink') {
      const lp = e.linkpath ?? '';
      const lprob = relPathProblem(lp, limits.maxPathBytes);
      if (lprob !== null) reject(`hard link target: ${lprob}`, e.path);
      const lm = tarPathMeaning(lp);
      if (typeof lm === 'string' || lm.kind !== 'plain') reject('hard link to a whiteout name', e.path);
      links.push(planned);
    }
    await Promise.resolve();
  });

  const disk = new DiskView(upperDir);
  const opaqueList = [...plan.opaqueDirs];
  const underOpaque = (rel: string): boolean => opaqueList.some((d) => rel !== d && isAtOrUnder(rel, d));
  const checkedParents = new Set<string>();
  const checkParent = async (a: string, entry: string): Promise<void> => {
    const inMap = plan.byTarget.get(a);
    if (inMap !== undefined) {
      if (inMap.meaning !== 'plain' || inMap.e.type !== 'dir') {
        reject(`entry under ${a}, which this changeset makes a ${inMap.meaning === 'whiteout' ? 'whiteout' : inMap.e.type}`, entry);
      }
      return;
    }
    if (checkedParents.has(a)) return;
    if (kind === 'full') reject(`parent ${a} is missing from a full changeset`, entry);
    if (underOpaque(a)) reject(`parent ${a} would be removed by an opaque marker of this changeset`, entry);
    const k = await disk.kind(a);
    if (k !== 'dir') reject(k === 'absent' ? `parent ${a} does not exist` : `parent ${a} is a ${k} on disk, not a directory`, entry);
    checkedParents.add(a);
  };
  for (const p of plan.byTarget.values()) {
    for (const a of ancestorsOf(p.target)) await checkParent(a, p.e.path);
  }
  for (const d of plan.opaqueDirs) {
    for (const a of [...ancestorsOf(d), d]) await checkParent(a, `${d}/.wh..wh..opq`);
  }
  for (const link of links) {
    const t = link.e.linkpath ?? '';
    const inMap = plan.byTarget.get(t);
    if (inMap !== undefined) {
      if (inMap.meaning !== 'plain' || inMap.e.type !== 'file') reject('hard link to something other than a regular file', link.e.path);
      if (inMap.seq > link.seq) reject('hard link before its target', link.e.path);
      continue;
    }
    if (kind === 'full') reject('hard link to a path absent from a full changeset', link.e.path);
    for (const a of ancestorsOf(t)) {
      const m = plan.byTarget.get(a);
      if (m !== undefined && (m.meaning !== 'plain' || m.e.type !== 'dir')) reject('hard link through a path this changeset replaces', link.e.path);
    }
    if (underOpaque(t)) reject('hard link to a path an opaque marker removes', link.e.path);
    const k = await disk.kind(t);
    if (k === 'absent') reject('hard link to an absent path', link.e.path);
    if (k !== 'file') reject(`hard link to a ${k}`, link.e.path);
  }
  // Room for the bodies plus a block per entry for inodes and dir growth.
  const fs = await statfs(upperDir);
  const free = fs.bavail * fs.bsize;
  const need = plan.bytes + plan.entries * 4096;
  if (need > free) {
    throw new ChangesetRejectedError(`changeset needs ${need} bytes, the target has ${free} free`, { entry: '<changeset>', path: upperDir, hint: 'free disk space on the standby' });
  }
  return plan;
}

/** What is on disk at a relative path, never following a symlink: a path below a non-directory is absent. */
class DiskView {
  readonly #upper: string;
  readonly #cache = new Map<string, DiskKind>();

  constructor(upper: string) {
    this.#upper = upper;
  }

  async kind(rel: string): Promise<DiskKind> {
    if (rel === '') return 'dir';
    const cached = this.#cache.get(rel);
    if (cached !== undefined) return cached;
    let k: DiskKind;
    const parentKind = await this.kind(parentOf(rel));
    if (parentKind === 'symlink') k = 'symlink';
    else if (parentKind !== 'dir') k = 'absent';
    else {
      try {
        const st = await lstat(join(this.#upper, rel));
        k = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
        k = 'absent';
      }
    }
    this.#cache.set(rel, k);
    return k;
  }
}
