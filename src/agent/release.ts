// Releasing a generation (DESIGN.md "Roles, promotion, fencing"): its owner left MASTER with no successor, so a
// host that stood down while VRRP still calls it MASTER may take over. A release is signed, but a signature binds it
// to its key only: put back after the owner withdrew it (a replay by a bucket writer), it would make that fenced
// MASTER take over from a primary that runs. So a release names the head it was made at and is taken only while
// that head is the generation's head, nothing was published past it, and it was made by the generation's owner; the
// owner withdraws a release by deleting it and writing its head again (a new time), which makes any copy stale.
import { MAX_KEYS_PAST_HEAD, recoverHead, type Bucket, type Generation, type Release } from '../store/index.js';
import { ownershipOf } from './ownership.js';

/** Releases generation g, owned by `host`, at its current head (records past the head folded in first). */
export async function releaseGeneration(bucket: Bucket, g: Generation, host: string, reason: string): Promise<Release> {
  const head = await recoverHead(bucket, g);
  const release: Release = {
    version: 1, generation: g, host, headSeq: head?.seq ?? (0 as Release['headSeq']), headUpdatedAt: head?.updatedAt ?? null, releasedAt: new Date().toISOString(), reason,
  };
  await bucket.putRelease(release);
  return release;
}

/** Withdraws any release of generation g (its owner resumes): deleted, and the head written again with a new time,
 *  so a copy of the release put back later names a head that is gone. */
export async function withdrawRelease(bucket: Bucket, g: Generation): Promise<void> {
  await bucket.deleteRelease(g);
  const head = await recoverHead(bucket, g);
  if (head !== null) await bucket.writeHead({ ...head, updatedAt: new Date().toISOString() });
}

export type ReleaseCheck = { status: 'none' } | { status: 'valid'; release: Release } | { status: 'stale'; release: Release; reason: string };

/** The release of generation g, if any, and whether it still holds: made by g's owner, at g's current head, with
 *  nothing published past it (at most `maxKeysPastHead` journal keys past it are listed: more make it stale). */
export async function currentRelease(bucket: Bucket, g: Generation, maxKeysPastHead: number = MAX_KEYS_PAST_HEAD): Promise<ReleaseCheck> {
  const release = await bucket.readRelease(g);
  if (release === null) return { status: 'none' };
  const stale = (reason: string): ReleaseCheck => ({ status: 'stale', release, reason });
  const own = await ownershipOf(bucket, g);
  if (own.owner !== release.host) return stale(`released by ${release.host}, but generation ${g} is owned by ${own.owner ?? 'nobody known'}`);
  const head = await bucket.readHead(g);
  if (head.status === 'refused') return stale(`the head of generation ${g} is refused: ${head.reason}`);
  const now = head.status === 'ok' ? { seq: head.head.seq, updatedAt: head.head.updatedAt } : { seq: 0, updatedAt: null };
  if (now.seq !== release.headSeq || now.updatedAt !== release.headUpdatedAt) {
    return stale(`made at head seq ${release.headSeq} (${release.headUpdatedAt ?? 'no head'}), but the head is seq ${now.seq} (${now.updatedAt ?? 'no head'}): withdrawn, or put back`);
  }
  // Only a record (signed by a key the group trusts) was published past the head: a key that does not parse, or a
  // record that is refused, is what a bucket writer without a key can put there, and must not undo a release. More
  // keys past the head than a bounded listing reads is no head to take over from, whatever they hold.
  let truncated = false;
  for await (const item of bucket.listRecords(g, release.headSeq, { maxKeys: maxKeysPastHead, onTruncated: () => { truncated = true; } })) {
    if ('record' in item) return stale(`journal seq ${item.seq} lies past the head it was made at (seq ${release.headSeq})`);
  }
  if (truncated) return stale(`more than ${maxKeysPastHead} journal keys lie past the head it was made at (seq ${release.headSeq})`);
  return { status: 'valid', release };
}
