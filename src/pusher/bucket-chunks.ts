// A pusher that starts knowing nothing of the bucket's chunks (no pack cache, no twin chunk index: a new host, a lost
// state dir) would upload again every chunk of its first full commits, though the bucket holds them. It learns their
// places from the chunk lists of the newest commits instead: the head names each container's newest commit, and the
// lists of that commit and those below it down to its newest full checkpoint place every chunk of the container's
// large files in a pack. A few small objects a container, bounded in count and bytes, against every byte of every
// large file; no listing of the bucket and no pack is read. Each pack learnt is HEADed once before a commit relies
// on it (PackStore), as a remembered one is.
// The lists are read as the standby reads them: named by a signed record, bounded from the record's totals before
// the fetch, checked against their digest and parsed with the same limits (chunk-list.ts). A list that fails any of
// this is passed over with a warning: learning only saves uploads, it never decides what a commit holds.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkListProblem, parseChunkList, type ChunkPlace, type Limits } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import { commitChain, type Bucket, type Head, type PackStore } from '../store/index.js';

export interface LearnBounds {
  /** Records read per container, from its newest down to its newest full checkpoint. Default 64. */
  maxRecordsPerContainer: number;
  /** Chunk lists read in all. Default 256. */
  maxLists: number;
  /** Stored bytes of the lists read in all (each one is held in memory while parsed). Default 64 MiB. */
  maxListBytes: number;
}

export const defaultLearnBounds: LearnBounds = { maxRecordsPerContainer: 64, maxLists: 256, maxListBytes: 64 * 1024 * 1024 };

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
  let listBytes = 0;
  const g = o.head.generation;
  for (const [name, seq] of Object.entries(o.head.containers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for await (const item of commitChain(o.bucket, g, seq, name, { max: bounds.maxRecordsPerContainer, untilFull: true })) {
      if (!('record' in item)) {
        o.log.warn('a commit below the head cannot be read; its chunks are not learnt', { container: name, generation: g, seq: item.seq, reason: item.error });
        result.skipped++;
        break;
      }
      const declared = item.record.chunks;
      if (declared === undefined) continue;
      const problem = chunkListProblem(declared, o.limits);
      if (problem !== null) {
        o.log.warn('a chunk list refused from its record; its chunks are not learnt', { container: name, generation: g, seq: item.record.seq, reason: problem });
        result.skipped++;
        continue;
      }
      if (result.lists >= bounds.maxLists || listBytes + declared.size > bounds.maxListBytes) {
        result.truncated = true;
        return result;
      }
      listBytes += declared.size;
      const file = join(o.dir, `${item.record.seq}.chunks.json.gz`);
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
  }
  return result;
}
