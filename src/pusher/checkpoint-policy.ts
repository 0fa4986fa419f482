// When a container's next commit should be a full checkpoint. A standby that starts a container from nothing (a new
// standby, a replaced twin) stages its newest full checkpoint and every delta after it: checkpoints bound that
// replay. Each one costs the primary a read of the whole container and every caught-up standby a restage of it, so
// they come only once the deltas since the last one weigh a good share of the container, or once it is old.

export interface CheckpointPolicy {
  /** A checkpoint once the deltas since the last one weigh more than this share of the container (> 0). */
  deltaShare: number;
  /** A checkpoint once the last one is older than this (ms) and deltas followed it. */
  maxAgeMs: number;
  /** A due checkpoint waits until no delta was built or queued for this long (ms; 0: it goes right after the delta
   *  that made it due), CHECKPOINT_MAX_DEFER_MS at most; default DEFAULT_CHECKPOINT_QUIET_MS. */
  quietMs?: number;
}

/**
 * How long a due checkpoint waits for the container to be quiet by default (ms). A checkpoint reads the whole
 * container: built while writes go on, it competes with them for the disk and the cores (and, on a host that also
 * runs a standby, with the staging of the delta just published: 1.3 s for a 206 MB delta alone, 2.7 s sharing two
 * cores with the pusher), it finds a file being written (torn: not published, read again later), and it carries
 * writes made since the delta before it, so every standby restages it whole instead of recording it as that delta's
 * restatement (sameAs). Five seconds covers that staging with some margin and is still short beside what a checkpoint
 * bounds (hours of deltas); a container written to more often than that gets its checkpoint at the bound below.
 */
export const DEFAULT_CHECKPOINT_QUIET_MS = 5000;

/** A due checkpoint waits for a quiet period at most this long (ms), then goes all the same: a container written to
 *  constantly is still checkpointed (a standby's replay from the newest one, and retention, count on them), with at
 *  most a minute of deltas more than the share and age allow. The quiet period is bounded to half of it (config). */
export const CHECKPOINT_MAX_DEFER_MS = 60_000;

/**
 * Defaults. A share of 0.5: a standby replaying from the last checkpoint stages at most about 1.5 times the
 * container's size, and a caught-up standby restages the container at most once per half of its size shipped as
 * deltas (the checkpoints add at most twice the delta bytes to what it stages). Six hours: a container written
 * little and often, whose deltas weigh almost nothing, is still replayed from a checkpoint at most six hours old
 * (some 4 checkpoints a day of a quiet container; with a 24 h retention, several of them are kept).
 */
export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { deltaShare: 0.5, maxAgeMs: 6 * 60 * 60 * 1000, quietMs: DEFAULT_CHECKPOINT_QUIET_MS };

/** Each delta weighs at least this much: a record, a changeset and two GETs per delta cost the standby something
 *  however few bytes it carries (10 000 commits of one byte are not free to replay). */
export const MIN_DELTA_WEIGHT_BYTES = 4096;

/** A container weighs at least this much: an empty or tiny one is not checkpointed after every other delta. */
export const MIN_CONTAINER_WEIGHT_BYTES = 1024 * 1024;

/** What a replicator knows of its container. */
export interface CheckpointFacts {
  /** Weight of the deltas published since the last full checkpoint (sum of deltaWeight); 0 when none. */
  deltaBytesSinceFull: number;
  /** Deltas published since the last full checkpoint. */
  deltasSinceFull: number;
  /** Bytes of the container's regular files as last shipped (upper dir and volumes). */
  containerBytes: number;
  /** When the last full checkpoint was published (epoch ms); null when unknown (then the age counts from `since`). */
  lastFullAt: number | null;
  /** Where the age counts from when lastFullAt is unknown (the replicator's start). */
  since: number;
}

export type CheckpointVerdict = { due: false } | { due: true; reason: 'share' | 'age'; detail: string };

/** What one delta adds to deltaBytesSinceFull, from the bytes staging it writes (its files shipped whole and those
 *  assembled from chunks: a 1000-byte append to a 1 GiB file rewrites the whole file on the standby). */
export function deltaWeight(bytes: number): number {
  return Math.max(MIN_DELTA_WEIGHT_BYTES, Number.isFinite(bytes) && bytes > 0 ? bytes : 0);
}

/** Whether a full checkpoint is due at `now`. Never without a delta since the last one: it would add nothing. */
export function checkpointDue(policy: CheckpointPolicy, facts: CheckpointFacts, now: number): CheckpointVerdict {
  if (facts.deltasSinceFull <= 0) return { due: false };
  const base = Math.max(MIN_CONTAINER_WEIGHT_BYTES, facts.containerBytes);
  const limit = base * policy.deltaShare;
  if (facts.deltaBytesSinceFull > limit) {
    return { due: true, reason: 'share', detail: `${facts.deltasSinceFull} deltas weigh ${facts.deltaBytesSinceFull} bytes, over ${policy.deltaShare} of ${base}` };
  }
  const from = facts.lastFullAt ?? facts.since;
  const age = now - from;
  if (age > policy.maxAgeMs) return { due: true, reason: 'age', detail: `${facts.deltasSinceFull} deltas since a checkpoint ${age} ms old (limit ${policy.maxAgeMs} ms)` };
  return { due: false };
}

/** Bytes of the regular files an index (UpperTracker.serialize) records: the container's size as last shipped. */
export function shippedFileBytes(index: { entries: ReadonlyArray<readonly [string, unknown]> }): number {
  let total = 0;
  for (const [, rec] of index.entries) {
    if (typeof rec !== 'object' || rec === null) continue;
    const r = rec as { t?: unknown; size?: unknown };
    if (r.t === 'f' && typeof r.size === 'number' && Number.isFinite(r.size) && r.size > 0) total += r.size;
  }
  return total;
}
