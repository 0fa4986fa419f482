// Claiming a generation for a promotion (DESIGN.md "Roles, promotion, fencing"): a conditional create of
// gen/<g>/claim.json, one past the generation the promoting host followed. Exactly one host wins a generation.
import type { Logger } from '../log/logger.js';
import type { Bucket, Generation, Seq } from '../store/index.js';
import type { ClaimState } from './types.js';

/** What a promotion finalized from: the generation followed and the staged seq per container. */
export interface ClaimBasis {
  generation: number;
  containers: Record<string, number>;
}

export interface ClaimDeps {
  bucket: Bucket;
  hostId: string;
  log: Logger;
}

/**
 * Claims `generation` (= basis.generation + 1). Lost when a newer generation exists (someone took over after what
 * we staged) or another host's claim is there; won when ours is, also when an earlier attempt landed although its
 * answer did not reach us. A late claim (made when the bucket answered again, after the twins booted from what was
 * staged) is also refused when the followed generation moved past what we staged: its writer kept the bucket and
 * kept publishing, and taking over would leave what reached the bucket behind.
 */
export async function claimGeneration(deps: ClaimDeps, generation: Generation, basis: ClaimBasis, opts: { late: boolean }): Promise<ClaimState> {
  const { bucket, hostId, log } = deps;
  const newest = await bucket.newestGenerationFrom(Math.max(0, generation - 1) as Generation);
  if (newest > generation) {
    const holder = await bucket.readClaim(newest).catch(() => null);
    // A newer generation of our own (an earlier promotion of this host whose answer we lost): we own it.
    if (holder?.host === hostId) return { status: 'owner', generation: newest };
    return { status: 'lost', generation: newest, holder: holder?.host ?? null };
  }
  if (newest < generation) {
    if (opts.late && basis.generation > 0) {
      const moved = await followedGenerationMoved(bucket, basis);
      if (moved !== null) {
        log.error('late claim refused: the followed generation moved on while this host was cut off', { generation, followed: basis.generation, moved });
        const head = await bucket.readHead(basis.generation as Generation);
        return { status: 'lost', generation: basis.generation, holder: head.status === 'ok' ? head.head.writer : null };
      }
    }
    const result = await bucket.claimGeneration({
      version: 1,
      generation,
      host: hostId,
      claimedAt: new Date().toISOString(),
      from: { generation: basis.generation as Generation, containers: basis.containers as Record<string, Seq> },
    });
    if (result.won) {
      log.info('claimed generation', { generation, from: basis });
      return { status: 'won', generation };
    }
  }
  const holder = await bucket.readClaim(generation);
  if (holder?.host === hostId) {
    log.info('claimed generation (an earlier attempt had landed)', { generation, claimedAt: holder.claimedAt });
    return { status: 'won', generation };
  }
  return { status: 'lost', generation, holder: holder?.host ?? null };
}

/** A container whose seq in the followed generation's head is past what we staged; null when none moved. */
async function followedGenerationMoved(bucket: Bucket, basis: ClaimBasis): Promise<{ container: string; head: number; staged: number } | null> {
  const head = await bucket.readHead(basis.generation as Generation);
  if (head.status !== 'ok') return null;
  for (const [container, seq] of Object.entries(head.head.containers)) {
    const staged = basis.containers[container] ?? 0;
    if (seq > staged) return { container, head: seq, staged };
  }
  return null;
}
