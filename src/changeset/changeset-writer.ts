// Writes one scan's changes as a changeset file (tar, then deterministic gzip and its digest), with the index
// delta the tracker adopts once the changeset is published. Torn entries are left out and reported; entries read
// within a timestamp tick of their last change are recorded with their fingerprint (racy.ts).
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuiltChangeset, ChangesetCounts } from './built-changeset.js';
import { encodeChunkList, type ChunkedFile } from './chunk-list.js';
import type { ChunkingOptions, Spool } from './chunked-copy.js';
import { copyEntry, type ChunkTarget } from './copy-entry.js';
import { planEntries, zeroEntry } from './entry-plan.js';
import { baseOf, comparePaths } from './paths.js';
import { Fingerprint, isRacy } from './racy.js';
import { recFromStat, whiteoutRec, type IndexDelta } from './shipped-index.js';
import { gzipAndHash, TarFileWriter } from './tar-writer.js';
import type { Scan } from './upper-scan.js';

export interface Written {
  built: BuiltChangeset;
  delta: IndexDelta;
}

/** Null when nothing ships (or everything that would was torn); `torn` gets the paths left for the next build. */
export async function writeChangeset(scan: Scan, workDir: string, full: boolean, torn: string[], chunking?: ChunkingOptions): Promise<Written | null> {
  const shipping = scan.shipping();
  const vanished = full ? [] : scan.topVanished();
  if (shipping.length === 0 && vanished.length === 0) return null;
  const plans = planEntries(scan, shipping, vanished);

  await mkdir(workDir, { recursive: true });
  const id = randomBytes(8).toString('hex');
  const tmpTar = join(workDir, `.changeset-${id}.tar`);
  const file = join(workDir, `changeset-${id}.tar.gz`);
  const spoolDir = join(workDir, `chunks-${id}`);
  const listFile = join(workDir, `chunks-${id}.json.gz`);
  const chunkedFiles: ChunkedFile[] = [];
  const spool: Spool = new Map();
  if (chunking !== undefined) await mkdir(spoolDir, { mode: 0o700 });
  const writer = await TarFileWriter.create(tmpTar);
  const tornGroups = new Set<string>();
  /** Hard-link group -> fingerprint of its first member: the others share its inode, so its content and xattrs. */
  const groupPrints = new Map<string, string>();
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
      const racy = isRacy(c.st, scan.startNs);
      const print = racy && plan.linkTo === undefined ? new Fingerprint(c.xattrs) : undefined;
      const chunk: ChunkTarget | undefined = chunking !== undefined && c.kind === 'f' && plan.linkTo === undefined && c.st.size > BigInt(chunking.thresholdBytes)
        ? { spoolDir, spool, known: chunking.known, files: chunkedFiles }
        : undefined;
      const ok = await copyEntry(writer, scan.abs(c.path), c, plan.linkTo, counts, print, chunk);
      if (!ok) {
        torn.push(c.path);
        if (plan.group !== undefined) tornGroups.add(plan.group);
        continue;
      }
      entries++;
      counts.files++;
      const rec = recFromStat(c.kind === 'd' ? 'd' : c.kind === 'l' ? 'l' : 'f', c.st, c.opaque);
      if (print !== undefined) {
        rec.h = print.digest();
        if (plan.group !== undefined) groupPrints.set(plan.group, rec.h);
      } else if (racy) {
        rec.h = (plan.group === undefined ? undefined : groupPrints.get(plan.group)) ?? '';
      }
      delta.set.push([c.path, rec]);
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
      await rm(spoolDir, { recursive: true, force: true });
      return null;
    }
    const { digest, size } = await gzipAndHash(tmpTar, file);
    const built: BuiltChangeset = { kind: full ? 'full' : 'delta', file, digest, size, counts, torn: [...new Set(torn)].sort(comparePaths) };
    if (chunkedFiles.length > 0) {
      const stored = encodeChunkList({ version: 1, files: chunkedFiles });
      await writeFile(listFile, stored, { flag: 'wx', mode: 0o600 });
      built.chunks = { list: { version: 1, files: chunkedFiles }, file: listFile, digest: createHash('sha256').update(stored).digest('hex'), size: stored.length, spool, spoolDir };
    } else if (chunking !== undefined) {
      await rm(spoolDir, { recursive: true, force: true });
    }
    return { built, delta };
  } catch (err) {
    await writer.abandon();
    await rm(file, { force: true });
    await rm(spoolDir, { recursive: true, force: true });
    await rm(listFile, { force: true });
    throw err;
  } finally {
    await rm(tmpTar, { force: true });
  }
}
