// Where a staged commit's time went, as the standby's 'staged' log line shows it (one JSON object): from the head
// that announced it to the commit recorded, phase by phase, so an operator (and bench/sync-bulk.ts) can tell a slow
// bucket from a slow disk or a standby waiting for a slot. performance.now() only: a few calls per commit.
import type { StageResult } from '../changeset/index.js';

/** Each field in ms unless its name says otherwise; a phase the commit did not go through is left out. */
export interface CommitTimings {
  /** This host's clock when the head announcing the commit answered minus its record's publishedAt (the primary's
   *  clock): the time in the bucket before it was seen, as far as the two clocks agree. */
  publishedToSeenMs?: number;
  /** The head GET that announced it, then its record's GET (or the journal's listing). */
  headMs?: number;
  recordGetMs?: number;
  /** From its record read (or its container's task reaching it) to asking for a slot: commits before it, the
   *  twin's checks, the room check. */
  queueMs?: number;
  /** Waiting for a download slot (downloadConcurrency). */
  slotMs?: number;
  /** The chunk list's GET and parse, and the twin's chunk index loaded. */
  chunkListMs?: number;
  /** The blob downloaded and (streamed) validated; its size. */
  blobMs?: number;
  blobBytes?: number;
  /** Whether validation kept up with the download (false: the file was validated again, validateMs). */
  streamed?: boolean;
  validateMs?: number;
  /** Chunks gathered: read from the twin (localMs, local chunks and bytes), then fetched (fetchMs, ranged GETs,
   *  workers at once, inflated bytes and the pack bytes read). */
  gatherMs?: number;
  localMs?: number;
  local?: number;
  localBytes?: number;
  fetchMs?: number;
  ranges?: number;
  workers?: number;
  fetchedBytes?: number;
  rangeBytes?: number;
  /** From the check before the first write to everything written and synced: holds takeMs (assembled files
   *  completed and checked) and syncMs (the fsyncs before the commit is recorded). */
  applyMs?: number;
  takeMs?: number;
  /** Assembled files copied into the twin instead of linked (their chunk dir on another mount): 0 normally. */
  copied?: number;
  /** Of takeMs: waiting, once read back and hashed, for the assembled files' write-back to reach the disk. */
  flushWaitMs?: number;
  syncMs?: number;
  /** The twin read again and the applied state saved; the undo log removed; the chunk index saved. */
  recordMs?: number;
  discardMs?: number;
  adoptMs?: number;
  /** From the head's answer (or the task reaching the commit) to the 'staged' line. */
  totalMs?: number;
}

/** Laps of one commit's phases. */
export class PhaseClock {
  /** When the running lap began (performance.now()). */
  at = performance.now();

  /** ms since the last lap (rounded); starts the next. */
  lap(): number {
    const now = performance.now();
    const ms = Math.round(now - this.at);
    this.at = now;
    return ms;
  }
}

/** The fields of stageChangeset's result that go into the line. */
export function stagePhases(r: StageResult): CommitTimings {
  const c = r.chunks;
  return {
    validateMs: r.ms.validate, gatherMs: r.ms.gather, applyMs: r.ms.apply, takeMs: r.ms.take, syncMs: r.ms.sync,
    recordMs: r.ms.record, discardMs: r.ms.discard,
    ...(c === undefined ? {} : {
      localMs: c.localMs, local: c.local, localBytes: c.localBytes, fetchMs: c.fetchMs, ranges: c.ranges, workers: c.workers,
      fetchedBytes: c.fetchedBytes, rangeBytes: c.rangeBytes, flushWaitMs: c.flushWaitMs, copied: c.copied,
    }),
  };
}
