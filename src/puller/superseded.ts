// A commit whose blob is gone from the bucket while a later full checkpoint of its container is queued: retention
// retired it (GC deletes a record's blob once the record is older than `retentionMs` and a newer full checkpoint
// restores everything it held). A standby whose twin waited that long with deltas queued before a checkpoint that
// restates them (CommitRecord.sameAs) would otherwise fetch the first delta's blob after every backoff, for ever:
// the checkpoint was queued behind it, not in its place. The container moves on from that checkpoint instead, staged
// whole (the twin no longer holds the commit it restates), as a re-queue from the newest checkpoint would.
import type { CommitRecord } from '../store/index.js';

/**
 * Where in `queue` (whose head is `gone`, the commit whose blob is missing) the newest full checkpoint of the
 * container lies, when it is later than `gone`; -1 when none is queued (the commit stays at the head and is fetched
 * again after a backoff: the checkpoint may not have been read yet, and a blob missing for any other reason is an
 * error the operator sees).
 */
export function supersedingCheckpoint(queue: readonly CommitRecord[], gone: CommitRecord): number {
  if (queue[0] !== gone) return -1;
  for (let i = queue.length - 1; i > 0; i--) {
    const r = queue[i];
    if (r !== undefined && r.kind === 'full' && r.generation === gone.generation && r.seq > gone.seq) return i;
  }
  return -1;
}
