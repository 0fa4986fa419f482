// What a reader of the journal may take as removed by GC on purpose rather than lost. GC deletes a container's records
// only below a full checkpoint of it that it keeps, and never the newest generation's records from the full checkpoint
// the head names on (gc-plan.ts). So a run of missing seqs is retired by retention when no container needs them:
// each container either starts at a newer full checkpoint, or has none of its records there (its next record's
// parentSeq passes over them, or its last record is below them). A container that did need one still stops at its
// own parentSeq link (the stager, `twinlayer ls`), whatever the reader concluded.
import type { Head } from './records.js';

/**
 * Whether container `name` needs none of the journal seqs `from`..`to` by what `head` alone says: they lie below its
 * newest full checkpoint (head.lastFull), or at or below the head's seq and above its last record. False when it
 * cannot tell (the reader then looks at the container's next record: gapPassedBy) or when the head names no full
 * checkpoints (an older version's head: nothing is known retired).
 */
export function headClearsGap(head: Head, name: string, from: number, to: number): boolean {
  if (head.lastFull === undefined) return false;
  const full = head.lastFull[name];
  if (full !== undefined && to < full) return true;
  const last = head.containers[name];
  return last !== undefined && to <= head.seq && last < from;
}

/** Whether a record of a container, published after the seqs `from`..`to`, shows that none of them was its own:
 *  its parentSeq (the container's previous record) lies below them. */
export function gapPassedBy(record: { seq: number; parentSeq: number }, from: number, to: number): boolean {
  return record.seq > to && record.parentSeq < from;
}
