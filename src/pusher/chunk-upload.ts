// What a commit that ships files in chunks sends before its record: the packs of the chunks the bucket lacks (under
// way since the build cut them; finished here), then the chunk list that places every chunk of the commit's files (new or held before) in its pack. The record names the
// list (its digest and totals); it is published only once all of this is durable.
import { writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { encodeChunkList, placeChunks, summarize, type BuiltChunks, type ChunkList } from '../changeset/index.js';
import { asDigest, type Bucket, type CommitChunks } from '../store/index.js';

export interface UploadedChunks {
  /** What the record declares of the list. */
  declared: CommitChunks;
  list: ChunkList;
}

/** Waits for the packs of `c`'s new chunks, then uploads its chunk list (written in its spool dir). */
export async function uploadChunks(c: BuiltChunks, bucket: Bucket): Promise<UploadedChunks> {
  const places = await c.sink.finish(c.files);
  const list = placeChunks(c.files, (d) => places.get(d));
  const stored = encodeChunkList(list);
  const digest = asDigest(createHash('sha256').update(stored).digest('hex'));
  const file = join(c.spoolDir, 'chunks.json.gz');
  await writeFile(file, stored, { mode: 0o600 });
  await bucket.uploadBlob(file, digest);
  return { declared: { digest, size: stored.length, ...summarize(list) }, list };
}
