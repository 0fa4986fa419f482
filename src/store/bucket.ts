// The bucket as twinlayer sees it: blobs, journal records, head pointers and twin specs under one prefix/group.
// Everything read back is untrusted: keys are parsed strictly, bodies size-limited and parsed with zod.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';

import type { z } from 'zod';

import { silentLogger, type Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { BlobDigestMismatchError, BlobMissingError, BucketObjectInvalidError, ObjectTooLargeError } from './errors.js';
import { KeyLayout } from './keys.js';
import { commitRecordSchema, headSchema, zodReason, type CommitRecord, type Head } from './records.js';
import { asSeq, MAX_RECORD_BYTES, MAX_SPEC_BYTES, type Digest, type Generation, type Seq } from './types.js';

/** One step of the journal: a record, or why the record at this seq cannot be used (missing, does not parse). */
export type JournalItem = { seq: Seq; record: CommitRecord } | { seq: Seq; error: string };

export interface BucketOptions {
  /** Key prefix (slash-separated words); "" for none. */
  prefix: string;
  group: string;
  log?: Logger;
  /** Downloads of a blob whose content does not match its digest, before giving up. Default 3. */
  blobRetries?: number;
}

/** Records read ahead while listRecords' consumer handles the current one. */
const READ_AHEAD = 16;
/** The highest key possible under a generation's prefix (U+10FFFF is the largest UTF-8 sequence). */
const AFTER_ALL = '\u{10FFFF}';

/** Collects keys that do not belong in the layout; logged once per listing with a few samples. */
class HostileKeys {
  count = 0;
  readonly samples: string[] = [];
  note(key: string): void {
    this.count++;
    if (this.samples.length < 5) this.samples.push(key);
  }
  report(log: Logger, where: string): void {
    // JSON.stringify keeps control characters in a key from reaching the terminal raw.
    if (this.count > 0) log.warn('ignored keys that are not in the bucket layout', { where, count: this.count, samples: this.samples.map((k) => JSON.stringify(k)) });
  }
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class Bucket {
  readonly store: BlobStore;
  readonly layout: KeyLayout;
  readonly #log: Logger;
  readonly #blobRetries: number;

  constructor(store: BlobStore, opts: BucketOptions) {
    this.store = store;
    this.layout = new KeyLayout(opts.prefix, opts.group);
    this.#log = opts.log ?? silentLogger;
    const retries = opts.blobRetries ?? 3;
    if (!Number.isInteger(retries) || retries < 1 || retries > 20) throw new TypeError(`Expected \`blobRetries\` to be an integer from 1 to 20, got ${String(retries)}`);
    this.#blobRetries = retries;
  }

  blobKey(d: Digest): string {
    return this.layout.blobKey(d);
  }
  headKey(g: Generation): string {
    return this.layout.headKey(g);
  }
  journalKey(g: Generation, s: Seq): string {
    return this.layout.journalKey(g, s);
  }
  specKey(name: string): string {
    return this.layout.specKey(name);
  }

  /**
   * Uploads a changeset file under its content address; skips the upload when the key exists (same bytes).
   * The caller computed `digest` from the file; the puller verifies it on download.
   */
  async uploadBlob(file: string, digest: Digest): Promise<void> {
    const key = this.blobKey(digest);
    if (await this.store.exists(key)) return;
    await this.store.put(key, { file });
  }

  /**
   * Downloads a blob to `file` and checks size and sha256. A mismatching download is discarded and fetched again,
   * up to blobRetries times, then BlobDigestMismatchError. Transport failures are retried by the store itself.
   * Nothing appears under `file` unless it matched.
   */
  async downloadBlob(digest: Digest, size: number, file: string): Promise<void> {
    const key = this.blobKey(digest);
    const tmp = `${file}.dl-${randomBytes(6).toString('hex')}`;
    let got = { digest: '', size: -1 };
    try {
      for (let attempt = 1; attempt <= this.#blobRetries; attempt++) {
        if (!(await this.store.getToFile(key, tmp))) throw new BlobMissingError(key);
        const actualSize = (await stat(tmp)).size;
        const actual = actualSize === size ? await sha256File(tmp) : '(not computed: size differs)';
        if (actualSize === size && actual === digest) {
          await rename(tmp, file);
          return;
        }
        got = { digest: actual, size: actualSize };
        await rm(tmp, { force: true });
        this.#log.warn('blob does not match its digest; fetching again', { key, attempt, expectedSize: size, size: actualSize });
      }
    } finally {
      await rm(tmp, { force: true });
    }
    throw new BlobDigestMismatchError(key, { digest, size }, got, this.#blobRetries);
  }

  /** Generations present in the bucket (a head or a journal record), ascending. One LIST round per generation. */
  async listGenerations(): Promise<Generation[]> {
    const found = new Set<Generation>();
    const hostile = new HostileKeys();
    let startAfter: string | undefined;
    // Each round either finds a generation not seen before and skips past all its keys, or ends the listing.
    for (;;) {
      let skipTo: string | undefined;
      for await (const key of this.store.list(this.layout.generationsPrefix, startAfter)) {
        const g = this.layout.parseGenerationKey(key);
        if (g === null) {
          hostile.note(key);
          continue;
        }
        found.add(g);
        const next = `${this.layout.generationPrefix(g)}${AFTER_ALL}`;
        if (compareUtf8(next, key) > 0) {
          skipTo = next;
          break;
        }
      }
      if (skipTo === undefined) break;
      startAfter = skipTo;
    }
    hostile.report(this.#log, 'generations');
    return [...found].sort((a, b) => a - b);
  }

  /** The head of generation g, with a conditional GET when `etag` is given. */
  async readHead(g: Generation, etag?: string): Promise<{ status: 'missing' } | { status: 'unchanged' } | { status: 'ok'; head: Head; etag: string }> {
    const key = this.headKey(g);
    const res = await this.store.getIfNoneMatch(key, etag, MAX_RECORD_BYTES);
    if (res.status !== 'ok') return res;
    const head = parseJson(res.body, headSchema, 'head', key);
    if (head.generation !== g) throw new BucketObjectInvalidError('head', key, `names generation ${head.generation}`);
    return { status: 'ok', head, etag: res.etag };
  }

  async writeHead(head: Head): Promise<void> {
    const key = this.headKey(head.generation);
    const checked = headSchema.safeParse(head);
    if (!checked.success) throw new BucketObjectInvalidError('head', key, zodReason(checked.error));
    await this.store.put(key, Buffer.from(JSON.stringify(checked.data, null, 2) + '\n'));
  }

  /** Writes a commit record. Only after its blob is complete (JournalWriter.publish after uploadBlob). */
  async writeRecord(rec: CommitRecord): Promise<void> {
    const key = this.journalKey(rec.generation, rec.seq);
    const checked = commitRecordSchema.safeParse(rec);
    if (!checked.success) throw new BucketObjectInvalidError('record', key, zodReason(checked.error));
    await this.store.put(key, Buffer.from(JSON.stringify(checked.data, null, 2) + '\n'));
  }

  /** The record at seq s; null when missing; BucketObjectInvalidError when it does not parse or names another seq. */
  async readRecord(g: Generation, s: Seq): Promise<CommitRecord | null> {
    const item = await this.#readItem(g, s, true);
    if (item === null) return null;
    if ('error' in item) throw new BucketObjectInvalidError('record', this.journalKey(g, s), item.error);
    return item.record;
  }

  async #readItem(g: Generation, s: Seq, missingIsNull: true): Promise<JournalItem | null>;
  async #readItem(g: Generation, s: Seq, missingIsNull: false): Promise<JournalItem>;
  async #readItem(g: Generation, s: Seq, missingIsNull: boolean): Promise<JournalItem | null> {
    const key = this.journalKey(g, s);
    let body;
    try {
      body = await this.store.getBuffer(key, MAX_RECORD_BYTES);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) return { seq: s, error: `record is larger than ${MAX_RECORD_BYTES} bytes` };
      throw err;
    }
    if (body === null) return missingIsNull ? null : { seq: s, error: 'record listed but missing' };
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      return { seq: s, error: `record is not JSON: ${(err as Error).message}` };
    }
    const parsed = commitRecordSchema.safeParse(json);
    if (!parsed.success) return { seq: s, error: `record does not parse: ${zodReason(parsed.error)}` };
    if (parsed.data.seq !== s || parsed.data.generation !== g) {
      return { seq: s, error: `record names generation ${parsed.data.generation} seq ${parsed.data.seq}, not its key's` };
    }
    return { seq: s, record: parsed.data };
  }

  /**
   * Journal items with seq > afterSeq in seq order. The seqs come from parsed key names (all pages of the listing);
   * a missing range yields one error item at its first missing seq, then the listing goes on after it; a record
   * that does not parse yields an error item. Keys outside the layout are ignored and logged, never used.
   */
  async *listRecords(g: Generation, afterSeq: number): AsyncIterable<JournalItem> {
    const after = asSeq(afterSeq);
    const prefix = this.layout.journalPrefix(g);
    const hostile = new HostileKeys();
    const seqs: Seq[] = [];
    for await (const key of this.store.list(prefix, after >= 1 ? this.journalKey(g, after) : undefined)) {
      const s = this.layout.parseJournalKey(g, key);
      if (s === null) hostile.note(key);
      else if (s > after) seqs.push(s);
    }
    hostile.report(this.#log, prefix);
    seqs.sort((a, b) => a - b);

    type Step = { seq: Seq; gapTo?: Seq };
    const plan: Step[] = [];
    let expected = after + 1;
    for (const s of seqs) {
      if (s < expected) continue; // a duplicate in the listing
      if (s > expected) plan.push({ seq: expected as Seq, gapTo: (s - 1) as Seq });
      plan.push({ seq: s });
      expected = s + 1;
    }

    const pending: Promise<JournalItem>[] = [];
    let next = 0;
    const fill = (): void => {
      while (pending.length < READ_AHEAD && next < plan.length) {
        const step = plan[next++];
        if (step === undefined) break;
        const p: Promise<JournalItem> =
          step.gapTo === undefined
            ? this.#readItem(g, step.seq, false)
            : Promise.resolve({ seq: step.seq, error: `missing from the journal: seq ${step.seq}${step.gapTo > step.seq ? `..${step.gapTo}` : ''}` });
        // Marked handled now; the rejection is rethrown when the consumer reaches it.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    fill();
    for (let p = pending.shift(); p !== undefined; p = pending.shift()) {
      const item = await p;
      fill();
      yield item;
    }
  }

  async putSpec(name: string, spec: unknown): Promise<void> {
    await this.store.put(this.specKey(name), Buffer.from(JSON.stringify(spec, null, 2) + '\n'));
  }

  /** The parsed JSON spec of a container; undefined when there is none. The caller validates its shape. */
  async getSpec(name: string): Promise<unknown> {
    const key = this.specKey(name);
    const body = await this.store.getBuffer(key, MAX_SPEC_BYTES);
    if (body === null) return undefined;
    try {
      return JSON.parse(body.toString('utf8')) as unknown;
    } catch (err) {
      throw new BucketObjectInvalidError('spec', key, `not JSON: ${(err as Error).message}`);
    }
  }

  async listSpecNames(): Promise<string[]> {
    const names: string[] = [];
    const hostile = new HostileKeys();
    for await (const key of this.store.list(this.layout.specsPrefix)) {
      const name = this.layout.parseSpecKey(key);
      if (name === null) hostile.note(key);
      else names.push(name);
    }
    hostile.report(this.#log, this.layout.specsPrefix);
    return names.sort();
  }
}

function parseJson<T>(body: Buffer, schema: z.ZodType<T>, what: 'head' | 'record', key: string): T {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BucketObjectInvalidError(what, key, `not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new BucketObjectInvalidError(what, key, zodReason(parsed.error));
  return parsed.data;
}
