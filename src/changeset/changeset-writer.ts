// Writes one build's changes as a changeset file (tar, then deterministic gzip and its digest), with the index
// delta of each tree the tracker adopts once the changeset is published. A container's changeset holds several
// trees: its upper dir at the top, and each volume under its reserved prefix (volume-paths.ts), all in one sorted
// stream. Torn entries are left out and reported; entries read within a timestamp tick of their last change are
// recorded with their fingerprint (racy.ts). Files above the chunking threshold, in any tree, ship as chunks named
// by their tar path in the chunk list.
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuiltChangeset, ChangesetCounts } from './built-changeset.js';
import type { ChunkedFile } from './chunk-list.js';
import type { ChunkingOptions } from './chunked-copy.js';
import { copyEntry, type ChunkTarget } from './copy-entry.js';
import { planEntries, zeroEntry, type EntryPlan } from './entry-plan.js';
import { baseOf, comparePaths } from './paths.js';
import { Fingerprint, isJustChanged, isRacy } from './racy.js';
import { recFromStat, whiteoutRec, type IndexDelta } from './shipped-index.js';
import { gzipAndHash, TarFileWriter } from './tar-writer.js';
import type { Cand } from './upper-node.js';
import type { Scan } from './upper-scan.js';

/** One tree of the build: its scan, the prefix its tar paths take ('' for the upper dir, `<volume dir>/` for a
 *  volume), and a volume's root dir when it ships (its owner and mode are the volume's). */
export interface ScanPart {
  scan: Scan;
  prefix: string;
  root: Cand | null;
  /** Paths of this tree (scan-relative) left out because they changed while being read. */
  torn: string[];
}

export interface Written {
  built: BuiltChangeset;
  /** One per part, in the order given. */
  deltas: IndexDelta[];
}

interface PartPlan extends EntryPlan {
  part: number;
}

/** Null when nothing ships (or everything that would was torn), unless `emptyFull` asks a full build to write an
 *  empty changeset then (a valid tar with no entries: "the trees are empty"); each part's `torn` gets the paths left
 *  for the next build. */
export async function writeChangeset(parts: readonly ScanPart[], workDir: string, full: boolean, chunking?: ChunkingOptions, emptyFull = false): Promise<Written | null> {
  const keepEmpty = full && emptyFull;
  const plans: PartPlan[] = [];
  const shippings: Cand[][] = [];
  const vanisheds: string[][] = [];
  parts.forEach((part, i) => {
    const shipping = part.scan.shipping();
    const vanished = full ? [] : part.scan.topVanished();
    shippings.push(shipping);
    vanisheds.push(vanished);
    const at = (p: string): string => part.prefix + p;
    if (part.root !== null) plans.push({ part: i, tarPath: part.prefix.slice(0, -1), cand: part.root });
    for (const plan of planEntries(part.scan, shipping, vanished)) {
      const moved: PartPlan = { ...plan, part: i, tarPath: at(plan.tarPath) };
      if (plan.entry !== undefined) moved.entry = { ...plan.entry, path: at(plan.entry.path) };
      if (plan.linkTo !== undefined) moved.linkTo = at(plan.linkTo);
      plans.push(moved);
    }
  });
  if (plans.length === 0 && !keepEmpty) return null;
  plans.sort((a, b) => comparePaths(a.tarPath, b.tarPath));

  await mkdir(workDir, { recursive: true });
  const id = randomBytes(8).toString('hex');
  const tmpTar = join(workDir, `.changeset-${id}.tar`);
  const file = join(workDir, `changeset-${id}.tar.gz`);
  const spoolDir = join(workDir, `chunks-${id}`);
  const chunkedFiles: ChunkedFile[] = [];
  if (chunking !== undefined) await mkdir(spoolDir, { mode: 0o700 });
  const sink = chunking?.openSink();
  const writer = await TarFileWriter.create(tmpTar);
  /** Hard-link groups (by part and first path) left out: all their members go. */
  const tornGroups = new Set<string>();
  /** Hard-link group -> fingerprint of its first member: the others share its inode, so its content and xattrs. */
  const groupPrints = new Map<string, string>();
  const counts: ChangesetCounts = { files: 0, deletions: 0, bytes: 0 };
  const deltas: IndexDelta[] = parts.map(() => ({ full, deleteUnder: [], remove: [], set: [] }));
  let entries = 0;
  try {
    for (const plan of plans) {
      const part = parts[plan.part]!;
      const delta = deltas[plan.part]!;
      const c = plan.cand;
      if (c === undefined) {
        await writer.writeEntry(plan.entry ?? zeroEntry(plan.tarPath));
        entries++;
        if (baseOf(plan.tarPath) !== '.wh..wh..opq') counts.deletions++;
        continue;
      }
      const group = plan.group === undefined ? undefined : `${plan.part}\n${plan.group}`;
      if (group !== undefined && tornGroups.has(group)) {
        part.torn.push(c.path);
        continue;
      }
      const racy = isRacy(c.st, part.scan.startNs);
      // An empty file changed within a tick of the scan is most likely one its writer has just opened with O_TRUNC
      // or O_CREAT and not written yet (`echo … > f`): a delta's leading flush, which comes at that very event, would
      // otherwise ship the file empty, and a failover before the next commit would boot the twin with it so. Left out
      // as torn: the build is made again after a few ms (replicator.ts), or the trailing flush takes it, settled.
      if (!full && c.kind === 'f' && c.st.size === 0n && isJustChanged(c.st, part.scan.startNs)) {
        part.torn.push(c.path);
        if (group !== undefined) tornGroups.add(group);
        continue;
      }
      const print = racy && plan.linkTo === undefined ? new Fingerprint(c.xattrs) : undefined;
      const chunk: ChunkTarget | undefined = sink !== undefined && chunking !== undefined && c.kind === 'f' && plan.linkTo === undefined && c.st.size > BigInt(chunking.thresholdBytes)
        ? { sink, files: chunkedFiles }
        : undefined;
      const ok = await copyEntry(writer, part.scan.abs(c.path), c, plan.tarPath, plan.linkTo, counts, print, chunk);
      if (!ok) {
        part.torn.push(c.path);
        if (group !== undefined) tornGroups.add(group);
        continue;
      }
      entries++;
      counts.files++;
      // A volume's root is remembered by the tracker, not in the tree's index (whose paths are below it).
      if (c.path === '') continue;
      const rec = recFromStat(c.kind === 'd' ? 'd' : c.kind === 'l' ? 'l' : 'f', c.st, c.opaque);
      if (print !== undefined) {
        rec.h = print.digest();
        if (group !== undefined) groupPrints.set(group, rec.h);
      } else if (racy) {
        rec.h = (group === undefined ? undefined : groupPrints.get(group)) ?? '';
      }
      delta.set.push([c.path, rec]);
      if (c.kind !== 'd' || part.scan.newDirs.has(c.path) || (c.opaque && part.scan.covered(c.path))) delta.deleteUnder.push(c.path);
    }
    parts.forEach((_part, i) => {
      const delta = deltas[i]!;
      for (const c of shippings[i] ?? []) {
        if (c.kind === 'w') {
          delta.set.push([c.path, whiteoutRec]);
          delta.deleteUnder.push(c.path);
        }
      }
      for (const v of vanisheds[i] ?? []) delta.remove.push(v);
    });
    await writer.finish();
    if (entries === 0 && !keepEmpty) {
      await sink?.abandon();
      await rm(spoolDir, { recursive: true, force: true });
      return null;
    }
    const { digest, size } = await gzipAndHash(tmpTar, file);
    const torn = parts.flatMap((p) => [...new Set(p.torn)].map((t) => p.prefix + t));
    const built: BuiltChangeset = { kind: full ? 'full' : 'delta', file, digest, size, counts, torn: torn.sort(comparePaths) };
    if (chunkedFiles.length > 0 && sink !== undefined) {
      built.chunks = { files: chunkedFiles, sink, spoolDir };
    } else if (sink !== undefined) {
      // Chunks of files that turned out torn may be in flight: their packs are kept, and known, for the next build.
      await sink.abandon();
      await rm(spoolDir, { recursive: true, force: true });
    }
    return { built, deltas };
  } catch (err) {
    await writer.abandon();
    await sink?.abandon().catch(() => undefined);
    await rm(file, { force: true });
    await rm(spoolDir, { recursive: true, force: true });
    throw err;
  } finally {
    await rm(tmpTar, { force: true });
  }
}
