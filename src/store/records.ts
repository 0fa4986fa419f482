// The JSON documents in the bucket: commit records, the head pointer, generation claims and divergent-tail
// records. Parsed with zod, strictly.
import { z } from 'zod';

import { containerNameRe, MAX_GENERATION, MAX_SEQ, writerRe, type Digest, type Generation, type Seq } from './types.js';

export interface CommitCounts {
  files: number;
  deletions: number;
  bytes: number;
}

/** A commit's chunk list (src/changeset/chunk-list.ts): the blob under blobs/ and what it declares. Every pack the
 *  list names (packs/) must live while a retained record names the list (GC). */
export interface CommitChunks {
  /** sha256 of the stored list (gzip of JSON), a blob like the changeset's. */
  digest: Digest;
  /** Stored bytes of the list. */
  size: number;
  /** Files shipped in chunks, chunks named over them all, and the bytes of those files. */
  files: number;
  count: number;
  bytes: number;
}

export interface CommitRecord {
  version: 1;
  seq: Seq;
  /** Previous seq of the same container in this generation, 0 if none. */
  parentSeq: Seq;
  generation: Generation;
  container: string;
  digest: Digest;
  size: number;
  kind: 'delta' | 'full';
  counts: CommitCounts;
  /** ISO time the first write of this changeset was seen. */
  firstWriteAt: string;
  /** ISO time the record was published. */
  publishedAt: string;
  /** Host id of the writer. */
  writer: string;
  /** Present when the changeset ships files in chunks. */
  chunks?: CommitChunks | undefined;
  /**
   * The twin spec this commit belongs to: the docker unit's specDigest of the spec the writer put at
   * containers/<name>/spec.json before it. The spec's own signature binds it to its key only, so an older signed
   * spec put back there verifies too; a puller uses a spec only when the newest record of its container names it.
   * Absent in records written before it was recorded.
   */
  specDigest?: Digest | undefined;
}

export interface Head {
  version: 1;
  generation: Generation;
  /** Latest published seq of the generation (0 when none yet). */
  seq: Seq;
  writer: string;
  updatedAt: string;
  /** Last seq per container. */
  containers: Record<string, Seq>;
  /**
   * Seq of the newest full checkpoint per container (a container whose first commit of the generation is still to
   * come has none): a puller that starts a container from nothing lists the journal from there, not from seq 1.
   * Untrusted like every bucket object: the puller reads the record it names and falls back to the whole journal
   * unless it is a full commit of that container. Absent in heads written before it was recorded.
   */
  lastFull?: Record<string, Seq> | undefined;
}

/** Who owns a generation, and from what it started (DESIGN.md "Roles, promotion, fencing"). */
export interface Claim {
  version: 1;
  /** The generation claimed; the claim lives at gen/<generation>/claim.json. */
  generation: Generation;
  /** Host id of the claimer (the writer of the generation). */
  host: string;
  /** ISO time of the claim. */
  claimedAt: string;
  from: {
    /** The generation the claimer followed when it was promoted; 0 when it followed none. */
    generation: Generation;
    /** Per container, the seq of `from.generation` it had finalized (staged) when it claimed. */
    containers: Record<string, Seq>;
  };
}

/**
 * The owner of a generation let it go: it left VRRP MASTER with no successor, so a host that stood down while
 * VRRP still called it MASTER (fenced, or a lost claim) may take over. Removed when the owner resumes.
 */
export interface Release {
  version: 1;
  generation: Generation;
  host: string;
  /** The head of the generation when it was released (seq 0 and no time: none). The owner withdraws a release by
   *  deleting it and writing its head again, so a release put back later (a replay: it is still validly signed)
   *  names a head that is no longer there, or records were published past it: either way it is stale. */
  headSeq: Seq;
  headUpdatedAt: string | null;
  releasedAt: string;
  reason: string;
}

/**
 * A divergent tail: a changeset of what a demoted host's container held beyond the claim that superseded it.
 * Saved for an operator, never applied. The changeset is the blob `digest` under blobs/.
 */
export interface DivergentRecord {
  version: 1;
  /** The demoted host that held the tail. */
  host: string;
  /** The generation that host wrote. */
  generation: Generation;
  /** The generation whose claim superseded it: `fromSeq` is that claim's seq for the container. */
  claimGeneration: Generation;
  container: string;
  /** The claim's finalized seq for this container (0 when the claim had none): the tail starts after it. */
  fromSeq: Seq;
  /** The last seq this host published for the container in `generation` (0 when none). */
  lastShippedSeq: Seq;
  digest: Digest;
  size: number;
  counts: CommitCounts;
  /** ISO time the tail was saved. */
  savedAt: string;
  /** Why it was saved (demoted by BACKUP, fenced by a newer claim, ...), for the operator. */
  reason: string;
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const seq = z.number().int().min(1).max(MAX_SEQ).transform((n) => n as Seq);
const seqOrZero = z.number().int().min(0).max(MAX_SEQ).transform((n) => n as Seq);
const generation = z.number().int().min(0).max(MAX_GENERATION).transform((n) => n as Generation);
const digest = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters').transform((s) => s as Digest);
const container = z.string().regex(containerNameRe, 'expected a container name');
const writer = z.string().regex(writerRe, 'expected 1-64 of A-Z a-z 0-9 . _ -');
const isoTime = z.iso.datetime({ offset: true });

export const commitRecordSchema: z.ZodType<CommitRecord> = z.strictObject({
  version: z.literal(1),
  seq,
  parentSeq: seqOrZero,
  generation,
  container,
  digest,
  size: count,
  kind: z.enum(['delta', 'full']),
  counts: z.strictObject({ files: count, deletions: count, bytes: count }),
  firstWriteAt: isoTime,
  publishedAt: isoTime,
  writer,
  chunks: z.strictObject({ digest, size: count, files: count, count, bytes: count }).optional(),
  specDigest: digest.optional(),
}).refine((r) => r.parentSeq < r.seq, { message: 'parentSeq must be below seq', path: ['parentSeq'] });

export const headSchema: z.ZodType<Head> = z.strictObject({
  version: z.literal(1),
  generation,
  seq: seqOrZero,
  writer,
  updatedAt: isoTime,
  containers: z.record(container, seq),
  lastFull: z.record(container, seq).optional(),
}).refine((h) => Object.values(h.containers).every((s) => s <= h.seq), { message: 'a container seq is above the head seq', path: ['containers'] })
  .refine((h) => Object.entries(h.lastFull ?? {}).every(([name, s]) => s <= (h.containers[name] ?? 0)), {
    message: 'a full checkpoint seq is above its container\'s last seq, or names a container the head does not', path: ['lastFull'],
  });

export const claimSchema: z.ZodType<Claim> = z.strictObject({
  version: z.literal(1),
  generation,
  host: writer,
  claimedAt: isoTime,
  from: z.strictObject({
    generation,
    containers: z.record(container, seqOrZero),
  }),
}).refine((c) => c.from.generation < c.generation, { message: 'a claim follows an older generation', path: ['from', 'generation'] });

export const releaseSchema: z.ZodType<Release> = z.strictObject({
  version: z.literal(1),
  generation,
  host: writer,
  headSeq: seqOrZero,
  headUpdatedAt: isoTime.nullable(),
  releasedAt: isoTime,
  reason: z.string().min(1).max(500).regex(/^[^\p{Cc}]+$/u, 'expected one line without control characters'),
});

export const divergentRecordSchema: z.ZodType<DivergentRecord> = z.strictObject({
  version: z.literal(1),
  host: writer,
  generation,
  claimGeneration: generation,
  container,
  fromSeq: seqOrZero,
  lastShippedSeq: seqOrZero,
  digest,
  size: count,
  counts: z.strictObject({ files: count, deletions: count, bytes: count }),
  savedAt: isoTime,
  // Shown to operators: one printable line.
  reason: z.string().min(1).max(500).regex(/^[^\p{Cc}]+$/u, 'expected one line without control characters'),
}).refine((r) => r.generation < r.claimGeneration, { message: 'a tail is superseded by a newer generation', path: ['claimGeneration'] });

/** A short one-line reason from a zod error, for logs and error items. */
export function zodReason(err: z.ZodError): string {
  return err.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}
