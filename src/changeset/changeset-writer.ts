// Writes one scan's changes as a changeset file (tar, then deterministic gzip and its digest), with the index
// delta the tracker adopts once the changeset is published. Torn entries are left out and reported; entries read
// within a timestamp tick of their last change are recorded with their fingerprint (racy.ts).
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuiltChangeset, ChangesetCounts } from './built-changeset.js';
import { copyEntry } from './copy-entry.js';
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
export async function writeChangeset(scan: Scan, workDir: string, full: boolean, torn: string[]): Promise<Written | null> {
  const shipping = scan.shipping();
  const vanished = full ? [] : scan.topVanished();
  if (shipping.length === 0 && vanished.length === 0) return null;
  const plans = planEntries(scan, shipping, vanished);

  await mkdir(workDir, { recursive: true });
  const id = randomBytes(8).toString('hex');
  const tmpTar = join(workDir, `.changeset-${id}.tar`);
  const file = join(workDir, `changeset-${id}.tar.gz`);
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
      const ok = await copyEntry(writer, scan.abs(c.path), c, plan.linkTo, counts, print);
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
    if (entries === 0) return null;
    const { digest, size } = await gzipAndHash(tmpTar, file);
    const built: BuiltChangeset = { kind: full ? 'full' : 'delta', file, digest, size, counts, torn: [...new Set(torn)].sort(comparePaths) };
    return { built, delta };
  } catch (err) {
    await writer.abandon();
    await rm(file, { force: true });
    throw err;
  } finally {
    await rm(tmpTar, { force: true });
  }
}
