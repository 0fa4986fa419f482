// The standby's side of a commit whose changeset ships files in chunks: its chunk list fetched (after the record's
// totals passed chunkListProblem), parsed and bounded, the twin's chunk index that says which chunks its upper dir
// already holds, and ranged reads of the packs for the others; once the commit is staged, the index takes in the list.
import { readFile, rm } from 'node:fs/promises';
import { ChangesetRejectedError, ChunkIndex, chunkIndexFile, chunkListProblem, declaredProblem, parseChunkList, type ChunkList, type Limits, type StageChunks } from '../changeset/index.js';
import type { Bucket, CommitRecord, PackStore } from '../store/index.js';

export interface ChunkedCommit {
  /** For stageChangeset; undefined when the commit has no chunk list. */
  stage: StageChunks | undefined;
  /** Records what the staged commit wrote in the twin's chunk index. */
  adopt(): Promise<void>;
}

/** Why a commit is refused from what its signed record declares alone (sizes, counts, chunk list totals), before
 *  anything is fetched; null when it may be fetched. The standby and `twinlayer restore` ask the same. */
export function declaredCommitProblem(record: CommitRecord, limits: Limits): string | null {
  return declaredProblem({ ...record.counts, size: record.size }, limits) ?? (record.chunks === undefined ? null : chunkListProblem(record.chunks, limits));
}

/** Fetches and parses the chunk list of `record` (a refusal throws ChangesetRejectedError) and loads the twin's index.
 *  `blob` is the changeset's download path: the list goes beside it (the chunks go to the twin's tmp dir: stage.ts). */
export async function openChunkedCommit(
  o: { bucket: Bucket; packs: PackStore; limits: Limits; indexDir: string }, name: string, twinId: string, record: CommitRecord, blob: string,
): Promise<ChunkedCommit> {
  const declared = record.chunks;
  if (declared === undefined && record.kind !== 'full') return { stage: undefined, adopt: () => Promise.resolve() };
  const index = await ChunkIndex.load(chunkIndexFile(o.indexDir, name), twinId);
  let list: ChunkList | null = null;
  if (declared !== undefined) {
    const problem = chunkListProblem(declared, o.limits);
    if (problem !== null) throw new ChangesetRejectedError(`chunk list: ${problem}`, { entry: '<chunk list>' });
    const listFile = `${blob}.chunks.json.gz`;
    try {
      await o.bucket.downloadBlob(declared.digest, declared.size, listFile);
      list = await parseChunkList(await readFile(listFile), declared, o.limits);
    } finally {
      await rm(listFile, { force: true });
    }
  }
  const adopt = async (): Promise<void> => {
    index.adopt(list, record.kind);
    await index.save();
  };
  if (list === null) return { stage: undefined, adopt };
  const l = list;
  return {
    stage: { list: l, locate: index.locate, fetch: (range, out) => o.packs.fetchRangeInto(range, out) },
    adopt,
  };
}
