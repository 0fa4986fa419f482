// The bucket as twinlayer sees it: blobs, journal records, head pointers, twin specs, generation claims and
// divergent tails under one prefix/group.
// Everything read back is untrusted: keys are parsed strictly, bodies size-limited, signatures checked against the
// group's trusted keys (signatures.ts) and bodies parsed with zod. Every small object is written signed by this
// host's key; blobs need no signature of their own: the signed record names their digest and size.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, rm, stat } from 'node:fs/promises';

import { z } from 'zod';

import { TwinlayerError } from '../log/errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { BlobStore, BodyObserver } from './blob-store.js';
import type { SignedKind } from './canonical.js';
import { DeleteGate } from './delete-gate.js';
import { BlobDigestMismatchError, BlobMissingError, BucketObjectInvalidError, ObjectTooLargeError } from './errors.js';
import { ImageObjects } from './image-objects.js';
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
import { Refusals, type RefusalsView } from './refusals.js';
import { Signatures, type SignaturePolicyView } from './signatures.js';
import type { TrustedKey } from './signing-keys.js';
import { asSeq, MAX_GENERATION, MAX_RECORD_BYTES, MAX_SPEC_BYTES, type Digest, type Generation, type Seq } from './types.js';

/** One step of the journal: a record, or why the record at this seq cannot be used (missing, refused). */
/** A record, or why the seq has none: `missingTo` is set when no key is listed from `seq` to it (a gap), else the key
 *  is there and refused. */
export type JournalItem = { seq: Seq; record: CommitRecord } | { seq: Seq; error: string; missingTo?: Seq };

/** A saved divergent tail, or why the record under a well-formed key cannot be used. */
export type DivergentItem = { key: string; record: DivergentRecord } | { key: string; error: string };

/** The outcome of a claim: won, or lost to `holder` (null when the object there is not a claim the group signed:
 *  junk from a bucket writer without a key, which takes the generation all the same). */
export type ClaimOutcome = { won: true } | { won: false; holder: Claim | null };

/** A head as read; `refused` when the object there is not acceptable (unsigned, badly signed, another generation's,
 *  not parsing): logged once and listed in signatureStatus(). */
export type HeadRead = { status: 'missing' } | { status: 'unchanged' } | { status: 'refused'; reason: string } | { status: 'ok'; head: Head; etag: string };

/**
 * A generation the group made: its claim (an agent's promotion) or, without one, its head (opened by `twinlayer
 * push`), signed by a trusted key. `head` is read only when there is no acceptable claim.
 */
export interface GenerationFound {
  generation: Generation;
  claim: Claim | null;
  head: Head | null;
}

/** Sees one request's bytes of a blob as they arrive (Bucket.downloadBlob), to work on them in the same pass. */
export interface BlobTap {
  /** The next bytes; the download waits for the promise, so a tap must bound how long it keeps it waiting. */
  write(bytes: Buffer): Promise<void> | undefined;
  /** Every byte was shown, and the blob matched its size and digest. */
  end(): void;
  /** What was shown is void (the request failed or was retried, or the blob did not match): nothing more comes. */
  abort(reason: Error): void;
}

export interface DownloadOptions {
  /** A new tap for each request of the blob. */
  tap?: () => BlobTap;
  signal?: AbortSignal;
}

/** What status shows of signatures: the set-up and what was refused. */
export interface SignatureStatus extends SignaturePolicyView {
  refused: RefusalsView;
}

export interface BucketOptions {
  /** Key prefix (slash-separated words); "" for none. */
  prefix: string;
  group: string;
  /** How this host signs what it writes and whose signatures it accepts. */
  signatures: Signatures;
  log?: Logger;
  /** Downloads of a blob whose content does not match its digest, before giving up. Default 3. */
  blobRetries?: number;
  /** LIST rounds of one listing of the generations. Default MAX_LISTED_GENERATIONS. */
  maxListedGenerations?: number;
}

/** Records read ahead while listRecords' consumer handles the current one. */
const READ_AHEAD = 16;
/** Blobs smaller than this are uploaded without a HEAD first (uploadBlob). */
export const blindPutBelowBytes = 256 * 1024;

/** Keys one journal listing reads at most (its seqs are held in memory); the puller reads the rest next poll. */
export const MAX_LISTED_KEYS = 100_000;

/** Keys past a head a check of the journal lists at most (claims, releases): more than this past the head is no
 *  head to trust, whatever the keys hold (like the puller's maxRecordsPerPoll). */
export const MAX_KEYS_PAST_HEAD = 10_000;

export interface ListRecordsOptions {
  /** At most this many keys past afterSeq are listed. Default MAX_LISTED_KEYS. */
  maxKeys?: number;
  /** Called when keys past those listed were left out. */
  onTruncated?: () => void;
}
/** A listing of objects of one kind that stops at `max` items: what was left out is counted (keys only, nothing read),
 *  up to MAX_LISTED_KEYS keys listed in all. */
export interface BoundedListing {
  /** Items returned at most (records read, names kept). */
  max?: number;
  /** Called once when items were left out: how many, and whether that count is exact or the listing of keys stopped
   *  at its own bound first (then there are at least that many more). */
  onTruncated?: (more: number, atLeast: boolean) => void;
}

/** Divergent tails listDivergent reads at most by default: each is a GET; an operator reads a few. */
export const MAX_LISTED_TAILS = 1000;
/** Spec names listSpecNames returns at most by default (protected containers of one group). */
export const MAX_LISTED_SPECS = 10_000;

/** spec.json reads and conditional puts in a row before putSpec gives up: each round's condition fails only when
 *  another writer replaced the spec between its read and its put. */
const SPEC_PUT_ROUNDS = 4;

/** Keeps the first `max` items of a listing and counts the rest, listing at most MAX_LISTED_KEYS keys in all. */
class Bounded<T> {
  readonly items: T[] = [];
  more = 0;
  keys = 0;
  readonly #max: number;
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max must be an integer >= 1, got ${max}`);
    this.#max = max;
  }

  /** False once no more keys may be listed. */
  keyListed(): boolean {
    return ++this.keys <= MAX_LISTED_KEYS;
  }

  add(item: T): void {
    if (this.items.length < this.#max) this.items.push(item);
    else this.more++;
  }

  report(opts: BoundedListing, stoppedEarly: boolean): void {
    if (this.more > 0 || stoppedEarly) opts.onTruncated?.(this.more, stoppedEarly);
  }
}

/** Generations probed one by one above a known one before the generations are listed instead. */
const CLAIM_WALK_LIMIT = 32;
/**
 * Refused generations in a row that an upward probe passes over. A bucket writer without a key can put junk at the
 * next generation's claim key (a conditional create then fails there): a promotion claims past it, and every
 * probe (pullers, the fence, the claimer) walks past it the same way, so they all agree which generation is newest.
 */
export const REFUSED_GENERATION_SKIP = 8;
/** Generations one listing examines (two small GETs each) from the top without finding one the group made, before
 *  it gives up for this call; the ones it found refused are remembered, so the next call goes on below them. */
export const MAX_UNSIGNED_GENERATIONS = 64;
/** LIST rounds of one listing of the generations (one round per generation): a bucket writer can add generations
 *  without end, and the work of every discovery must stay bounded. Past it the listing stops, with an alert. */
export const MAX_LISTED_GENERATIONS = 4096;
/** How long a generation a listing found refused is passed over by later listings without reading it again. Junk
 *  does not turn into the group's, but a generation whose junk was replaced by a signed head is seen again after
 *  this; the upward probes (the fence, a puller following a generation) read every generation they pass. */
const REFUSED_GENERATION_MEMORY_MS = 60_000;
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

/** How one kind of small object is read: its schema, the host it names (a key bound to a host signs only for that
 *  host), and its agreement with the key it was read at. */
interface Decoder<T> {
  kind: SignedKind;
  schema: z.ZodType<T>;
  host: (v: T) => string | null;
  check: (v: T) => string | null;
}

type Decoded<T> = { ok: true; value: T; signer: TrustedKey | null } | { ok: false; reason: string };
type Small<T> = { state: 'absent' } | { state: 'ok'; value: T; signer: TrustedKey | null } | { state: 'refused'; reason: string };
type GenerationState = { state: 'valid'; found: GenerationFound } | { state: 'refused' } | { state: 'absent' };

const anySpec: z.ZodType<unknown> = z.unknown();

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function ofGeneration<T extends { generation: Generation }>(g: Generation): (v: T) => string | null {
  return (v) => (v.generation === g ? null : `names generation ${v.generation}, not its key's ${g}`);
}

export class Bucket {
  readonly store: BlobStore;
  readonly layout: KeyLayout;
  readonly #group: string;
  readonly #sig: Signatures;
  readonly #refusals: Refusals;
  /** Generations a listing found refused, until when they are passed over (see #newestListed). */
  readonly #refusedGenerations = new Map<Generation, number>();
  readonly #log: Logger;
  readonly #blobRetries: number;
  readonly #maxListed: number;
  /** GC in this process and this bucket's writers (delete-gate.ts). */
  readonly gate = new DeleteGate();
  /** The group's images: the shipper's HEADs and PUTs, the standby's reads checked while they stream (image-objects.ts). */
  readonly images: ImageObjects;

  constructor(store: BlobStore, opts: BucketOptions) {
    this.store = store;
    this.layout = new KeyLayout(opts.prefix, opts.group);
    this.images = new ImageObjects(store, this.layout, this.gate);
    this.#group = opts.group;
    this.#sig = opts.signatures;
    this.#log = opts.log ?? silentLogger;
    this.#refusals = new Refusals(this.#log);
    const retries = opts.blobRetries ?? 3;
    if (!Number.isInteger(retries) || retries < 1 || retries > 20) throw new TypeError(`Expected \`blobRetries\` to be an integer from 1 to 20, got ${String(retries)}`);
    this.#blobRetries = retries;
    const listed = opts.maxListedGenerations ?? MAX_LISTED_GENERATIONS;
    if (!Number.isInteger(listed) || listed < 1) throw new TypeError(`Expected \`maxListedGenerations\` to be a positive integer, got ${String(listed)}`);
    this.#maxListed = listed;
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

  /** The signature set-up and the objects refused so far (for status). */
  signatureStatus(): SignatureStatus {
    return { ...this.#sig.view(), refused: this.#refusals.view() };
  }

  // ---- signing and checking small objects --------------------------------------------------------------------

  /** A key below `<prefix>/<group>/`: what a signature binds, so a copy under another prefix of the group verifies. */
  #rel(key: string): string {
    return key.slice(this.layout.base.length + 1);
  }

  #encode(kind: SignedKind, key: string, body: object): Buffer {
    return Buffer.from(JSON.stringify(this.#sig.seal({ group: this.#group, kind, key: this.#rel(key) }, body), null, 2) + '\n');
  }

  #refuse(kind: SignedKind, key: string, reason: string): { ok: false; reason: string } {
    this.#refusals.note(key, kind, reason);
    return { ok: false, reason };
  }

  /** A small object's bytes read at `key`: JSON, signed by a trusted key for this key and group, parsing, naming
   *  the host its signer may sign for, agreeing with its key. Anything else is refused (logged once per key). */
  #decode<T>(d: Decoder<T>, key: string, body: Buffer): Decoded<T> {
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      return this.#refuse(d.kind, key, `not JSON: ${(err as Error).message}`);
    }
    const opened = this.#sig.open({ group: this.#group, kind: d.kind, key: this.#rel(key) }, json);
    if (!opened.ok) return this.#refuse(d.kind, key, opened.reason);
    const parsed = d.schema.safeParse(opened.body);
    if (!parsed.success) return this.#refuse(d.kind, key, `does not parse: ${zodReason(parsed.error)}`);
    const problem = d.check(parsed.data) ?? Signatures.hostProblem(opened.signer, d.host(parsed.data));
    if (problem !== null) return this.#refuse(d.kind, key, problem);
    this.#refusals.clear(key);
    return { ok: true, value: parsed.data, signer: opened.signer };
  }

  async #readSmall<T>(d: Decoder<T>, key: string, maxBytes = MAX_RECORD_BYTES): Promise<Small<T>> {
    let body;
    try {
      body = await this.store.getBuffer(key, maxBytes);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) return { state: 'refused', reason: this.#refuse(d.kind, key, `larger than ${maxBytes} bytes`).reason };
      throw err;
    }
    if (body === null) return { state: 'absent' };
    const r = this.#decode(d, key, body);
    return r.ok ? { state: 'ok', value: r.value, signer: r.signer } : { state: 'refused', reason: r.reason };
  }

  #headDecoder(g: Generation): Decoder<Head> {
    return { kind: 'head', schema: headSchema, host: (h) => h.writer, check: ofGeneration(g) };
  }

  #claimDecoder(g: Generation): Decoder<Claim> {
    return { kind: 'claim', schema: claimSchema, host: (c) => c.host, check: ofGeneration(g) };
  }

  #releaseDecoder(g: Generation): Decoder<Release> {
    return { kind: 'release', schema: releaseSchema, host: (r) => r.host, check: ofGeneration(g) };
  }

  // ---- blobs -------------------------------------------------------------------------------------------------

  /**
   * Uploads a changeset file under its content address. A blob of `blindPutBelowBytes` or more is skipped when the
   * key exists (same bytes); a smaller one is PUT without asking: the HEAD would cost a round trip as long as the
   * PUT itself, and a PUT over the same bytes changes nothing. The caller computed `digest` from the file; the
   * puller verifies it on download.
   */
  async uploadBlob(file: string, digest: Digest): Promise<void> {
    const key = this.blobKey(digest);
    // A blob GC here is about to delete is put again whatever its size: it must not be named while it goes.
    if (await this.gate.beforeWrite(key)) {
      await this.store.put(key, { file });
      return;
    }
    if ((await stat(file)).size < blindPutBelowBytes) {
      // Sent from memory: a plain request, without a file stream's opens and reads on the way.
      await this.store.put(key, await readFile(file));
      return;
    }
    if (await this.store.exists(key)) return;
    await this.store.put(key, { file });
  }

  /**
   * Downloads a blob to `file` and checks size and sha256, hashed as the bytes arrive. A mismatching download is
   * discarded and fetched again, up to blobRetries times, then BlobDigestMismatchError. Transport failures are retried
   * by the store itself. Nothing appears under `file` unless it matched. The download stops at the first byte past
   * `size` (the record's word): an object larger than its record says is refused at once, neither read on nor fetched
   * again. `opts.tap` is asked for a BlobTap at each request's first byte, which sees that request's bytes; `signal`
   * stops the download (and the tap).
   */
  async downloadBlob(digest: Digest, size: number, file: string, opts: DownloadOptions = {}): Promise<void> {
    const key = this.blobKey(digest);
    const tmp = `${file}.dl-${randomBytes(6).toString('hex')}`;
    let got = { digest: '', size: -1 };
    /** This request's hash, the bytes it saw, and its tap. */
    let seen: { hash: Hash; bytes: number; tap: BlobTap | null } | null = null;
    const stop = (reason: Error): void => {
      seen?.tap?.abort(reason);
      seen = null;
    };
    const observe: BodyObserver = {
      start: () => {
        stop(new Error(`the download of ${key} started again from its first byte`));
        seen = { hash: createHash('sha256'), bytes: 0, tap: opts.tap?.() ?? null };
      },
      chunk: (bytes) => {
        if (seen === null) return undefined;
        seen.hash.update(bytes);
        seen.bytes += bytes.length;
        return seen.tap?.write(bytes);
      },
    };
    try {
      for (let attempt = 1; attempt <= this.#blobRetries; attempt++) {
        seen = null;
        let found: boolean;
        try {
          found = await this.store.getToFile(key, tmp, size, { observe, ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
        } catch (err) {
          stop(err as Error);
          if (!(err instanceof ObjectTooLargeError)) throw err;
          const seenSize = typeof err.context['size'] === 'number' ? err.context['size'] : size + 1;
          throw new BlobDigestMismatchError(key, { digest, size }, { digest: '(not computed: larger than its record declares)', size: seenSize }, attempt);
        }
        if (!found) throw new BlobMissingError(key);
        const actualSize = (await stat(tmp)).size;
        const s = seen as { hash: Hash; bytes: number; tap: BlobTap | null } | null;
        // A store that did not show every byte (a wrapper without the observer) is hashed from the file.
        const streamed = s !== null && s.bytes === actualSize;
        const actual = actualSize !== size ? '(not computed: size differs)' : streamed ? s.hash.digest('hex') : await sha256File(tmp);
        if (actualSize === size && actual === digest) {
          await rename(tmp, file);
          if (streamed) s.tap?.end();
          else stop(new Error(`the store did not show the bytes of ${key} as they came`));
          seen = null;
          return;
        }
        stop(new Error(`${key} does not match its digest`));
        got = { digest: actual, size: actualSize };
        await rm(tmp, { force: true });
        this.#log.warn('blob does not match its digest; fetching again', { key, attempt, expectedSize: size, size: actualSize });
      }
    } finally {
      stop(new Error(`the download of ${key} ended`));
      await rm(tmp, { force: true });
    }
    throw new BlobDigestMismatchError(key, { digest, size }, got, this.#blobRetries);
  }

  // ---- generations -------------------------------------------------------------------------------------------

  /**
   * Generation numbers with keys in the bucket (a head, a claim, a release or a journal record), ascending, as the
   * keys say: unchecked, so for observers. Decisions use newestGeneration / newestGenerationFrom, which only count
   * generations the group signed. One LIST round per generation.
   */
  async listGenerations(): Promise<Generation[]> {
    return (await this.#listGenerations()).generations;
  }

  /** listGenerations, and whether it stopped at MAX_LISTED_GENERATIONS rounds (more generations than that). */
  async #listGenerations(): Promise<{ generations: Generation[]; truncated: boolean }> {
    const found = new Set<Generation>();
    const hostile = new HostileKeys();
    let startAfter: string | undefined;
    let truncated = false;
    // Each round either finds a generation not seen before and skips past all its keys, or ends the listing.
    for (let round = 0; ; round++) {
      if (round === this.#maxListed) {
        truncated = true;
        this.#log.warn('stopped listing the generations: more than a listing reads', { key: this.layout.generationsPrefix, rounds: round });
        break;
      }
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
    return { generations: [...found].sort((a, b) => a - b), truncated };
  }

  /** Whether generation g was made by the group (an acceptable claim, else an acceptable head), is there but
   *  refused (objects present, none acceptable), or is absent. Two small GETs at most. */
  async #generation(g: Generation): Promise<GenerationState> {
    const claim = await this.#readSmall(this.#claimDecoder(g), this.claimKey(g));
    if (claim.state === 'ok') return { state: 'valid', found: { generation: g, claim: claim.value, head: null } };
    const head = await this.#readSmall(this.#headDecoder(g), this.headKey(g));
    if (head.state === 'ok') return { state: 'valid', found: { generation: g, claim: null, head: head.value } };
    return claim.state === 'refused' || head.state === 'refused' ? { state: 'refused' } : { state: 'absent' };
  }

  /**
   * The newest generation the group made, from a listing: the listed generations from the top, the first the group
   * made wins. Refused ones (a forged `gen/9007199254740991/`) are passed over, each logged once and shown in the
   * status, and remembered for a while. One call reads at most MAX_UNSIGNED_GENERATIONS of them, then throws
   * GENERATIONS_REFUSED: the work of a call stays bounded, and the next call goes on below the ones it remembers, so
   * junk delays discovery by a few calls but never stops it. Many refused generations (or more than a listing reads)
   * are an alert in the status.
   */
  async #newestListed(): Promise<GenerationFound | null> {
    const { generations: listed, truncated } = await this.#listGenerations();
    const now = Date.now();
    for (const [g, until] of this.#refusedGenerations) if (until <= now) this.#refusedGenerations.delete(g);
    let read = 0;
    let passed = 0;
    const alert = (extra: string): void => {
      this.#refusals.alert(`${passed} generations above the newest one the group made are refused (no claim or head signed by a trusted key)${extra}; `
        + 'someone who can write the bucket but holds no key put them there: remove them (the refused keys are listed below)');
    };
    for (let i = listed.length - 1; i >= 0; i--) {
      const g = listed[i] as Generation;
      if (this.#refusedGenerations.has(g)) {
        passed++;
        continue;
      }
      if (read === MAX_UNSIGNED_GENERATIONS) {
        alert(truncated ? `, and there are more than the ${this.#maxListed} generations a listing reads` : '');
        throw new TwinlayerError('GENERATIONS_REFUSED', `${passed} generations in the bucket (${listed.at(-1)} down to ${listed[i + 1] ?? g}) were not made by the group: no claim or head signed by a trusted key; the next look goes on below them`, {
          key: this.layout.generationsPrefix,
          hint: 'someone who can write the bucket but holds no key put them there; remove them (the refused keys are in the status)',
        });
      }
      read++;
      const st = await this.#generation(g);
      if (st.state === 'valid') {
        if (passed >= MAX_UNSIGNED_GENERATIONS || truncated) alert(truncated ? `, and there are more than the ${this.#maxListed} generations a listing reads` : '');
        else this.#refusals.alert(null);
        return st.found;
      }
      if (st.state === 'absent') this.#refusals.note(this.layout.generationPrefix(g), 'generation', 'listed, but it has neither a claim nor a head');
      if (this.#refusedGenerations.size < this.#maxListed) this.#refusedGenerations.set(g, now + REFUSED_GENERATION_MEMORY_MS);
      passed++;
    }
    if (passed >= MAX_UNSIGNED_GENERATIONS || truncated) alert(truncated ? `, and there are more than the ${this.#maxListed} generations a listing reads` : '');
    else this.#refusals.alert(null);
    return null;
  }

  /** The newest generation the group made (listing the generations), or null when there is none. */
  async newestGeneration(): Promise<Generation | null> {
    return (await this.#newestListed())?.generation ?? null;
  }

  /** The head of generation g, with a conditional GET when `etag` is given. */
  async readHead(g: Generation, etag?: string): Promise<HeadRead> {
    const key = this.headKey(g);
    let res;
    try {
      res = await this.store.getIfNoneMatch(key, etag, MAX_RECORD_BYTES);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) return { status: 'refused', reason: this.#refuse('head', key, `larger than ${MAX_RECORD_BYTES} bytes`).reason };
      throw err;
    }
    if (res.status !== 'ok') return res;
    const r = this.#decode(this.#headDecoder(g), key, res.body);
    return r.ok ? { status: 'ok', head: r.value, etag: res.etag } : { status: 'refused', reason: r.reason };
  }

  async writeHead(head: Head): Promise<void> {
    const key = this.headKey(head.generation);
    const checked = headSchema.safeParse(head);
    if (!checked.success) throw new BucketObjectInvalidError('head', key, zodReason(checked.error));
    await this.store.put(key, this.#encode('head', key, checked.data));
  }

  // ---- the journal -------------------------------------------------------------------------------------------

  /** Writes a commit record. Only after its blob is complete (JournalWriter.publish after uploadBlob). */
  async writeRecord(rec: CommitRecord): Promise<void> {
    const key = this.journalKey(rec.generation, rec.seq);
    const checked = commitRecordSchema.safeParse(rec);
    if (!checked.success) throw new BucketObjectInvalidError('record', key, zodReason(checked.error));
    await this.store.put(key, this.#encode('record', key, checked.data));
  }

  /** The record at seq s; null when missing; BucketObjectInvalidError when it is refused (see #decode). */
  async readRecord(g: Generation, s: Seq): Promise<CommitRecord | null> {
    const key = this.journalKey(g, s);
    const r = await this.#readSmall(this.#recordDecoder(g, s), key);
    if (r.state === 'refused') throw new BucketObjectInvalidError('record', key, r.reason);
    return r.state === 'ok' ? r.value : null;
  }

  #recordDecoder(g: Generation, s: Seq): Decoder<CommitRecord> {
    return {
      kind: 'record',
      schema: commitRecordSchema,
      host: (rec) => rec.writer,
      check: (rec) => (rec.seq === s && rec.generation === g ? null : `names generation ${rec.generation} seq ${rec.seq}, not its key's`),
    };
  }

  async #readItem(g: Generation, s: Seq): Promise<JournalItem> {
    const r = await this.#readSmall(this.#recordDecoder(g, s), this.journalKey(g, s));
    if (r.state === 'absent') return { seq: s, error: 'record listed but missing' };
    return r.state === 'ok' ? { seq: s, record: r.value } : { seq: s, error: `record refused: ${r.reason}` };
  }

  /**
   * Journal items with seq > afterSeq in seq order. The seqs come from parsed key names (all pages of the listing);
   * a missing range yields one error item at its first missing seq, then the listing goes on after it; a record
   * that is refused (unsigned, badly signed, not parsing) yields an error item. Keys outside the layout are ignored
   * and logged, never used.
   *
   * At most `opts.maxKeys` keys past afterSeq are listed (default MAX_LISTED_KEYS; keys that do not parse count too,
   * so junk written by anyone cannot make the listing unbounded): the items cover the keys listed, the rest is for a
   * later listing, and `opts.onTruncated` is called before the first item when keys were left unlisted.
   */
  async *listRecords(g: Generation, afterSeq: number, opts: ListRecordsOptions = {}): AsyncIterable<JournalItem> {
    const after = asSeq(afterSeq);
    const maxKeys = opts.maxKeys ?? MAX_LISTED_KEYS;
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new RangeError(`maxKeys must be an integer >= 1, got ${maxKeys}`);
    const prefix = this.layout.journalPrefix(g);
    const hostile = new HostileKeys();
    const seqs: Seq[] = [];
    let listed = 0;
    let truncated = false;
    for await (const key of this.store.list(prefix, after >= 1 ? this.journalKey(g, after) : undefined)) {
      if (listed >= maxKeys) {
        truncated = true;
        break;
      }
      listed++;
      const s = this.layout.parseJournalKey(g, key);
      if (s === null) hostile.note(key);
      else if (s > after) seqs.push(s);
    }
    hostile.report(this.#log, prefix);
    if (truncated) {
      this.#log.warn('journal listing stopped at its bound', { generation: g, afterSeq: after, maxKeys, prefix });
      opts.onTruncated?.();
    }
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
            ? this.#readItem(g, step.seq)
            : Promise.resolve({ seq: step.seq, error: `missing from the journal: seq ${step.seq}${step.gapTo > step.seq ? `..${step.gapTo}` : ''}`, missingTo: step.gapTo });
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

  // ---- claims and releases -----------------------------------------------------------------------------------

  /**
   * Claims `claim.generation` by creating its claim.json only if it does not exist (If-None-Match: *): of all
   * hosts claiming one generation, exactly one wins. A loser gets the holder's claim, which may be its own from
   * an earlier attempt (a restart between claim and record): compare `holder.host`. Signatures are deterministic
   * (Ed25519), so a retry of a lost answer writes the same bytes and the store recognizes its own write.
   */
  async claimGeneration(claim: Claim): Promise<ClaimOutcome> {
    const key = this.claimKey(claim.generation);
    const checked = claimSchema.safeParse(claim);
    if (!checked.success) throw new BucketObjectInvalidError('claim', key, zodReason(checked.error));
    if (await this.store.putIfAbsent(key, this.#encode('claim', key, checked.data))) return { won: true };
    const holder = await this.#readSmall(this.#claimDecoder(claim.generation), key);
    if (holder.state === 'ok') return { won: false, holder: holder.value };
    // The generation is taken all the same: nothing can replace the object there.
    this.#log.warn('generation taken by an object that is not a claim the group signed', { key, reason: holder.state === 'refused' ? holder.reason : 'gone again' });
    return { won: false, holder: null };
  }

  /** The claim of generation g; null when there is none or it is refused (logged once, in signatureStatus). */
  async readClaim(g: Generation): Promise<Claim | null> {
    const r = await this.#readSmall(this.#claimDecoder(g), this.claimKey(g));
    return r.state === 'ok' ? r.value : null;
  }

  /**
   * The newest generation the group made with its claim (null when it has none: opened by `twinlayer push`); null
   * when the group made none. Lists the generations (one LIST round each, see listGenerations): for start-up and
   * promotion, not for the once-a-second fencing check (nextGeneration).
   */
  async newestClaim(): Promise<{ generation: Generation; claim: Claim | null } | null> {
    const found = await this.#newestListed();
    return found === null ? null : { generation: found.generation, claim: found.claim };
  }

  /**
   * The first generation above g the group made, or null: the self-fencing check of the owner of g. While nothing
   * changed it costs two GETs (404s) of gen/<g+1>/claim.json and head.json.
   *
   * Why probing upward is enough: a promotion claims newest+1, where newest counts claims too (a generation's
   * claim is its first object), and a claim is a create that fails when the key exists. So no claim of g+2 is
   * made before g+1 is taken, and claims are never deleted while a newer generation lives. A LIST is no cheaper:
   * keys sort as text (gen/10 before gen/9), so "after generation g" is not a key range. Junk at g+1 (a bucket
   * writer without a key) is passed over, up to REFUSED_GENERATION_SKIP generations in a row, as claimers pass it.
   */
  async nextGeneration(g: Generation): Promise<GenerationFound | null> {
    let refused = 0;
    for (let n = g + 1; n <= MAX_GENERATION && refused <= REFUSED_GENERATION_SKIP; n++) {
      const st = await this.#generation(n as Generation);
      if (st.state === 'valid') return st.found;
      if (st.state === 'absent') return null;
      refused++;
    }
    return null;
  }

  /**
   * The newest claim above generation `owned`, or null when there is none, probing upward as nextGeneration does
   * (generations opened by a head only are walked past). After CLAIM_WALK_LIMIT steps it lists instead.
   */
  async newerClaim(owned: Generation): Promise<{ generation: Generation; claim: Claim } | null> {
    let newest: { generation: Generation; claim: Claim } | null = null;
    let refused = 0;
    for (let g = owned + 1, steps = 0; g <= MAX_GENERATION; g++, steps++) {
      if (steps === CLAIM_WALK_LIMIT) {
        const listed = await this.newestClaim();
        const above = newest?.generation ?? owned;
        return listed !== null && listed.claim !== null && listed.generation > above ? { generation: listed.generation, claim: listed.claim } : newest;
      }
      const st = await this.#generation(g as Generation);
      if (st.state === 'absent') return newest;
      if (st.state === 'refused') {
        if (++refused > REFUSED_GENERATION_SKIP) return newest;
        continue;
      }
      refused = 0;
      if (st.found.claim !== null) newest = { generation: g as Generation, claim: st.found.claim };
    }
    return newest;
  }

  /** Marks generation g released by its owner (see Release). */
  async putRelease(release: Release): Promise<void> {
    const key = this.layout.releaseKey(release.generation);
    const checked = releaseSchema.safeParse(release);
    if (!checked.success) throw new BucketObjectInvalidError('release', key, zodReason(checked.error));
    await this.store.put(key, this.#encode('release', key, checked.data));
  }

  /** The release of generation g; null when it is not released or the object there is refused. */
  async readRelease(g: Generation): Promise<Release | null> {
    const r = await this.#readSmall(this.#releaseDecoder(g), this.layout.releaseKey(g));
    return r.state === 'ok' ? r.value : null;
  }

  async deleteRelease(g: Generation): Promise<void> {
    await this.store.delete(this.layout.releaseKey(g));
  }

  /**
   * The newest generation the group made at or above `from`, found by probing from+1 upward: two small GETs while
   * nothing changed, however many generations the bucket keeps (listGenerations costs one LIST round per
   * generation). Generations are opened one past the newest their opener saw, so there are no holes to jump but
   * refused ones (see REFUSED_GENERATION_SKIP). `from` itself is returned when nothing newer exists (whether or not
   * it exists); from 0, and after CLAIM_WALK_LIMIT steps, it lists instead.
   */
  async newestGenerationFrom(from: Generation): Promise<Generation> {
    if (from === 0) return (await this.#newestListed())?.generation ?? from;
    let newest = from;
    let refused = 0;
    for (let g = from + 1, steps = 0; g <= MAX_GENERATION; g++, steps++) {
      if (steps === CLAIM_WALK_LIMIT) return Math.max(newest, (await this.#newestListed())?.generation ?? 0) as Generation;
      const st = await this.#generation(g as Generation);
      if (st.state === 'absent') break;
      if (st.state === 'refused') {
        if (++refused > REFUSED_GENERATION_SKIP) break;
        continue;
      }
      refused = 0;
      newest = g as Generation;
    }
    return newest;
  }

  // ---- divergent tails ---------------------------------------------------------------------------------------

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
    await this.store.put(key, this.#encode('divergent', key, checked.data));
    return key;
  }

  /**
   * Every saved divergent tail (of `host` only, when given), in key order. Keys outside the layout are ignored
   * and logged; a record that is refused or disagrees with its key is an error item.
   */
  async listDivergent(host?: string, opts: BoundedListing = {}): Promise<DivergentItem[]> {
    const prefix = host === undefined ? this.layout.divergentPrefix : this.layout.divergentHostPrefix(host);
    const hostile = new HostileKeys();
    const found = new Bounded<{ key: string; parts: DivergentKeyParts }>(opts.max ?? MAX_LISTED_TAILS);
    let stoppedEarly = false;
    for await (const key of this.store.list(prefix)) {
      if (!found.keyListed()) {
        stoppedEarly = true;
        break;
      }
      const parts = this.layout.parseDivergentKey(key);
      if (parts === null || (host !== undefined && parts.host !== host)) hostile.note(key);
      else found.add({ key, parts });
    }
    hostile.report(this.#log, prefix);
    found.report(opts, stoppedEarly);
    const items: DivergentItem[] = [];
    // A few reads in flight at a time; each a small record.
    for (let i = 0; i < found.items.length; i += READ_AHEAD) {
      items.push(...(await Promise.all(found.items.slice(i, i + READ_AHEAD).map((f) => this.#readDivergent(f.key, f.parts)))));
    }
    return items;
  }

  async #readDivergent(key: string, parts: DivergentKeyParts): Promise<DivergentItem> {
    const r = await this.#readSmall<DivergentRecord>({
      kind: 'divergent',
      schema: divergentRecordSchema,
      host: (rec) => rec.host,
      check: (rec) => (rec.host === parts.host && rec.generation === parts.generation && rec.container === parts.container && rec.digest === parts.digest
        ? null
        : `record names host ${rec.host} generation ${rec.generation} container ${rec.container} digest ${rec.digest}, not its key's`),
    }, key);
    if (r.state === 'absent') return { key, error: 'record listed but missing' };
    return r.state === 'ok' ? { key, record: r.value } : { key, error: `divergent record refused: ${r.reason}` };
  }

  // ---- twin specs --------------------------------------------------------------------------------------------

  /**
   * Puts the container's spec.json, the one object of the group every generation's writer replaces. Conditional on
   * the object read right before (If-Match its ETag, If-None-Match when there is none), with `opts.confirmOwner` run
   * between the read and the put: a writer fenced meanwhile stops there, and a put of a writer that was fenced after
   * its read (held up in the network, or retried after a lost answer, past the new owner's own put) fails its
   * condition instead of replacing the new owner's spec, which standbys would wait on for good (no commit of the
   * new owner names it). A failed condition reads again, up to SPEC_PUT_ROUNDS times. The same bytes are not put
   * again.
   */
  async putSpec(name: string, spec: object, opts: { confirmOwner?: () => Promise<void> } = {}): Promise<void> {
    const key = this.specKey(name);
    const body = this.#encode('spec', key, spec);
    for (let round = 1; round <= SPEC_PUT_ROUNDS; round++) {
      let current: Awaited<ReturnType<BlobStore['getIfNoneMatch']>> | null;
      try {
        current = await this.store.getIfNoneMatch(key, undefined, MAX_SPEC_BYTES);
      } catch (err) {
        // Not a spec any writer of ours put (too large to be one): replaced unconditionally, by an owner.
        if (!(err instanceof ObjectTooLargeError)) throw err;
        current = null;
      }
      if (current?.status === 'ok' && current.body.equals(body)) return;
      await opts.confirmOwner?.();
      if (current === null) return this.store.put(key, body);
      // ('unchanged' cannot be: the read named no ETag.)
      const put = current.status === 'ok' ? await this.store.putIfMatch(key, body, current.etag) : current.status === 'missing' ? await this.store.putIfAbsent(key, body) : false;
      if (put) return;
      this.#log.debug('spec.json changed between its read and the put; reading it again', { key, round });
    }
    throw new TwinlayerError('BUCKET_SPEC_CONTENDED', `spec.json changed between its read and the put ${SPEC_PUT_ROUNDS} times in a row: another writer keeps replacing it`, { key });
  }

  /**
   * The JSON spec of a container, its signature checked; undefined when there is none; BucketObjectInvalidError when
   * it is refused (unsigned, badly signed, another container's, not JSON). The caller validates its shape.
   */
  async getSpec(name: string): Promise<unknown> {
    return (await this.getSignedSpec(name))?.spec;
  }

  /** getSpec with the key that signed it: null for an unsigned spec accepted under acceptUnsigned, whose privileged
   *  fields a standby does not honour. */
  async getSignedSpec(name: string): Promise<{ spec: unknown; signer: TrustedKey | null } | undefined> {
    const key = this.specKey(name);
    const r = await this.#readSmall({ kind: 'spec', schema: anySpec, host: () => null, check: () => null }, key, MAX_SPEC_BYTES);
    if (r.state === 'absent') return undefined;
    if (r.state === 'refused') throw new BucketObjectInvalidError('spec', key, r.reason);
    return { spec: r.value, signer: r.signer };
  }

  /** The names of the containers with a spec, sorted: the first `opts.max` (default MAX_LISTED_SPECS) in key order. */
  async listSpecNames(opts: BoundedListing = {}): Promise<string[]> {
    const names = new Bounded<string>(opts.max ?? MAX_LISTED_SPECS);
    const hostile = new HostileKeys();
    let stoppedEarly = false;
    for await (const key of this.store.list(this.layout.specsPrefix)) {
      if (!names.keyListed()) {
        stoppedEarly = true;
        break;
      }
      const name = this.layout.parseSpecKey(key);
      if (name === null) hostile.note(key);
      else names.add(name);
    }
    hostile.report(this.#log, this.layout.specsPrefix);
    names.report(opts, stoppedEarly);
    if (names.more > 0 || stoppedEarly) this.#log.warn('spec listing stopped at its bound', { prefix: this.layout.specsPrefix, shown: names.items.length, more: names.more, atLeast: stoppedEarly });
    return names.items.sort();
  }
}
