// Reads what GC decides from (gc-plan.ts) out of the bucket: one listing of the group's objects with sizes and
// times, the claims, heads and records of the generations the group made, the divergent tails, the specs and the
// chunk lists of the records GC keeps. Everything is read as the standby reads it (signatures checked); an object
// that is refused is kept, and the digests in its bytes are kept too: GC never deletes what an unreadable object may
// name. Records and chunk lists are immutable, so a GcCache carried between runs reads each one once.
import { createHash } from 'node:crypto';

import { chunkListProblem, defaultLimits, parseChunkList, type Limits } from '../changeset/index.js';
import type { Bucket } from './bucket.js';
import { BucketObjectInvalidError } from './errors.js';
import type { CommitChunks } from './records.js';
import { retainedRecords, type GcDivergent, type GcGeneration, type GcInput, type GcObject, type GcRecord } from './gc-plan.js';
import { MAX_RECORD_BYTES, MAX_SPEC_BYTES, type Digest, type Generation, type Seq } from './types.js';

/** Reads in flight at once. */
const PARALLEL = 16;
const digestInText = /[0-9a-f]{64}/g;

/** What earlier runs read of immutable objects: records by key, chunk lists' packs by digest. */
export class GcCache {
  readonly records = new Map<string, GcRecord>();
  readonly chunkLists = new Map<string, readonly string[]>();
  /** Forgets what is no longer in the bucket (deleted), so the cache stays as large as the bucket's retained part. */
  prune(keys: ReadonlySet<string>, digests: ReadonlySet<string>): void {
    for (const k of this.records.keys()) if (!keys.has(k)) this.records.delete(k);
    for (const d of this.chunkLists.keys()) if (!digests.has(d)) this.chunkLists.delete(d);
  }
}

export interface GcCollectOptions {
  now: number;
  retentionMs: number;
  graceMs: number;
  cache?: GcCache;
  limits?: Limits;
  /** Stops the collection (throws the signal's reason) between listing pages and reads. */
  signal?: AbortSignal | undefined;
}

async function eachLimit<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}

/** The 64-hex words in an object's bytes (read up to maxBytes): what it may name. */
async function digestsIn(bucket: Bucket, key: string, maxBytes: number, into: Set<string>): Promise<void> {
  let body: Buffer | null;
  try {
    body = await bucket.store.getBuffer(key, maxBytes);
  } catch {
    return;
  }
  for (const m of body?.toString('utf8').matchAll(digestInText) ?? []) into.add(m[0]);
}

/** The 64-hex words of every spec (an image's config digest and diff ids among them); null when a spec could not be
 *  read or the listing was cut short: an image it names is not known. */
export async function specDigests(bucket: Bucket): Promise<Set<string> | null> {
  let truncated = false;
  const names = await bucket.listSpecNames({ onTruncated: () => (truncated = true) });
  if (truncated) return null;
  const out = new Set<string>();
  for (const name of names) {
    let body: Buffer | null;
    try {
      body = await bucket.store.getBuffer(bucket.layout.specKey(name), MAX_SPEC_BYTES);
    } catch {
      return null;
    }
    for (const m of body?.toString('utf8').matchAll(digestInText) ?? []) out.add(m[0]);
  }
  return out;
}

/** Every object under the group's base, with sizes and times. */
export async function listGroup(bucket: Bucket, signal?: AbortSignal): Promise<GcObject[]> {
  const objects: GcObject[] = [];
  for await (const o of bucket.store.listObjects(`${bucket.layout.base}/`)) {
    // A page holds 1000 keys: checked once a page.
    if (objects.length % 1000 === 0) signal?.throwIfAborted();
    objects.push(o);
  }
  return objects;
}

export async function collectGc(bucket: Bucket, opts: GcCollectOptions): Promise<GcInput> {
  const { layout } = bucket;
  const cache = opts.cache ?? new GcCache();
  const objects = await listGroup(bucket, opts.signal);
  const protectedDigests = new Set<string>();

  const journal = new Map<Generation, Seq[]>();
  for (const o of objects) {
    const g = layout.parseGenerationKey(o.key);
    if (g === null) continue;
    const seqs = journal.get(g) ?? [];
    const s = layout.parseJournalKey(g, o.key);
    if (s !== null) seqs.push(s);
    journal.set(g, seqs);
  }

  const generations: GcGeneration[] = [];
  const refusedGenerations: Generation[] = [];
  for (const [g, seqs] of [...journal].sort((a, b) => a[0] - b[0])) {
    opts.signal?.throwIfAborted();
    const [claim, head] = await Promise.all([bucket.readClaim(g), bucket.readHead(g)]);
    const h = head.status === 'ok' ? head.head : null;
    if (claim === null && h === null) {
      refusedGenerations.push(g);
      continue;
    }
    const records = new Map<Seq, { record: GcRecord } | { refused: string }>();
    await eachLimit(seqs, async (s) => {
      opts.signal?.throwIfAborted();
      const key = layout.journalKey(g, s);
      const cached = cache.records.get(key);
      if (cached !== undefined) {
        records.set(s, { record: cached });
        return;
      }
      try {
        const r = await bucket.readRecord(g, s);
        if (r === null) return; // deleted since the listing
        const rec: GcRecord = { seq: r.seq, container: r.container, kind: r.kind, publishedAt: Date.parse(r.publishedAt), digest: r.digest, chunks: r.chunks === undefined ? null : { ...r.chunks } };
        cache.records.set(key, rec);
        records.set(s, { record: rec });
      } catch (err) {
        if (!(err instanceof BucketObjectInvalidError)) throw err;
        records.set(s, { refused: err.message });
        await digestsIn(bucket, key, MAX_RECORD_BYTES, protectedDigests);
      }
    });
    generations.push({
      generation: g,
      claimed: claim !== null,
      claimedAt: claim === null ? null : Date.parse(claim.claimedAt),
      head: h === null ? null : { seq: h.seq, containers: h.containers, updatedAt: Date.parse(h.updatedAt) },
      records,
    });
  }

  const divergent: GcDivergent[] = [];
  const tails = await bucket.listDivergent();
  // Tails past the listing's bound are not read: the blob each one's key names stays.
  const read = new Set(tails.map((t) => t.key));
  for (const o of objects) {
    const tail = read.has(o.key) ? null : layout.parseDivergentKey(o.key);
    if (tail !== null) protectedDigests.add(tail.digest);
  }
  for (const item of tails) {
    if ('error' in item) {
      divergent.push({ key: item.key, refused: item.error });
      await digestsIn(bucket, item.key, MAX_RECORD_BYTES, protectedDigests);
    } else {
      divergent.push({ key: item.key, savedAt: Date.parse(item.record.savedAt), digest: item.record.digest });
    }
  }
  // Specs name no blob; the digests they carry name the images shipped through the bucket (and are kept as any).
  const imagesNamed = await specDigests(bucket);
  for (const d of imagesNamed ?? []) protectedDigests.add(d);

  const chunkLists = new Map<string, readonly string[] | null>();
  const kept = retainedRecords({ now: opts.now, retentionMs: opts.retentionMs, generations });
  const wanted = new Map<Digest, CommitChunks>();
  for (const gen of generations) {
    for (const s of kept.get(gen.generation) ?? []) {
      const item = gen.records.get(s);
      if (item !== undefined && 'record' in item && item.record.chunks !== null) wanted.set(item.record.chunks.digest, item.record.chunks);
    }
  }
  await eachLimit([...wanted.keys()], async (d) => {
    const cached = cache.chunkLists.get(d);
    if (cached !== undefined) {
      chunkLists.set(d, cached);
      return;
    }
    chunkLists.set(d, await readPacks(bucket, d, wanted.get(d)!, opts.limits ?? defaultLimits));
    const got = chunkLists.get(d);
    if (got !== undefined && got !== null) cache.chunkLists.set(d, got);
  });

  const listed = new Set(objects.map((o) => o.key));
  cache.prune(listed, new Set(wanted.keys()));
  return { layout, now: opts.now, retentionMs: opts.retentionMs, graceMs: opts.graceMs, objects, generations, refusedGenerations, divergent, protectedDigests, chunkLists, imagesNamed };
}

/** The packs a chunk list names, read as the standby reads it (held to what its record declares); null when it cannot
 *  be read. */
export async function readPacks(bucket: Bucket, digest: Digest, declared: CommitChunks, limits: Limits): Promise<readonly string[] | null> {
  if (chunkListProblem(declared, limits) !== null) return null;
  const body = await bucket.store.getBuffer(bucket.layout.blobKey(digest), declared.size).catch(() => null);
  if (body === null || createHash('sha256').update(body).digest('hex') !== digest) return null;
  try {
    return (await parseChunkList(body, declared, limits)).packs;
  } catch {
    return null;
  }
}
