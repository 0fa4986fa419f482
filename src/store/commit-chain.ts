// One container's commits in one generation, newest first, read by following each record's parentSeq: the records
// of that container only, never the whole journal of the generation (which holds every container's commits).
import type { Bucket } from './bucket.js';
import { BucketObjectInvalidError } from './errors.js';
import type { CommitRecord } from './records.js';
import type { Generation, Seq } from './types.js';

/** A record of the chain, or why the chain stops there (missing, refused, another container's). */
export type ChainItem = { record: CommitRecord } | { seq: Seq; error: string };

/**
 * Walks `container`'s commits of generation `g` from seq `from` down its parentSeq links: yields each record (newest
 * first) until a full checkpoint when `untilFull`, else until the first commit (parentSeq 0). A record that is
 * missing, refused (unsigned, badly signed, not parsing: BucketObjectInvalidError's reason) or names another
 * container yields one error item and ends the walk: nothing below it can be told to be this container's. At most
 * `max` records are read (a parentSeq is below its seq, so the walk always ends; `max` bounds its requests).
 */
export async function* commitChain(
  bucket: Bucket, g: Generation, from: Seq, container: string, opts: { max: number; untilFull?: boolean; onTruncated?: () => void },
): AsyncGenerator<ChainItem> {
  let seq = from;
  for (let read = 0; seq > 0; read++) {
    if (read >= opts.max) {
      opts.onTruncated?.();
      return;
    }
    let record: CommitRecord | null;
    try {
      record = await bucket.readRecord(g, seq);
    } catch (err) {
      // Network and store errors are no answer about the record: they end the walk with the error.
      if (!(err instanceof BucketObjectInvalidError)) throw err;
      yield { seq, error: err.message };
      return;
    }
    if (record === null) {
      yield { seq, error: `record missing from the journal of generation ${g}` };
      return;
    }
    if (record.container !== container) {
      yield { seq, error: `record is container ${record.container}'s, not ${container}'s` };
      return;
    }
    yield { record };
    if (opts.untilFull === true && record.kind === 'full') return;
    seq = record.parentSeq;
  }
}
