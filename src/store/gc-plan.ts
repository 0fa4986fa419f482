// What garbage collection deletes from a group's bucket (issue 12), decided from a listing and the parsed objects
// alone: pure, so every rule is tested without a bucket (test/unit/store/gc-plan.test.ts).
//
// The rules, with `horizon` = now - retention:
// - A generation is live from its start until the next valid generation's start (claim time, else its first record).
//   Generations are self-contained per container: a container's first commit in a generation is a full checkpoint.
// - In a generation live after the horizon, per container: every record published after the horizon stays; so do the
//   newest full checkpoint published at or before it and every record from that full on, so that the oldest point
//   of the window is restorable (the restorable window is at least `retention`, however rarely fulls are made); a
//   container with no full at or before the horizon keeps all its records. Older records go. Records past the head
//   (published, head not yet written) stay, and so does the chain the newest generation's head names.
// - A generation that ended at or before the horizon, and is not the newest valid one, goes whole: its journal
//   (records refused or not) and its release; its claim stays (its head when it has no claim) as a marker, because
//   the upward probes that fence a stale owner stop at the first absent generation (Bucket.nextGeneration). Unless
//   it holds the only full checkpoint of a container still in the newest head (none retained in a newer
//   generation): that container's records from its newest full there on stay, and the generation with them.
// - A divergent tail goes once it was saved at or before the horizon (the record; its blob as any other).
// - A blob (changeset or chunk list) goes when no retained record, divergent tail, spec or unreadable object names
//   it, and a pack when no retained record's chunk list names it, both only once older than the grace period by
//   the store's LastModified: a commit in flight uploads them before its record.
// - An image object (images/, the primary's image shipper) goes when no spec names it (its config digest or one of
//   its diff ids; specs are never deleted, so every container the bucket has a spec of keeps its image), once older
//   than the grace period; none goes when a spec could not be read.
// - Refused records and divergent records, refused generations, specs and keys outside the layout are never deleted
//   (except refused records inside a generation that goes whole): they are reported for an operator.
// Deletions come in two phases: records (and what else names blobs) first, then blobs and packs, so a crash
// between them leaves only unreferenced blobs that the next run deletes.
import type { KeyLayout } from './keys.js';
import type { CommitChunks } from './records.js';
import type { Digest, Generation, Seq } from './types.js';

export type GcKind = 'record' | 'generation' | 'divergent' | 'blob' | 'pack' | 'image';
export const gcKinds: readonly GcKind[] = ['record', 'generation', 'divergent', 'blob', 'pack', 'image'];

export interface GcObject {
  key: string;
  size: number;
  /** ms since the epoch, by the store's clock. */
  lastModified: number;
}

/** What GC needs of a commit record. */
export interface GcRecord {
  seq: Seq;
  container: string;
  kind: 'delta' | 'full';
  /** ms since the epoch. */
  publishedAt: number;
  digest: Digest;
  /** The chunk list as the record declares it, when the commit ships files in chunks. */
  chunks: CommitChunks | null;
}

export interface GcGeneration {
  generation: Generation;
  /** Its claim is one the group signed. */
  claimed: boolean;
  /** When it started: the claim's time (ms), null when it has no acceptable claim. */
  claimedAt: number | null;
  /** Its head, when acceptable. */
  head: { seq: Seq; containers: Readonly<Record<string, Seq>>; updatedAt: number } | null;
  /** Every journal key listed, by seq: the record, or why it cannot be used. */
  records: ReadonlyMap<Seq, { record: GcRecord } | { refused: string }>;
}

export type GcDivergent = { key: string; savedAt: number; digest: Digest } | { key: string; refused: string };

export interface GcInput {
  layout: KeyLayout;
  now: number;
  retentionMs: number;
  graceMs: number;
  /** Every object under the group's base. */
  objects: readonly GcObject[];
  /** Generations the group made (an acceptable claim or head); refused ones are left out (listed in `refusedGenerations`). */
  generations: readonly GcGeneration[];
  /** Generations with keys but neither a claim nor a head the group signed: never touched. */
  refusedGenerations: readonly Generation[];
  divergent: readonly GcDivergent[];
  /** Digests named by specs and by objects that could not be read (refused records and tails): never deleted. */
  protectedDigests: ReadonlySet<string>;
  /** The packs each chunk list names (by the list's digest); null when the list could not be read. A retained
   *  record whose list is missing here or null keeps every pack. */
  chunkLists: ReadonlyMap<string, readonly string[] | null>;
  /** The digests the specs name (64 hex, what an image object's key ends in); null when a spec could not be read or
   *  listed: then no image object is deleted. */
  imagesNamed: ReadonlySet<string> | null;
}

export interface GcDeletion {
  key: string;
  kind: GcKind;
  bytes: number;
}

export interface GcPlan {
  /** Deleted first: records, tails and generations' objects, which name blobs. */
  first: GcDeletion[];
  /** Deleted once `first` is gone: blobs, packs and image objects. */
  second: GcDeletion[];
  /** Counts and bytes by kind of what is deleted. */
  totals: Record<GcKind, { objects: number; bytes: number }>;
  /** What an operator should look at: refused objects left in place, retained records naming missing objects. */
  problems: string[];
  /** Records retained (for the report). */
  retainedRecords: number;
  /** now - retention, ms. */
  horizon: number;
}

/** The records GC keeps, by generation: the retention rules above, before blobs are considered. */
export function retainedRecords(input: Pick<GcInput, 'now' | 'retentionMs' | 'generations'>): Map<Generation, Set<Seq>> {
  const horizon = input.now - input.retentionMs;
  const gens = [...input.generations].sort((a, b) => a.generation - b.generation);
  const kept = new Map<Generation, Set<Seq>>();
  /** Generations that ended at or before the horizon: gone whole unless a container needs them (below). */
  const ended: GcGeneration[] = [];
  gens.forEach((g, i) => {
    const keep = new Set<Seq>();
    kept.set(g.generation, keep);
    const next = gens[i + 1];
    const newest = next === undefined;
    if (!newest && startOf(next) <= horizon) {
      ended.push(g);
      return;
    }
    const byContainer = new Map<string, GcRecord[]>();
    for (const [seq, item] of g.records) {
      if (!('record' in item)) {
        // Refused: left in place (reported); it names no container we could judge.
        keep.add(seq);
        continue;
      }
      if (g.head === null || seq > g.head.seq) keep.add(seq);
      const list = byContainer.get(item.record.container) ?? [];
      list.push(item.record);
      byContainer.set(item.record.container, list);
    }
    for (const list of byContainer.values()) {
      list.sort((a, b) => a.seq - b.seq);
      let base = -1;
      list.forEach((r, j) => {
        if (r.kind === 'full' && r.publishedAt <= horizon) base = j;
      });
      list.forEach((r, j) => {
        if (j >= base || r.publishedAt > horizon) keep.add(r.seq);
      });
    }
    // The newest generation's head: each container's newest full at or below its head seq and everything after.
    if (newest && g.head !== null) {
      for (const [name, headSeq] of Object.entries(g.head.containers)) {
        const list = (byContainer.get(name) ?? []).filter((r) => r.seq <= headSeq);
        const fulls = list.filter((r) => r.kind === 'full');
        const from = fulls.at(-1)?.seq ?? 0;
        for (const r of list) if (r.seq >= from) keep.add(r.seq);
      }
    }
  });
  keepOnlyFulls(gens, ended, kept);
  return kept;
}

/**
 * An ended generation goes whole only when every container with records in it has a full checkpoint retained in a
 * newer generation, or is gone from the newest head that names a commit: otherwise it holds that container's only full checkpoint (its
 * twin idle since the failover, say), and the container's chain from its newest full there stays.
 */
function keepOnlyFulls(gens: readonly GcGeneration[], ended: readonly GcGeneration[], kept: Map<Generation, Set<Seq>>): void {
  if (ended.length === 0) return;
  // The newest head that names a commit: a new primary writes an empty head at once, before its first sync, and its
  // predecessor's last head still says which containers the group has. None: no container is known gone.
  const head = [...gens].reverse().find((g) => g.head !== null && g.head.seq > 0)?.head ?? null;
  const named = head === null ? null : new Set(Object.keys(head.containers));
  const covered = new Set<string>();
  const endedSet = new Set(ended);
  for (const g of [...gens].reverse()) {
    const keep = kept.get(g.generation) ?? new Set<Seq>();
    const byContainer = new Map<string, GcRecord[]>();
    for (const item of g.records.values()) {
      if (!('record' in item)) continue;
      const list = byContainer.get(item.record.container) ?? [];
      list.push(item.record);
      byContainer.set(item.record.container, list);
    }
    if (endedSet.has(g)) {
      for (const [name, list] of byContainer) {
        if (covered.has(name) || (named !== null && !named.has(name))) continue;
        list.sort((a, b) => a.seq - b.seq);
        const from = list.findLastIndex((r) => r.kind === 'full');
        for (const r of list.slice(Math.max(0, from))) keep.add(r.seq);
      }
      kept.set(g.generation, keep);
    }
    for (const [name, list] of byContainer) if (list.some((r) => r.kind === 'full' && keep.has(r.seq))) covered.add(name);
  }
}

/** When a generation started, as late as the bucket allows us to think (later keeps more). */
function startOf(g: GcGeneration): number {
  if (g.claimedAt !== null) return g.claimedAt;
  let first = Number.POSITIVE_INFINITY;
  for (const item of g.records.values()) if ('record' in item) first = Math.min(first, item.record.publishedAt);
  if (Number.isFinite(first)) return first;
  return g.head?.updatedAt ?? Number.POSITIVE_INFINITY;
}

const emptyTotals = (): GcPlan['totals'] => ({
  record: { objects: 0, bytes: 0 }, generation: { objects: 0, bytes: 0 }, divergent: { objects: 0, bytes: 0 }, blob: { objects: 0, bytes: 0 }, pack: { objects: 0, bytes: 0 },
  image: { objects: 0, bytes: 0 },
});

export function planGc(input: GcInput): GcPlan {
  const { layout } = input;
  const horizon = input.now - input.retentionMs;
  const graceEdge = input.now - input.graceMs;
  const problems: string[] = [];
  const objects = new Map(input.objects.map((o) => [o.key, o]));
  const first: GcDeletion[] = [];
  const second: GcDeletion[] = [];
  const del = (to: GcDeletion[], key: string, kind: GcKind): void => {
    const o = objects.get(key);
    if (o !== undefined) to.push({ key, kind, bytes: o.size });
  };

  const kept = retainedRecords(input);
  const gens = [...input.generations].sort((a, b) => a.generation - b.generation);
  const newest = gens.at(-1)?.generation;
  const blobsNamed = new Set<string>(input.protectedDigests);
  const packsNamed = new Set<string>(input.protectedDigests);
  let packsUnknown: string | null = null;
  let retained = 0;

  for (const g of gens) {
    const keep = kept.get(g.generation) ?? new Set<Seq>();
    const whole = g.generation !== newest && keep.size === 0;
    for (const [seq, item] of g.records) {
      const key = layout.journalKey(g.generation, seq);
      if (whole) {
        del(first, key, 'generation');
        continue;
      }
      if (!('record' in item)) {
        problems.push(`record ${key} is refused (${item.refused}); left in place for an operator`);
        continue;
      }
      if (!keep.has(seq)) {
        del(first, key, 'record');
        continue;
      }
      retained++;
      const r = item.record;
      blobsNamed.add(r.digest);
      if (!objects.has(layout.blobKey(r.digest))) problems.push(`retained record ${key} names blob ${r.digest}, which is not in the bucket`);
      if (r.chunks !== null) {
        blobsNamed.add(r.chunks.digest);
        const packs = input.chunkLists.get(r.chunks.digest);
        if (packs === undefined || packs === null) {
          packsUnknown ??= `the chunk list ${r.chunks.digest} of retained record ${key} could not be read: no pack is deleted`;
        } else {
          for (const p of packs) {
            packsNamed.add(p);
            if (!objects.has(layout.packKey(p as Digest))) problems.push(`retained record ${key} names pack ${p}, which is not in the bucket`);
          }
        }
      }
    }
    if (whole) {
      del(first, layout.releaseKey(g.generation), 'generation');
      // The claim stays as the generation's marker; without one, the head is the marker.
      if (g.claimed) del(first, layout.headKey(g.generation), 'generation');
    }
  }
  if (packsUnknown !== null) problems.push(packsUnknown);
  if (input.imagesNamed === null) problems.push('a spec could not be read or listed: no image object is deleted');

  for (const d of input.divergent) {
    if ('refused' in d) {
      problems.push(`divergent record ${d.key} is refused (${d.refused}); left in place for an operator`);
      continue;
    }
    const o = objects.get(d.key);
    // Saved by the record's word, or later by the store's: the later one counts.
    const at = Math.max(d.savedAt, o?.lastModified ?? 0);
    if (at <= horizon) del(first, d.key, 'divergent');
    else blobsNamed.add(d.digest);
  }

  const unknown: string[] = [];
  for (const o of input.objects) {
    const blob = layout.parseBlobKey(o.key);
    if (blob !== null) {
      if (!blobsNamed.has(blob) && o.lastModified <= graceEdge) second.push({ key: o.key, kind: 'blob', bytes: o.size });
      continue;
    }
    const pack = layout.parsePackKey(o.key);
    if (pack !== null) {
      if (packsUnknown === null && !packsNamed.has(pack) && o.lastModified <= graceEdge) second.push({ key: o.key, kind: 'pack', bytes: o.size });
      continue;
    }
    const image = layout.parseImageKey(o.key);
    if (image !== null) {
      const named = input.imagesNamed === null || input.imagesNamed.has(image) || input.protectedDigests.has(image);
      if (!named && o.lastModified <= graceEdge) second.push({ key: o.key, kind: 'image', bytes: o.size });
      continue;
    }
    if (layout.parseGenerationKey(o.key) !== null || layout.parseSpecKey(o.key) !== null || layout.parseDivergentKey(o.key) !== null) continue;
    unknown.push(o.key);
  }
  if (unknown.length > 0) problems.push(`${unknown.length} keys outside the bucket layout left in place, e.g. ${unknown.slice(0, 3).map((k) => JSON.stringify(k)).join(', ')}`);
  for (const g of input.refusedGenerations) problems.push(`generation ${g} has neither a claim nor a head the group signed; left in place for an operator`);

  const totals = emptyTotals();
  for (const d of [...first, ...second]) {
    totals[d.kind].objects++;
    totals[d.kind].bytes += d.bytes;
  }
  return { first, second, totals, problems, retainedRecords: retained, horizon };
}
