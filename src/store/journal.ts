// Publication for one generation (single writer): strictly increasing seqs, each record written after the
// previous one, the head after the record. Call publish only once the blob's uploadBlob has resolved: a
// record must never be visible before its blob is complete. Pullers poll only the head, so a failed head write
// is retried in the background until the head covers every published record: otherwise a quiet container's
// last commit would stay invisible until its next one.
import { TwinlayerError } from '../log/errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import type { Bucket } from './bucket.js';
import type { CommitChunks, CommitCounts, CommitRecord, Head } from './records.js';
import { asSeq, containerNameRe, writerRe, type Digest, type Generation, type Seq } from './types.js';

export interface PublishInput {
  container: string;
  digest: Digest;
  size: number;
  kind: 'delta' | 'full';
  counts: CommitCounts;
  firstWriteAt: Date;
  /** The changeset's chunk list, when it ships files in chunks (uploaded, with its chunks, before the publish). */
  chunks?: CommitChunks;
  /** The spec the commit belongs to (CommitRecord.specDigest). */
  specDigest?: Digest;
}

export interface JournalWriterOptions {
  generation: Generation;
  /** Host id written into records and the head. */
  writer: string;
  /** Resume after this head (from recoverHead); null starts the generation at seq 1. */
  head: Head | null;
  /** Where a failed head write is reported (the publish itself still resolves). */
  log?: Logger;
  /**
   * Waits between background head writes after a failed one: doubling from `baseMs` up to `maxMs`, each wait
   * drawn from [cap/2, cap] (jitter, never a hot loop). Default `{ baseMs: 100, maxMs: 5000 }`.
   */
  headRetry?: HeadRetryPolicy;
  /** Runs before each record is written; a rejection fails the publish with nothing written (a fenced writer). */
  beforePublish?: () => Promise<void>;
  /** Counts published commits by kind and failed head writes. */
  metrics?: Metrics | undefined;
}

export interface HeadRetryPolicy {
  baseMs: number;
  maxMs: number;
}

export const defaultHeadRetry: HeadRetryPolicy = { baseMs: 100, maxMs: 5_000 };

/** What status shows of the head pointer. */
export interface HeadStatus {
  /** The head in the bucket may not cover every published record. */
  behind: boolean;
  /** Failed head writes since the head last covered every record. */
  failures: number;
  lastError: string | null;
  /** When the background retry writes the head next; null when none is scheduled. */
  nextRetryAt: string | null;
}

/** The wait before background head write number `retry` (0-based). */
export function headRetryDelay(policy: HeadRetryPolicy, retry: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(retry, 30));
  return Math.floor(cap / 2 + (random() * cap) / 2);
}

function checkHeadRetry(p: HeadRetryPolicy): HeadRetryPolicy {
  if (!Number.isFinite(p.baseMs) || p.baseMs < 1) throw new TypeError(`Expected \`headRetry.baseMs\` to be a number >= 1, got ${String(p.baseMs)}`);
  if (!Number.isFinite(p.maxMs) || p.maxMs < p.baseMs) throw new TypeError(`Expected \`headRetry.maxMs\` to be a number >= baseMs, got ${String(p.maxMs)}`);
  return { baseMs: p.baseMs, maxMs: p.maxMs };
}

export class JournalWriter {
  readonly #bucket: Bucket;
  readonly #generation: Generation;
  readonly #writer: string;
  #lastSeq: Seq;
  readonly #containers = new Map<string, Seq>();
  /** Seq of the newest full checkpoint per container, written into the head (Head.lastFull). */
  readonly #lastFull = new Map<string, Seq>();
  /** The tail of the publication chain; every publish waits for the one before it. */
  #tail: Promise<unknown> = Promise.resolve();
  /** A record write that failed on our side may still have landed; resolved before the next seq is chosen. */
  #uncertain: CommitRecord | null = null;
  #headDirty = false;
  #headFailures = 0;
  #headError: string | null = null;
  readonly #headRetry: HeadRetryPolicy;
  #retryTimer: NodeJS.Timeout | null = null;
  #retryAt: number | null = null;
  #closed = false;
  readonly #log: Logger;
  readonly #beforePublish: (() => Promise<void>) | undefined;
  readonly #metrics: Metrics | undefined;

  constructor(bucket: Bucket, opts: JournalWriterOptions) {
    if (!writerRe.test(opts.writer)) throw new TypeError(`Expected \`writer\` to be 1-64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(opts.writer)}`);
    if (opts.head !== null && opts.head.generation !== opts.generation) {
      throw new TypeError(`Expected \`head\` of generation ${opts.generation}, got generation ${opts.head.generation}`);
    }
    this.#bucket = bucket;
    this.#generation = opts.generation;
    this.#writer = opts.writer;
    this.#log = opts.log ?? silentLogger;
    this.#headRetry = checkHeadRetry(opts.headRetry ?? defaultHeadRetry);
    this.#beforePublish = opts.beforePublish;
    this.#metrics = opts.metrics;
    this.#lastSeq = opts.head?.seq ?? asSeq(0);
    for (const [name, s] of Object.entries(opts.head?.containers ?? {})) this.#containers.set(name, s);
    for (const [name, s] of Object.entries(opts.head?.lastFull ?? {})) this.#lastFull.set(name, s);
  }

  get lastSeq(): Seq {
    return this.#lastSeq;
  }

  lastSeqOf(container: string): Seq {
    return this.#containers.get(container) ?? asSeq(0);
  }

  /** Seq of the newest full checkpoint of `container` published in this generation; 0 when none is known. */
  lastFullOf(container: string): Seq {
    return this.#lastFull.get(container) ?? asSeq(0);
  }

  /** True when the last head write failed; the background retry (or the next publish, or flushHead) writes it again. */
  get headDirty(): boolean {
    return this.#headDirty;
  }

  headStatus(): HeadStatus {
    return {
      behind: this.#headDirty,
      failures: this.#headFailures,
      lastError: this.#headError,
      nextRetryAt: this.#retryAt === null ? null : new Date(this.#retryAt).toISOString(),
    };
  }

  /**
   * Publishes one commit: waits for earlier publishes, takes the next seq, writes the record, then the head.
   * Resolves once the record is durable in the bucket. A failed head write does not fail the publish (the record
   * is out); it is logged and retried in the background until a head write succeeds (see `headRetry`). Rejects
   * when the record write failed; the seq is then reused by the next publish unless the write turns out to have
   * landed. Rejects after close().
   */
  publish(input: PublishInput): Promise<CommitRecord> {
    if (this.#closed) return Promise.reject(new TwinlayerError('JOURNAL_CLOSED', `journal writer of generation ${this.#generation} is closed`, { container: input.container }));
    if (!containerNameRe.test(input.container)) return Promise.reject(new TypeError(`Expected a container name, got ${JSON.stringify(input.container)}`));
    const run = this.#tail.then(() => this.#publishNow(input));
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Writes the head now if the last head write failed (in turn with publishes); rejects when that write fails. */
  flushHead(): Promise<void> {
    const run = this.#tail.then(async () => {
      if (this.#headDirty) await this.#writeHead();
    });
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops the background head retry and waits for the publish or head write in flight. A head still behind then
   * stays behind until the next writer of this generation starts (recoverHead folds the records in).
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelRetry();
    await this.#tail;
    if (this.#headDirty) {
      this.#log.warn('journal closed with the head behind the last record; the next start writes it', {
        key: this.#bucket.headKey(this.#generation),
        seq: this.#lastSeq,
        error: this.#headError,
      });
    }
  }

  async #publishNow(input: PublishInput): Promise<CommitRecord> {
    await this.#beforePublish?.();
    await this.#settleUncertain();
    const seq = asSeq(this.#lastSeq + 1);
    const rec: CommitRecord = {
      version: 1,
      seq,
      parentSeq: this.lastSeqOf(input.container),
      generation: this.#generation,
      container: input.container,
      digest: input.digest,
      size: input.size,
      kind: input.kind,
      counts: { files: input.counts.files, deletions: input.counts.deletions, bytes: input.counts.bytes },
      firstWriteAt: input.firstWriteAt.toISOString(),
      ...(input.chunks === undefined ? {} : { chunks: { ...input.chunks } }),
      publishedAt: new Date().toISOString(),
      writer: this.#writer,
      ...(input.specDigest === undefined ? {} : { specDigest: input.specDigest }),
    };
    try {
      await this.#bucket.writeRecord(rec);
    } catch (err) {
      // Rejected before any request (invalid input) leaves nothing uncertain.
      if (!(err instanceof TwinlayerError && err.code === 'RECORD_INVALID')) this.#uncertain = rec;
      throw err;
    }
    this.#advance(rec);
    this.#metrics?.commitPublished(rec.kind);
    await this.#writeHead().catch(() => undefined);
    return rec;
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== null) return;
    const delay = headRetryDelay(this.#headRetry, this.#headFailures - 1);
    this.#retryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#retryAt = null;
      // In turn with publishes: a head is never written concurrently with another, so never out of order.
      this.#tail = this.#tail.then(async () => {
        if (!this.#closed && this.#headDirty) await this.#writeHead().catch(() => undefined);
      });
    }, delay);
    // A pending retry alone does not keep the process alive; its owner calls close() when it stops.
    this.#retryTimer.unref();
  }

  #cancelRetry(): void {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#retryAt = null;
  }

  #advance(rec: CommitRecord): void {
    this.#lastSeq = rec.seq;
    this.#containers.set(rec.container, rec.seq);
    if (rec.kind === 'full') this.#lastFull.set(rec.container, rec.seq);
  }

  /** After a failed record write: if the record is in the bucket after all, it counts; else its seq is free. */
  async #settleUncertain(): Promise<void> {
    const rec = this.#uncertain;
    if (rec === null) return;
    const found = await this.#bucket.readRecord(this.#generation, rec.seq).catch((err: unknown) => {
      if (err instanceof TwinlayerError && err.code === 'RECORD_INVALID') return 'invalid' as const;
      throw err;
    });
    if (found === 'invalid') {
      // Something unparsable sits at that seq: never overwrite a journal entry; skip past it (pullers stop there).
      this.#lastSeq = rec.seq;
    } else if (found !== null) {
      this.#advance(found);
    }
    this.#uncertain = null;
  }

  async #writeHead(): Promise<void> {
    const head: Head = {
      version: 1,
      generation: this.#generation,
      seq: this.#lastSeq,
      writer: this.#writer,
      updatedAt: new Date().toISOString(),
      containers: Object.fromEntries(this.#containers),
      lastFull: Object.fromEntries(this.#lastFull),
    };
    try {
      await this.#bucket.writeHead(head);
    } catch (err) {
      this.#headDirty = true;
      this.#headFailures++;
      this.#headError = err instanceof Error ? err.message : String(err);
      this.#metrics?.failure('head_write');
      const fields = { key: this.#bucket.headKey(this.#generation), seq: head.seq, failures: this.#headFailures, error: err };
      // Warn once per outage, not once per retry.
      if (this.#headFailures === 1) this.#log.warn('head write failed; retrying in the background', fields);
      else this.#log.debug('head write failed again', fields);
      this.#scheduleRetry();
      throw err;
    }
    if (this.#headFailures > 0) this.#log.info('head written again', { key: this.#bucket.headKey(this.#generation), seq: head.seq, failures: this.#headFailures });
    this.#headDirty = false;
    this.#headFailures = 0;
    this.#headError = null;
    this.#cancelRetry();
  }
}

/**
 * At pusher start: the head of generation g reconciled with its journal. A crash between writing a record and
 * writing the head leaves the head behind; the records after it are folded in (seq, last seq per container) and
 * the head is written back. A gap or a record that does not parse does not stop the seq from moving past it, so
 * a writer resuming from this head never reuses a seq. Null when the generation has neither head nor records.
 */
export async function recoverHead(bucket: Bucket, g: Generation): Promise<Head | null> {
  const res = await bucket.readHead(g);
  const start = res.status === 'ok' ? res.head : null;
  let seq = start?.seq ?? asSeq(0);
  let writer = start?.writer;
  const containers: Record<string, Seq> = { ...(start?.containers ?? {}) };
  // A head written before heads recorded them has none: the writer then names the checkpoints it publishes from
  // here on, and pullers read the journal from the start for the others (as they did before).
  const lastFull: Record<string, Seq> = { ...(start?.lastFull ?? {}) };
  let moved = false;
  for await (const item of bucket.listRecords(g, seq)) {
    if ('record' in item) {
      containers[item.record.container] = item.seq;
      if (item.record.kind === 'full') lastFull[item.record.container] = item.seq;
      writer ??= item.record.writer;
    }
    seq = item.seq;
    moved = true;
  }
  if (!moved) return start;
  if (writer === undefined) {
    // Only unusable records and no head: nothing tells who wrote this generation.
    throw new TwinlayerError('HEAD_UNRECOVERABLE', `generation ${g} has journal entries but neither a head nor a readable record`, { key: bucket.headKey(g) });
  }
  const head: Head = { version: 1, generation: g, seq, writer, updatedAt: new Date().toISOString(), containers, lastFull };
  await bucket.writeHead(head);
  return head;
}
