// A commit's blob downloaded, hashed and validated in one pass (streamed-validation.ts behind the bucket's tap): the
// standby then reads the file once more, to apply it, instead of three times (hash, validate, apply).
import { rm } from 'node:fs/promises';
import { StreamedValidation, type ChangesetKind, type ChunkList, type Limits, type StageTarget, type ValidatedChangeset } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import type { Bucket, CommitRecord } from '../store/index.js';

export interface ValidatedDownloadOptions {
  kind: ChangesetKind;
  target: StageTarget;
  limits: Limits;
  chunks?: ChunkList | undefined;
  log: Logger;
  signal: AbortSignal;
  /** See StreamedValidationOptions. */
  stallMs?: number;
}

/**
 * Downloads `record`'s blob to `file` (checked against its size and digest) and validates it on the way: the plan
 * for stageChangeset, or null when streamed validation was left behind (stageChangeset then validates the file).
 * Throws the download's errors, or the refusal of a blob that matched its digest, and then leaves nothing at `file`.
 * The signal stops both.
 */
export async function downloadValidated(bucket: Bucket, record: CommitRecord, file: string, o: ValidatedDownloadOptions): Promise<ValidatedChangeset | null> {
  const streamed = new StreamedValidation({
    kind: o.kind, target: o.target, size: record.size, limits: o.limits, declared: { ...record.counts, size: record.size }, signal: o.signal, log: o.log,
    ...(o.chunks === undefined ? {} : { chunks: o.chunks }), ...(o.stallMs === undefined ? {} : { stallMs: o.stallMs }),
  });
  try {
    await bucket.downloadBlob(record.digest, record.size, file, { tap: () => streamed.feed(), signal: o.signal });
    o.signal.throwIfAborted();
    return await streamed.result();
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  } finally {
    streamed.close();
  }
}
