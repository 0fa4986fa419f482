// The bucket as twinlayer sees it: blobs, journal records, head pointers, twin specs, generation claims and
// divergent tails under one prefix/group.
// Everything read back is untrusted: keys are parsed strictly, bodies size-limited and parsed with zod.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';

import type { z } from 'zod';

import { silentLogger, type Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { BlobDigestMismatchError, BlobMissingError, BucketObjectInvalidError, ObjectTooLargeError } from './errors.js';
import { KeyLayout, type DivergentKeyParts } from './keys.js';
import {
  claimSchema,
  commitRecordSchema,
  divergentRecordSchema,
  headSchema,
  releaseSchema,
  zodReason,
  type Claim,
  type CommitRecord,
  type DivergentRecord,
  type Head,
  type Release,
} from './records.js';
import { asSeq, MAX_GENERATION, MAX_RECORD_BYTES, MAX_SPEC_BYTES, type Digest, type Generation, type Seq } from './types.js';

/** One step of the journal: a record, or why the record at this seq cannot be used (missing, does not parse). */
export type JournalItem = { seq: Seq; record: CommitRecord } | { seq: Seq; error: string };

/** A saved divergent tail, or why the record under a well-formed key cannot be used. */
export type DivergentItem = { key: string; record: DivergentRecord } | { key: string; error: string };

/** The outcome of a claim: won, or lost to `holder` (null when the claim object there is gone or not a claim). */
export type ClaimOutcome = { won: true } | { won: false; holder: Claim | null };

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
/** Claims newerClaim reads one by one above the owned generation before it lists the generations instead. */
const CLAIM_WALK_LIMIT = 32;
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
  claimKey(g: Generation): string {
    return this.layout.claimKey(g);
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

  /**
   * Claims `claim.generation` by creating its claim.json only if it does not exist (If-None-Match: *): of all
   * hosts claiming one generation, exactly one wins. A loser gets the holder's claim, which may be its own from
   * an earlier attempt (a restart between claim and record): compare `holder.host`.
   */
  async claimGeneration(claim: Claim): Promise<ClaimOutcome> {
    const key = this.claimKey(claim.generation);
    const checked = claimSchema.safeParse(claim);
    if (!checked.success) throw new BucketObjectInvalidError('claim', key, zodReason(checked.error));
    if (await this.store.putIfAbsent(key, Buffer.from(JSON.stringify(checked.data, null, 2) + '\n'))) return { won: true };
    try {
      return { won: false, holder: await this.readClaim(claim.generation) };
    } catch (err) {
      if (!(err instanceof BucketObjectInvalidError)) throw err;
      // The generation is taken all the same: nothing can replace the object there.
      this.#log.warn('generation taken by an object that is not a valid claim', { key, error: err.message });
      return { won: false, holder: null };
    }
  }

  /** The claim of generation g; null when there is none; BucketObjectInvalidError when it does not parse or names another generation. */
  readClaim(g: Generation): Promise<Claim | null> {
    return this.#readOfGeneration(g, this.claimKey(g), claimSchema, 'claim');
  }

  /** A small object of generation g (claim, release): size-bounded, zod-parsed, and naming g itself. */
  async #readOfGeneration<T extends { generation: Generation }>(g: Generation, key: string, schema: z.ZodType<T>, what: 'claim' | 'release'): Promise<T | null> {
    let body;
    try {
      body = await this.store.getBuffer(key, MAX_RECORD_BYTES);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) throw new BucketObjectInvalidError(what, key, `larger than ${MAX_RECORD_BYTES} bytes`);
      throw err;
    }
    if (body === null) return null;
    const parsed = parseJson(body, schema, what, key);
    if (parsed.generation !== g) throw new BucketObjectInvalidError(what, key, `names generation ${parsed.generation}`);
    return parsed;
  }

  /**
   * The newest generation in the bucket with its claim (null when it has none: opened by a pusher before claims
   * existed); null for an empty bucket. Lists the generations (one LIST round each, see listGenerations): for
   * start-up and promotion, not for the once-a-second fencing check (newerClaim).
   */
  async newestClaim(): Promise<{ generation: Generation; claim: Claim | null } | null> {
    const newest = (await this.listGenerations()).at(-1);
    if (newest === undefined) return null;
    return { generation: newest, claim: await this.readClaim(newest) };
  }

  /**
   * The newest claim above generation `owned`, or null when there is none: the self-fencing check of the primary
   * that owns `owned`. While nothing changed it costs one GET (a 404) of gen/<owned+1>/claim.json.
   *
   * Why probing owned+1 is enough: a promotion claims newest+1, where newest counts claims too (a generation's
   * claim is its first object), and a claim is a create that fails when the key exists. So no claim of g+2 is
   * made before the claim of g+1 exists, and claims are never deleted while a newer generation lives: any claim
   * above `owned` implies one at owned+1. This holds for generations opened by a claim; one opened by a head only
   * (pushers before claims) is not seen here. A LIST is no cheaper: keys sort as text (gen/10 before gen/9), so
   * "after generation g" is not a key range.
   * From owned+1 it reads upward to the newest claim; after CLAIM_WALK_LIMIT claims it lists instead.
   * Throws BucketObjectInvalidError for a claim on the way that does not parse.
   */
  async newerClaim(owned: Generation): Promise<{ generation: Generation; claim: Claim } | null> {
    let newest: { generation: Generation; claim: Claim } | null = null;
    for (let g = owned + 1, steps = 0; g <= MAX_GENERATION; g++, steps++) {
      if (steps === CLAIM_WALK_LIMIT) {
        const listed = await this.newestClaim();
        const above = newest?.generation ?? owned;
        return listed !== null && listed.claim !== null && listed.generation > above ? { generation: listed.generation, claim: listed.claim } : newest;
      }
      const claim = await this.readClaim(g as Generation);
      if (claim === null) return newest;
      newest = { generation: g as Generation, claim };
    }
    return newest;
  }

  /** Marks generation g released by its owner (see Release). */
  async putRelease(release: Release): Promise<void> {
    const key = this.layout.releaseKey(release.generation);
    const checked = releaseSchema.safeParse(release);
    if (!checked.success) throw new BucketObjectInvalidError('release', key, zodReason(checked.error));
    await this.store.put(key, Buffer.from(JSON.stringify(checked.data, null, 2) + '\n'));
  }

  /** The release of generation g; null when it is not released; BucketObjectInvalidError when it does not parse. */
  readRelease(g: Generation): Promise<Release | null> {
    return this.#readOfGeneration(g, this.layout.releaseKey(g), releaseSchema, 'release');
  }

  async deleteRelease(g: Generation): Promise<void> {
    await this.store.delete(this.layout.releaseKey(g));
  }

  /**
   * The newest generation that exists (a claim or a head) at or above `from`, found by probing from+1 upward: two
   * small GETs while nothing changed, however many generations the bucket keeps (listGenerations costs one LIST
   * round per generation). Generations are opened one past the newest their opener saw, so there are no holes to
   * jump. `from` itself is returned when nothing newer exists (whether or not it exists); from 0, and after
   * CLAIM_WALK_LIMIT steps, it lists instead.
   */
  async newestGenerationFrom(from: Generation): Promise<Generation> {
    if (from === 0) return (await this.listGenerations()).at(-1) ?? from;
    let newest = from;
    for (let g = from + 1, steps = 0; g <= MAX_GENERATION; g++, steps++) {
      if (steps === CLAIM_WALK_LIMIT) return Math.max(newest, (await this.listGenerations()).at(-1) ?? 0) as Generation;
      const exists = (await this.store.exists(this.layout.claimKey(g as Generation))) || (await this.store.exists(this.headKey(g as Generation)));
      if (!exists) return newest;
      newest = g as Generation;
    }
    return newest;
  }

  /**
   * Saves a divergent tail: the changeset `file` (sha256 `record.digest`, `record.size` bytes, computed by the
   * caller) under blobs/, then the record that points at it. Returns the record's key. Saving the same tail again
   * writes the same keys.
   */
  async putDivergent(record: DivergentRecord, file: string): Promise<string> {
    const checked = divergentRecordSchema.safeParse(record);
    if (!checked.success) throw new BucketObjectInvalidError('divergent', this.layout.divergentPrefix, zodReason(checked.error));
    const key = this.layout.divergentKey(checked.data);
    await this.uploadBlob(file, checked.data.digest);
    await this.store.put(key, Buffer.from(JSON.stringify(checked.data, null, 2) + '\n'));
    return key;
  }

  /**
   * Every saved divergent tail (of `host` only, when given), in key order. Keys outside the layout are ignored
   * and logged; a record that does not parse or disagrees with its key is an error item.
   */
  async listDivergent(host?: string): Promise<DivergentItem[]> {
    const prefix = host === undefined ? this.layout.divergentPrefix : this.layout.divergentHostPrefix(host);
    const hostile = new HostileKeys();
    const found: Array<{ key: string; parts: DivergentKeyParts }> = [];
    for await (const key of this.store.list(prefix)) {
      const parts = this.layout.parseDivergentKey(key);
      if (parts === null || (host !== undefined && parts.host !== host)) hostile.note(key);
      else found.push({ key, parts });
    }
    hostile.report(this.#log, prefix);
    const items: DivergentItem[] = [];
    // A few reads in flight at a time; there are few tails, each a small record.
    for (let i = 0; i < found.length; i += READ_AHEAD) {
      items.push(...(await Promise.all(found.slice(i, i + READ_AHEAD).map((f) => this.#readDivergent(f.key, f.parts)))));
    }
    return items;
  }

  async #readDivergent(key: string, parts: DivergentKeyParts): Promise<DivergentItem> {
    let body;
    try {
      body = await this.store.getBuffer(key, MAX_RECORD_BYTES);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) return { key, error: `record is larger than ${MAX_RECORD_BYTES} bytes` };
      throw err;
    }
    if (body === null) return { key, error: 'record listed but missing' };
    let record: DivergentRecord;
    try {
      record = parseJson(body, divergentRecordSchema, 'divergent', key);
    } catch (err) {
      if (err instanceof BucketObjectInvalidError) return { key, error: err.message };
      throw err;
    }
    if (record.host !== parts.host || record.generation !== parts.generation || record.container !== parts.container || record.digest !== parts.digest) {
      return { key, error: `record names host ${record.host} generation ${record.generation} container ${record.container} digest ${record.digest}, not its key's` };
    }
    return { key, record };
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

function parseJson<T>(body: Buffer, schema: z.ZodType<T>, what: ConstructorParameters<typeof BucketObjectInvalidError>[0], key: string): T {
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
