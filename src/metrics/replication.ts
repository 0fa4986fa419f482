// What the primary's pusher and the standby's puller report about each container's replication, read at every
// scrape (never pushed), so that ages are exact at the time of the scrape and a stopped role leaves no stale series.

/** Which side of the replication a figure describes. */
export type ReplicationSide = 'primary' | 'standby';

/** One container as seen by one side at `now`. Times are epoch milliseconds; null means not known to this process. */
export interface ReplicationView {
  container: string;
  /** Primary: since the oldest change seen and not yet published. Standby: since the publication of the oldest
   *  commit in the bucket not yet staged. 0 when caught up. */
  lagMs: number;
  /** Primary: changesets not yet published (the one in flight and the one coalescing: 0, 1 or 2 by design).
   *  Standby: commits read from the journal and not yet staged (at least 1 while the head names a newer one). */
  lagCommits: number;
  /** When the newest commit of the container was published (primary: by this host; standby: seen in the bucket). */
  lastCommitAt: number | null;
  /** When the newest full checkpoint of the container was published. */
  lastCheckpointAt: number | null;
}

export interface ReplicationSource {
  readonly side: ReplicationSide;
  /** Called at each scrape; must be cheap and must not touch the bucket. */
  views(now: number): readonly ReplicationView[];
}

/** Seconds from `at` to `now`, never negative (the hosts' clocks may differ a little). */
export function ageSeconds(now: number, at: number): number {
  return Math.max(0, now - at) / 1000;
}
