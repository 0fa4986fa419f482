// A pusher that starts knowing nothing of the bucket's chunks (no pack cache, no twin chunk index: a new host, a lost
// state dir) would upload again every chunk of its first full commits, though the bucket holds them. It learns their
// places from the chunk lists of the newest commits instead: the head names each container's newest commit, and the
// lists of that commit and those below it down to its newest full checkpoint place every chunk of the container's
// large files in a pack. A few small objects a container, bounded in count and bytes, against every byte of every
// large file; no listing of the bucket and no pack is read. Each pack learnt is HEADed once before a commit relies
// on it (PackStore), as a remembered one is. A promoted standby does not need this (its twins' chunk indexes say the
// same, without a request), nor does a pusher with its pack cache.
// The lists are read as the standby reads them: named by a signed record, bounded from the record's totals before
// the fetch, checked against their digest and parsed with the same limits (chunk-list.ts). A list that fails any of
// this is passed over with a warning: learning only saves uploads, it never decides what a commit holds.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkListProblem, parseChunkList, type ChunkPlace, type Limits } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import { commitChain, type Bucket, type Head, type PackStore, type Seq } from '../store/index.js';

export interface LearnBounds {
  /** Records read per container, from its newest down to its newest full checkpoint. Default 64. */
  maxRecordsPerContainer: number;
  /** Chunk lists read in all. Default 256. */
  maxLists: number;
  /** Stored bytes of the lists read in all (each one is held in memory while parsed). Default 64 MiB. */
  maxListBytes: number;
  /** Containers walked at once. Default 4. */
  concurrency: number;
  /** No record or list is asked for after this long (ms): the pusher's first commits wait for this. Default 20 s. */
  maxMs: number;
}

export const defaultLearnBounds: LearnBounds = { maxRecordsPerContainer: 64, maxLists: 256, maxListBytes: 64 * 1024 * 1024, concurrency: 4, maxMs: 20_000 };

export interface LearnResult {
  lists: number;
  /** Chunks the pack store did not know before. */
  chunks: number;
  /** Lists passed over (refused, unreadable) and containers left (a bound reached). */
  skipped: number;
  truncated: boolean;
}

/**
 * Teaches `packs` the places of the chunks named by the commits of `head`'s generation, container by container (in
 * name order), newest commit first. `dir` is a scratch dir for the downloads (created by the caller, left empty).
 */
export async function learnChunksFromBucket(o: {
  bucket: Bucket; packs: PackStore; head: Head; limits: Limits; log: Logger; dir: string; bounds?: Partial<LearnBounds>;
}): Promise<LearnResult> {
  const bounds = { ...defaultLearnBounds, ...o.bounds };
  const result: LearnResult = { lists: 0, chunks: 0, skipped: 0, truncated: false };
  const deadline = Date.now() + bounds.maxMs;
  // Counted when a fetch starts (walks run at once): the bounds hold however the fetches interleave.
  let listsStarted = 0;
  let listBytes = 0;
  const g = o.head.generation;
  const containers = Object.entries(o.head.containers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const walk = async (name: string, seq: Seq): Promise<void> => {
    const chain = commitChain(o.bucket, g, seq, name, { max: bounds.maxRecordsPerContainer, untilFull: true });
    for await (const item of chain) {
      if (!('record' in item)) {
        o.log.warn('a commit below the head cannot be read; its chunks are not learnt', { container: name, generation: g, seq: item.seq, reason: item.error });
        result.skipped++;
        return;
      }
      const declared = item.record.chunks;
      if (declared === undefined) continue;
      const problem = chunkListProblem(declared, o.limits);
      if (problem !== null) {
        o.log.warn('a chunk list refused from its record; its chunks are not learnt', { container: name, generation: g, seq: item.record.seq, reason: problem });
        result.skipped++;
        continue;
      }
      if (result.truncated || listsStarted >= bounds.maxLists || listBytes + declared.size > bounds.maxListBytes || Date.now() > deadline) {
        result.truncated = true;
        return;
      }
      listsStarted++;
      listBytes += declared.size;
      const file = join(o.dir, `${name}.${item.record.seq}.chunks.json.gz`);
      try {
        await o.bucket.downloadBlob(declared.digest, declared.size, file);
        const list = await parseChunkList(await readFile(file), declared, o.limits);
        result.lists++;
        const places: Array<readonly [string, ChunkPlace]> = [];
        for (const f of list.files) {
          for (const [digest, , pack, offset, stored] of f.chunks) places.push([digest, { pack: list.packs[pack] ?? '', offset, stored }]);
        }
        result.chunks += o.packs.learn(places);
      } catch (err) {
        o.log.warn('a chunk list cannot be read or is refused; its chunks are not learnt', { container: name, generation: g, seq: item.record.seq, key: o.bucket.blobKey(declared.digest), err });
        result.skipped++;
      } finally {
        await rm(file, { force: true });
      }
    }
  };

  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < containers.length; i = next++) {
      if (result.truncated || Date.now() > deadline) {
        result.truncated = true;
        return;
      }
      const [name, seq] = containers[i]!;
      await walk(name, seq);
    }
  };
  // Every walk ends before this returns or throws: none is left downloading into `dir`.
  const settled = await Promise.allSettled(Array.from({ length: Math.min(bounds.concurrency, containers.length) }, () => worker()));
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  return result;
}
