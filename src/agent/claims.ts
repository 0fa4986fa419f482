// Claiming a generation for a promotion (DESIGN.md "Roles, promotion, fencing"): a conditional create of
// gen/<g>/claim.json, one past the generation the promoting host followed. Exactly one host wins a generation.
import type { Logger } from '../log/logger.js';
import { MAX_KEYS_PAST_HEAD, REFUSED_GENERATION_SKIP, type Bucket, type Generation, type Seq } from '../store/index.js';
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
  /** Journal keys past the followed head a late claim lists at most (more: the generation moved). Default
   *  MAX_KEYS_PAST_HEAD. */
  maxKeysPastHead?: number;
}

/**
 * Claims `generation` (= basis.generation + 1). Lost when a newer generation exists (someone took over after what
 * we staged) or another host's claim is there; won when ours is, also when an earlier attempt landed although its
 * answer did not reach us. A late claim (made when the bucket answered again, after the twins booted from what was
 * staged) is also refused when the followed generation moved past what we staged: its writer kept the bucket and
 * kept publishing, and taking over would leave what reached the bucket behind. A claim key taken by something that
 * is no claim the group signed (a bucket writer without a key) is passed over: the next generation is claimed, up to
 * REFUSED_GENERATION_SKIP of them, as every probe of the newest generation passes over it too.
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
  if (newest === generation) return claimedAlready(deps, generation);
  if (opts.late && basis.generation > 0) {
    const moved = await followedGenerationMoved(bucket, basis, deps.maxKeysPastHead ?? MAX_KEYS_PAST_HEAD);
    if (moved !== null) {
      log.error('late claim refused: the followed generation moved on while this host was cut off', { generation, followed: basis.generation, moved });
      const head = await bucket.readHead(basis.generation as Generation);
      return { status: 'lost', generation: basis.generation, holder: head.status === 'ok' ? head.head.writer : null };
    }
  }
  for (let g = generation, skipped = 0; ; g = (g + 1) as Generation, skipped++) {
    const result = await bucket.claimGeneration({
      version: 1,
      generation: g,
      host: hostId,
      claimedAt: new Date().toISOString(),
      from: { generation: basis.generation as Generation, containers: basis.containers as Record<string, Seq> },
    });
    if (result.won) {
      log.info('claimed generation', { generation: g, from: basis, ...(skipped > 0 ? { passedOver: skipped } : {}) });
      return { status: 'won', generation: g };
    }
    if (result.holder !== null) return result.holder.host === hostId ? claimedAlready(deps, g) : { status: 'lost', generation: g, holder: result.holder.host };
    // Junk at the claim key (logged and in the status by the bucket): neither a holder nor ours.
    if (skipped >= REFUSED_GENERATION_SKIP) return { status: 'lost', generation: g, holder: null };
    log.warn('generation taken by an object the group did not sign; claiming the next one', { generation: g });
  }
}

/** Generation `generation` exists: ours (an earlier attempt landed although its answer was lost) or lost. */
async function claimedAlready(deps: ClaimDeps, generation: Generation): Promise<ClaimState> {
  const holder = await deps.bucket.readClaim(generation);
  if (holder?.host === deps.hostId) {
    deps.log.info('claimed generation (an earlier attempt had landed)', { generation, claimedAt: holder.claimedAt });
    return { status: 'won', generation };
  }
  return { status: 'lost', generation, holder: holder?.host ?? null };
}

/**
 * A container whose newest seq in the followed generation is past what we staged; null when none moved. The head
 * alone is not enough: it may be an older signed head put back by a bucket writer (a replay verifies), so the
 * records past it are listed too, as finalize does (each is signed for its own seq; refused ones are nobody's).
 */
async function followedGenerationMoved(bucket: Bucket, basis: ClaimBasis, maxKeys: number): Promise<{ container: string; head: number; staged: number } | null> {
  const g = basis.generation as Generation;
  const head = await bucket.readHead(g);
  const headSeq = head.status === 'ok' ? head.head.seq : 0;
  const newest = new Map<string, number>(head.status === 'ok' ? Object.entries(head.head.containers) : []);
  // Bounded: more keys past the head than one listing reads is taken as moved on (a late claim is refused rather
  // than made over a journal it cannot read in full).
  let truncated = false;
  for await (const item of bucket.listRecords(g, headSeq, { maxKeys, onTruncated: () => { truncated = true; } })) {
    if ('record' in item) newest.set(item.record.container, Math.max(newest.get(item.record.container) ?? 0, item.seq));
  }
  if (truncated) return { container: `(more than ${maxKeys} journal keys past head seq ${headSeq})`, head: headSeq + maxKeys, staged: headSeq };
  for (const [container, seq] of newest) {
    const staged = basis.containers[container] ?? 0;
    if (seq > staged) return { container, head: seq, staged };
  }
  return null;
}
