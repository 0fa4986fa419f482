// Who replicates: the owner of the newest generation (DESIGN.md "Roles, promotion, fencing"). A generation made by
// an agent has a claim; one opened by `twinlayer push` has only its head, whose writer owns it. Only claims and heads
// signed by a key the group trusts count (the bucket refuses the rest): a bucket writer without a key can neither
// take a generation over nor fence its owner.
import type { Bucket, Claim, Generation } from '../store/index.js';

export interface Ownership {
  generation: Generation;
  /** The host that owns it; null when neither a claim nor a head says (a generation still being opened). */
  owner: string | null;
  claim: Claim | null;
}

/** The newest generation and its owner; null for an empty bucket. `hint`, a generation known to exist (followed,
 *  owned), makes it a probe upward from there instead of a listing of every generation. */
export async function newestOwnership(bucket: Bucket, hint = 0): Promise<Ownership | null> {
  const generation = await bucket.newestGenerationFrom(hint as Generation);
  if (generation === 0) return null;
  return ownershipOf(bucket, generation);
}

export async function ownershipOf(bucket: Bucket, generation: Generation): Promise<Ownership> {
  const claim = await bucket.readClaim(generation);
  if (claim !== null) return { generation, owner: claim.host, claim };
  const head = await bucket.readHead(generation);
  return { generation, owner: head.status === 'ok' ? head.head.writer : null, claim: null };
}

/** Anything claimed or opened after generation g: a claim or a head of g+1 (past junk a bucket writer without a key
 *  left there, see Bucket.nextGeneration). Claims are made one past the newest generation their maker saw, so a
 *  writer of g that sees no g+1 knows nobody took over (two small GETs). */
export async function successorOf(bucket: Bucket, g: Generation): Promise<Ownership | null> {
  const next = await bucket.nextGeneration(g);
  if (next === null) return null;
  return { generation: next.generation, owner: next.claim?.host ?? next.head?.writer ?? null, claim: next.claim };
}
