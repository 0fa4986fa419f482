// Which commits `twinlayer restore` applies: the target commit (the newest, a seq, or the newest published at or
// before a time) and the newest full checkpoint at or below it in its generation, found by following the
// container's parentSeq links down from the target (commitChain): only that container's records are read.
import { TwinlayerError } from '../log/errors.js';
import { commitChain, type Bucket, type CommitRecord, type Generation, type Seq } from '../store/index.js';

/** Records read walking one generation at most: the deltas since the newest full checkpoint (periodic checkpoints keep
 *  them few), or, for --at, back to the time asked for. Past it the restore is refused, naming the bound. */
export const MAX_CHAIN_RECORDS = 100_000;

export type RestoreTarget =
  | { kind: 'newest' }
  | { kind: 'seq'; seq: Seq; generation?: Generation }
  | { kind: 'at'; at: Date };

export interface RestorePlan {
  generation: Generation;
  /** The commits to apply, oldest first: a full checkpoint, then every delta after it up to the target. */
  commits: CommitRecord[];
  /** What the operator should know about the choice (newer generations passed over), for the log. */
  notes: string[];
}

export class RestoreRefusedError extends TwinlayerError {
  constructor(message: string, context: { container: string; key?: string; hint?: string }) {
    super('RESTORE_REFUSED', message, context);
  }
}

/** The generations whose head names `container`, newest first, with its last seq there; `passed` notes the newer
 *  generations whose head was refused (their commits, if any, are not restored from). */
async function generationsHolding(bucket: Bucket, container: string, passed: string[]): Promise<Array<{ generation: Generation; seq: Seq }>> {
  const out: Array<{ generation: Generation; seq: Seq }> = [];
  for (const g of (await bucket.listGenerations()).reverse()) {
    const head = await bucket.readHead(g);
    if (head.status === 'refused' && out.length === 0) passed.push(`generation ${g} passed over: its head was refused (${head.reason})`);
    const seq = head.status === 'ok' ? head.head.containers[container] : undefined;
    if (seq !== undefined) out.push({ generation: g, seq });
  }
  return out;
}

/**
 * Walks down from `from` and returns the chain from the newest record accepted by `accept` down to the newest full
 * checkpoint at or below it (newest first), or null when no record of the chain is accepted. A chain that breaks
 * (missing, refused, another container's record) or ends without a full checkpoint below the target refuses.
 */
async function chainTo(bucket: Bucket, g: Generation, from: Seq, container: string, accept: (r: CommitRecord) => boolean): Promise<CommitRecord[] | null> {
  const chain: CommitRecord[] = [];
  let truncated = false;
  let first = true;
  for await (const item of commitChain(bucket, g, from, container, { max: MAX_CHAIN_RECORDS, onTruncated: () => (truncated = true) })) {
    if ('error' in item) {
      const below = first ? '' : `, reached from seq ${from} by parentSeq links; what lies below it cannot be told to be this container's`;
      throw new RestoreRefusedError(`generation ${g} seq ${item.seq}: ${item.error}${below}`, { container, key: bucket.journalKey(g, item.seq) });
    }
    first = false;
    const r = item.record;
    if (chain.length === 0 && !accept(r)) continue;
    chain.push(r);
    if (r.kind === 'full') return chain;
  }
  if (truncated) throw new RestoreRefusedError(`more than ${MAX_CHAIN_RECORDS} commits between seq ${from} and a full checkpoint in generation ${g}; not restored`, { container });
  if (chain.length === 0) return null;
  throw new RestoreRefusedError(`generation ${g} has no full checkpoint at or below seq ${chain[0]!.seq} (its first commit, seq ${chain.at(-1)!.seq}, is a delta)`, { container });
}

export async function planRestore(bucket: Bucket, container: string, target: RestoreTarget): Promise<RestorePlan> {
  if (target.kind === 'seq' && target.generation !== undefined) {
    const g = target.generation;
    return { generation: g, commits: (await chainTo(bucket, g, target.seq, container, () => true))!.reverse(), notes: [] };
  }
  const notes: string[] = [];
  const holding = await generationsHolding(bucket, container, notes);
  const newest = holding[0];
  if (newest === undefined) throw new RestoreRefusedError('no generation in the bucket has commits of this container (no head the group signed names it)', { container });
  if (target.kind === 'newest') {
    return { generation: newest.generation, commits: (await chainTo(bucket, newest.generation, newest.seq, container, () => true))!.reverse(), notes };
  }
  if (target.kind === 'seq') {
    if (target.seq > newest.seq) {
      // The head is the word of what is published: a record past it may be one whose head write is still retried.
      throw new RestoreRefusedError(`seq ${target.seq} is past the last commit of this container in generation ${newest.generation} (seq ${newest.seq}, by its head)`, { container });
    }
    return { generation: newest.generation, commits: (await chainTo(bucket, newest.generation, target.seq, container, () => true))!.reverse(), notes };
  }
  const at = target.at.getTime();
  for (const { generation, seq } of holding) {
    // A generation claimed after the time asked for holds nothing published before it.
    const claim = await bucket.readClaim(generation);
    if (claim !== null && Date.parse(claim.claimedAt) > at) continue;
    const chain = await chainTo(bucket, generation, seq, container, (r) => Date.parse(r.publishedAt) <= at);
    if (chain !== null) return { generation, commits: chain.reverse(), notes };
  }
  throw new RestoreRefusedError(`no commit of this container was published at or before ${target.at.toISOString()} in any generation whose head names it`, { container });
}
