// The divergent tail of a demoted host: per container, what its upper dir holds beyond what the new owner finalized
// from. Two parts: the commits of the old generation after the claim's seq for it (already in the bucket, named by
// their seq range), and the changes never shipped (built here as one changeset against the shipped state). Saved
// under divergent/ and reported; never applied automatically.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UpperTracker } from '../changeset/index.js';
import type { ProtectedContainer } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import { ShippedStateStore } from '../pusher/index.js';
import { asDigest, asSeq, type Bucket, type Claim, type DivergentRecord, type Generation } from '../store/index.js';

export interface DivergentDeps {
  bucket: Bucket;
  log: Logger;
  hostId: string;
  group: string;
  stateDir: string;
  excludes: readonly string[];
}

/** The last of this container's commits in `generation` after `fromSeq`; 0 when there are none. */
async function lastCommitAfter(bucket: Bucket, generation: Generation, container: string, fromSeq: number): Promise<number> {
  let last = 0;
  for await (const item of bucket.listRecords(generation, fromSeq)) {
    if ('record' in item && item.record.container === container) last = item.seq;
  }
  return last;
}

/**
 * Saves what `container` (stopped, on this host) holds beyond the successor's claim; null when nothing diverged.
 * The record names this host's commits after the claim's seq (fromSeq, lastShippedSeq], which stay in the old
 * generation's journal, and carries a changeset: what was never shipped, or, when everything was shipped but the
 * successor did not take it, the whole upper dir (more than diverged, never less). `oldGeneration` is the
 * generation this host wrote (0 when it wrote none). Throws when the bucket fails: the caller keeps the container
 * and tries again (nothing is removed before its tail is saved).
 */
export async function saveDivergentTail(deps: DivergentDeps, container: ProtectedContainer, oldGeneration: Generation, successor: { generation: Generation; claim: Claim | null }, reason: string): Promise<{ key: string; record: DivergentRecord } | null> {
  const { bucket, log, stateDir, excludes } = deps;
  const from = successor.claim?.from;
  // The seq of this container the successor staged; it took nothing of our generation when it followed another.
  const fromSeq = from !== undefined && from.generation === oldGeneration ? (from.containers[container.name] ?? 0) : 0;
  const lastShippedSeq = oldGeneration === 0 ? 0 : await lastCommitAfter(bucket, oldGeneration, container.name, fromSeq);

  const shipped = await new ShippedStateStore(stateDir, deps.group).load(container.name, false);
  const baseline = shipped !== null && shipped.generation === oldGeneration && shipped.containerId === container.id ? shipped.shipped : undefined;
  const workDir = join(stateDir, 'agent', deps.group, 'divergent-work', container.name);
  await mkdir(workDir, { recursive: true });
  const tracker = (withBaseline: boolean): UpperTracker => new UpperTracker({
    upperDir: container.layers.upperDir, workDir, excludes, volumes: container.volumes.map((v) => ({ key: v.name, destination: v.destination, dir: v.dir })), ...(withBaseline && baseline ? { shipped: baseline } : {}), log: log.child({ container: container.name }),
  });
  // Without a shipped state of that generation (a promoted twin that never pushed, a lost state file) the whole
  // upper dir is the tail.
  let built = await tracker(true).build(baseline ? 'reconcile' : 'full');
  try {
    if (built === null && lastShippedSeq === 0) return null;
    built ??= await tracker(false).build('full');
    if (built === null) return null;
    const record: DivergentRecord = {
      version: 1,
      host: deps.hostId,
      generation: oldGeneration,
      claimGeneration: successor.generation,
      container: container.name,
      fromSeq: asSeq(fromSeq),
      lastShippedSeq: asSeq(lastShippedSeq),
      digest: asDigest(built.digest),
      size: built.size,
      counts: built.counts,
      savedAt: new Date().toISOString(),
      reason: reason.slice(0, 500),
    };
    const key = await bucket.putDivergent(record, built.file);
    log.error('divergent tail saved: this host held changes the new primary does not have; they are NOT applied', {
      container: container.name, generation: oldGeneration, successor: successor.generation, fromSeq, lastShippedSeq,
      files: built.counts.files, deletions: built.counts.deletions, bytes: built.counts.bytes, key,
    });
    return { key, record };
  } finally {
    if (built !== null) await rm(built.file, { force: true });
    await rm(workDir, { recursive: true, force: true });
  }
}
