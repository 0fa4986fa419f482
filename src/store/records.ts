// The JSON documents in the bucket: commit records and the head pointer. Parsed with zod, strictly.
import { z } from 'zod';

import { containerNameRe, MAX_GENERATION, MAX_SEQ, writerRe, type Digest, type Generation, type Seq } from './types.js';

export interface CommitCounts {
  files: number;
  deletions: number;
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
}).refine((r) => r.parentSeq < r.seq, { message: 'parentSeq must be below seq', path: ['parentSeq'] });

export const headSchema: z.ZodType<Head> = z.strictObject({
  version: z.literal(1),
  generation,
  seq: seqOrZero,
  writer,
  updatedAt: isoTime,
  containers: z.record(container, seq),
}).refine((h) => Object.values(h.containers).every((s) => s <= h.seq), { message: 'a container seq is above the head seq', path: ['containers'] });

/** A short one-line reason from a zod error, for logs and error items. */
export function zodReason(err: z.ZodError): string {
  return err.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}
