// Packs of chunks in the bucket (<base>/packs/sha256/<2 hex>/<64 hex>), as restic keeps its blobs: the chunks of large
// files a commit must upload (those the bucket is not known to hold) are gzip'd one by one and written back to back
// into pack files of about `packBytes`, each uploaded once whole and named by the sha256 of its bytes. A chunk lives
// in one pack; the commit's chunk list (src/changeset/chunk-list.ts) says for each chunk which pack and where, and
// the signed record names the list. Each chunk is a gzip member of its own, so a range of a pack inflates alone and
// `zcat` of a whole pack gives its chunks one after the other. The pack's name needs no check on the standby: every
// chunk read from it is checked against its digest and length, and every file against its digest.
//
// The pusher knows which chunks the bucket holds, and where, from the packs it uploaded, remembered in `cacheFile`
// (one JSON line a pack) across restarts and bounded (oldest forgotten first: that only costs an upload). It does not
// list the bucket: a remembered pack is checked with one HEAD, the first time this process would rely on it, and a
// pack the bucket lacks is forgotten with all its chunks, which are then uploaded again. A chunk is uploaded once
// per commit however many files name it, and a chunk another commit is uploading meanwhile is waited for.
//
// The standby reads chunks with ranged GETs (neighbours coalesced by ChunkSupply), inflates each one into a file of
// its own range and checks it before anything is written to a twin.
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { deflateRawSync, gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { z } from 'zod';
import { maxChunkBytes, maxStoredChunkBytes, type ChunkedFile, type ChunkOut, type ChunkPlace, type ChunkSink, type PackEntry, type PackRange } from '../changeset/index.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { BlobStore, BodyObserver } from './blob-store.js';
import type { DeleteGate } from './delete-gate.js';
import { BlobDigestMismatchError, BlobMissingError } from './errors.js';
import { readStoredMember, storedMemberBytes, writeStoredMember } from './gzip-stored.js';
import type { KeyLayout } from './keys.js';
import { asDigest } from './types.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

export interface PackStoreOptions {
  log?: Logger;
  /** Where the pusher remembers the packs it uploaded (JSON lines). Unset: in memory only (the standby, tests). */
  cacheFile?: string;
  /** Chunks remembered with their place. Default 200,000 (about 25 GiB of chunks; ~40 MB of memory). */
  maxKnown?: number;
  /** A pack is closed and uploaded once it holds this many stored bytes. Default 16 MiB (bench/chunking.ts). */
  packBytes?: number;
  /** Pack uploads in flight at once for one commit. Default 4. */
  concurrency?: number;
  /** Packs held in memory at once (being filled or uploaded) over all builds: the pusher's memory for packs is at most
   *  this times packBytes (plus a chunk each). Default concurrency + 2. */
  maxPacksInMemory?: number;
  /** Downloads of a range whose chunks do not match their digests, before giving up. Default 3. */
  retries?: number;
  /** GC in this process (delete-gate.ts): an upload of a pack it is about to delete rescues it. */
  gate?: DeleteGate;
}

/** What the uploads of this process cost, for status and benchmarks. */
export interface PackUploadStats {
  /** Packs uploaded, the chunks in them and their stored bytes. */
  packs: number;
  uploaded: number;
  uploadedBytes: number;
  /** Chunks a commit named that the bucket was known to hold (not uploaded again). */
  skipped: number;
  /** HEADs of remembered packs. */
  heads: number;
  /** The most packs held in memory at once. */
  peakPacksInMemory: number;
}

/** Whether deflate is worth its time on a chunk (`bytes` long, in `parts`): a sample of 4 KiB from the middle shrinks
 *  by a tenth at level 1. Deflate at level 1 runs at about 40 MB/s on data that does not compress. */
function compresses(parts: readonly Buffer[], bytes: number): boolean {
  const n = Math.min(bytes, 4 * 1024);
  const start = Math.floor((bytes - n) / 2);
  let sample: Buffer | undefined;
  let at = 0;
  for (const p of parts) {
    if (start < at + p.length) {
      // Within one part (nearly always): no copy; across parts: gathered.
      sample = start + n <= at + p.length ? p.subarray(start - at, start - at + n) : Buffer.concat(parts, bytes).subarray(start, start + n);
      break;
    }
    at += p.length;
  }
  return sample !== undefined && deflateRawSync(sample, { level: 1 }).length < n * 0.9;
}

const hex64 = /^[0-9a-f]{64}$/;
const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const cacheLine = z.strictObject({ pack: z.string().regex(hex64), chunks: z.array(z.tuple([z.string().regex(hex64), int, int.min(1)])) });
/** A cache file larger than this is not read (it is ours, and compacted at load: only damage makes it so large). */
const maxCacheFileBytes = 256 * 1024 * 1024;

interface Deferred { promise: Promise<ChunkPlace>; resolve: (p: ChunkPlace) => void; reject: (e: unknown) => void }

function deferred(): Deferred {
  let resolve!: (p: ChunkPlace) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<ChunkPlace>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Only commits that wait for it see a failure; the one that made it throws it itself.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** A pack being filled, in memory: at most packBytes plus a chunk, and at most maxPacksInMemory of them at once over
 *  every build. Written nowhere but the bucket: a pack on disk cost a write and a read of every byte. Its chunks are
 *  framed straight into one buffer of that size (pages only touched as it fills), not gathered and copied at the end. */
class PackWriter {
  readonly entries: Array<readonly [digest: string, offset: number, stored: number]> = [];
  size = 0;
  #buf: Buffer;
  readonly #hash = createHash('sha256');

  constructor(capacity: number) {
    this.#buf = Buffer.allocUnsafe(capacity);
  }

  /** Room for `n` more bytes (a chunk larger than the pack was sized for: the buffer grows to fit it, copying what
   *  it holds; the chunker cuts no chunk that large, so this is for a sink fed by other code). */
  #room(n: number): void {
    if (this.size + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(this.size + n);
    this.#buf.copy(grown, 0, 0, this.size);
    this.#buf = grown;
  }

  #added(digest: string, stored: number): void {
    this.#hash.update(this.#buf.subarray(this.size, this.size + stored));
    this.entries.push([digest, this.size, stored]);
    this.size += stored;
  }

  /** A chunk as it is, as a gzip member of stored blocks (gzip-stored.ts). */
  addStored(digest: string, parts: readonly Buffer[], bytes: number): void {
    this.#room(storedMemberBytes(bytes));
    this.#added(digest, writeStoredMember(parts, bytes, this.#buf, this.size));
  }

  /** A chunk already deflated (a gzip member). */
  addBody(digest: string, body: Buffer): void {
    this.#room(body.length);
    body.copy(this.#buf, this.size);
    this.#added(digest, body.length);
  }

  finish(): { digest: string; body: Buffer } {
    return { digest: this.#hash.digest('hex'), body: this.#buf.subarray(0, this.size) };
  }
}

interface SessionInternals {
  load(): Promise<void>;
  places: Map<string, ChunkPlace>;
  packs: Map<string, true | Promise<boolean>>;
  inFlight: Map<string, Promise<ChunkPlace>>;
  packBytes: number;
  concurrency: number;
  packPresent(pack: string): Promise<boolean>;
  upload(w: PackWriter, digest: string, body: Buffer): Promise<void>;
  /** Marks a remembered chunk as used now (it is forgotten last) and counts it as one the bucket held. */
  touch(digest: string): void;
  /** Takes (waiting its turn) and gives back room for one pack in memory. */
  acquire(): Promise<void>;
  release(): void;
}

/** One build's new chunks: packed as they come, each pack uploaded once full. A chunk added here is claimed (other
 *  builds wait for it rather than uploading it too) until the session's pack holding it is uploaded or abandoned. */
class PackSession implements ChunkSink {
  readonly #s: SessionInternals;
  readonly #claims = new Map<string, Deferred>();
  readonly #uploading = new Set<Promise<void>>();
  #pack: PackWriter | null = null;
  #failure: { err: unknown } | null = null;
  #closed = false;

  constructor(s: SessionInternals) {
    this.#s = s;
  }

  readonly known = async (digest: string): Promise<boolean> => {
    if (this.#claims.has(digest)) return true;
    await this.#s.load();
    if (this.#s.inFlight.has(digest)) return true;
    const place = this.#s.places.get(digest);
    return place !== undefined && this.#s.packPresent(place.pack);
  };

  readonly add = async (digest: string, parts: readonly Buffer[]): Promise<void> => {
    if (this.#closed) throw new Error('chunk sink used after it was finished');
    if (this.#failure !== null) throw this.#failure.err;
    if (this.#claims.has(digest) || this.#s.inFlight.has(digest)) return;
    const claim = deferred();
    this.#claims.set(digest, claim);
    this.#s.inFlight.set(digest, claim.promise);
    const bytes = parts.reduce((n, p) => n + p.length, 0);
    // Data that does not compress is framed as it is, straight into the pack (gzip-stored.ts); the rest is deflated at
    // level 1 into one output buffer the size a stored chunk can reach (zlib's default 16 KiB costs a thread-pool
    // round trip each).
    const body = compresses(parts, bytes)
      ? await gzip(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes), { chunkSize: Math.max(64 * 1024, maxStoredChunkBytes(bytes)), level: 1 })
      : null;
    if (this.#pack === null) {
      // The memory of every build's packs together is bounded: a build waits here for a pack to go out.
      await this.#s.acquire();
      this.#pack = new PackWriter(this.#s.packBytes + maxStoredChunkBytes(maxChunkBytes));
    }
    if (body === null) this.#pack.addStored(digest, parts, bytes);
    else this.#pack.addBody(digest, body);
    if (this.#pack.size >= this.#s.packBytes) await this.#seal();
  };

  async #seal(): Promise<void> {
    const w = this.#pack;
    if (w === null) return;
    this.#pack = null;
    const { digest, body } = w.finish();
    const up = this.#s.upload(w, digest, body).then(() => {
      for (const [d, offset, stored] of w.entries) this.#claims.get(d)?.resolve({ pack: digest, offset, stored });
    }, (err: unknown) => {
      this.#failure ??= { err };
    }).finally(() => {
      this.#uploading.delete(up);
      this.#s.release();
    });
    this.#uploading.add(up);
    // This build's packs in flight are at most `concurrency`.
    while (this.#uploading.size >= this.#s.concurrency) await Promise.race(this.#uploading);
    if (this.#failure !== null) throw this.#failure.err;
  }

  async finish(files: readonly ChunkedFile[]): Promise<Map<string, ChunkPlace>> {
    try {
      await this.#seal();
      await Promise.all(this.#uploading);
      if (this.#failure !== null) throw this.#failure.err;
    } catch (err) {
      await this.abandon();
      throw err;
    }
    this.#closed = true;
    this.#endClaims();
    const places = new Map<string, ChunkPlace>();
    const waits: Array<Promise<void>> = [];
    let lost: Error | null = null;
    for (const f of files) {
      for (const [d] of f.chunks) {
        if (places.has(d) || lost !== null) continue;
        const known = this.#s.places.get(d);
        const pending = this.#claims.get(d)?.promise ?? (known !== undefined && this.#s.packs.get(known.pack) === true ? undefined : this.#s.inFlight.get(d));
        if (pending !== undefined) {
          places.set(d, { pack: '', offset: 0, stored: 0 });
          waits.push(pending.then((p) => void places.set(d, p)));
        } else if (known === undefined) {
          lost = new Error(`chunk ${d} is neither uploaded nor known to be in the bucket (forgotten since the build); the next build adds it`);
        } else {
          places.set(d, known);
          this.#s.touch(d);
          if (this.#s.packs.get(known.pack) !== true) {
            waits.push(this.#s.packPresent(known.pack).then((ok) => {
              if (!ok) throw new Error(`pack ${known.pack} of chunk ${d} is not in the bucket; the next build adds its chunks`);
            }));
          }
        }
      }
    }
    // Every wait settles before this returns or throws: none is left to fail unheard.
    const settled = await Promise.allSettled(waits);
    if (lost !== null) throw lost;
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    return places;
  }

  /** Ends the claims: resolved ones (uploaded) are remembered by the store; the others fail their waiters. */
  #endClaims(): void {
    for (const [d, c] of this.#claims) {
      if (this.#s.inFlight.get(d) === c.promise) this.#s.inFlight.delete(d);
      c.reject(new Error(`chunk ${d} was not uploaded (its build was abandoned)`));
    }
  }

  async abandon(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pack !== null) this.#s.release();
    this.#pack = null;
    await Promise.all(this.#uploading);
    this.#endClaims();
  }
}

export class PackStore {
  readonly #store: BlobStore;
  readonly #layout: KeyLayout;
  readonly #log: Logger;
  readonly #cacheFile: string | undefined;
  readonly #maxKnown: number;
  readonly #packBytes: number;
  readonly #concurrency: number;
  readonly #retries: number;
  readonly #gate: DeleteGate | undefined;
  /** Chunk -> its place, oldest first. */
  readonly #places = new Map<string, ChunkPlace>();
  /** Packs the bucket holds (true: uploaded or HEADed by this process) or a HEAD of it in flight. */
  readonly #packs = new Map<string, true | Promise<boolean>>();
  /** Chunks a commit is packing now: their place once uploaded. */
  readonly #inFlight = new Map<string, Promise<ChunkPlace>>();
  /** Packs in memory now (being filled or uploaded), over every build, and the builds waiting for room. */
  #packsInMemory = 0;
  readonly #maxPacksInMemory: number;
  readonly #waitingForRoom: Array<() => void> = [];
  #loaded: Promise<void> | null = null;
  #appending: Promise<void> = Promise.resolve();
  /** Chunk entries the cache file holds (lines loaded and appended since): past 2 × maxKnown it is rewritten. */
  #fileEntries = 0;
  readonly stats: PackUploadStats = { packs: 0, uploaded: 0, uploadedBytes: 0, skipped: 0, heads: 0, peakPacksInMemory: 0 };

  constructor(store: BlobStore, layout: KeyLayout, opts: PackStoreOptions = {}) {
    this.#store = store;
    this.#layout = layout;
    this.#log = opts.log ?? silentLogger;
    this.#cacheFile = opts.cacheFile;
    this.#maxKnown = opts.maxKnown ?? 200_000;
    this.#packBytes = opts.packBytes ?? 16 * 1024 * 1024;
    this.#concurrency = opts.concurrency ?? 4;
    this.#maxPacksInMemory = opts.maxPacksInMemory ?? this.#concurrency + 2;
    this.#retries = opts.retries ?? 3;
    this.#gate = opts.gate;
    for (const [name, v] of [['maxKnown', this.#maxKnown], ['packBytes', this.#packBytes], ['concurrency', this.#concurrency], ['retries', this.#retries], ['maxPacksInMemory', this.#maxPacksInMemory]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(v)}`);
    }
  }

  /** Whether the bucket holds the chunk, as far as this store knows: a remembered pack not yet relied on by this
   *  process is HEADed first (once); a chunk a build is uploading now counts as held. */
  readonly known = async (digest: string): Promise<boolean> => {
    await this.#load();
    if (this.#inFlight.has(digest)) return true;
    const place = this.#places.get(digest);
    return place !== undefined && this.#packPresent(place.pack);
  };

  /** Takes in places read elsewhere (a promoted standby's chunk index): remembered like the cache's, each pack HEADed
   *  once before it is relied on; a chunk already remembered keeps its place. */
  learn(places: Iterable<readonly [string, ChunkPlace]>): number {
    let n = 0;
    for (const [d, p] of places) {
      if (this.#places.has(d) || !hex64.test(d) || !hex64.test(p.pack)) continue;
      this.#remember(d, { pack: p.pack, offset: p.offset, stored: p.stored });
      n++;
    }
    return n;
  }

  /** Chunks remembered with a place (for status and tests). */
  get size(): number {
    return this.#places.size;
  }

  /** Chunks remembered with a place once the cache file is read: 0 for a pusher that knows nothing of the bucket. */
  async remembered(): Promise<number> {
    await this.#load();
    return this.#places.size;
  }

  /** A sink for one build's new chunks (ChunkingOptions.openSink): they are packed in memory as they come and each
   *  pack is uploaded as soon as it is full, `concurrency` at a time, while the build goes on. */
  readonly openSink = (): ChunkSink => new PackSession(this.#internals());

  /** For PackSession: the store's state and settings. */
  #internals(): SessionInternals {
    return {
      load: () => this.#load(),
      places: this.#places,
      packs: this.#packs,
      inFlight: this.#inFlight,
      packBytes: this.#packBytes,
      concurrency: this.#concurrency,
      packPresent: (pack) => this.#packPresent(pack),
      upload: (w, digest, body) => this.#upload(w, digest, body),
      acquire: () => this.#acquire(),
      release: () => this.#release(),
      touch: (digest) => {
        const p = this.#places.get(digest);
        if (p === undefined) return;
        this.#remember(digest, p);
        this.stats.skipped++;
      },
    };
  }

  async #acquire(): Promise<void> {
    if (this.#packsInMemory < this.#maxPacksInMemory) {
      this.#packsInMemory++;
      this.stats.peakPacksInMemory = Math.max(this.stats.peakPacksInMemory, this.#packsInMemory);
      return;
    }
    // Handed over by #release: the count stays, the room passes to this waiter.
    await new Promise<void>((resolve) => this.#waitingForRoom.push(resolve));
  }

  #release(): void {
    const next = this.#waitingForRoom.shift();
    if (next !== undefined) next();
    else this.#packsInMemory--;
  }

  async #upload(w: PackWriter, digest: string, body: Buffer): Promise<void> {
    await this.#gate?.beforeWrite(this.#layout.packKey(asDigest(digest)));
    // The pack is named by the sha256 of its bytes: the signer takes it rather than hashing the pack again.
    await this.#store.put(this.#layout.packKey(asDigest(digest)), body, { sha256: digest });
    this.#packs.set(digest, true);
    this.stats.packs++;
    this.stats.uploaded += w.entries.length;
    this.stats.uploadedBytes += w.size;
    for (const [d, offset, stored] of w.entries) this.#remember(d, { pack: digest, offset, stored });
    await this.#append({ pack: digest, chunks: w.entries.map(([d, o, st]) => [d, o, st]) });
  }

  /** Whether the bucket holds `pack`: true for a pack this process uploaded or saw; else one HEAD, shared. A pack the
   *  bucket lacks is forgotten with all its chunks. */
  async #packPresent(pack: string): Promise<boolean> {
    const state = this.#packs.get(pack);
    if (state === true) return true;
    if (state !== undefined) return state;
    this.stats.heads++;
    const key = this.#layout.packKey(asDigest(pack));
    const check = this.#store.exists(key).then((present) => {
      if (present) {
        this.#packs.set(pack, true);
      } else {
        this.#packs.delete(pack);
        let forgotten = 0;
        for (const [d, p] of this.#places) {
          if (p.pack !== pack) continue;
          this.#places.delete(d);
          forgotten++;
        }
        this.#log.warn('a remembered pack is not in the bucket; its chunks are uploaded again', { key, chunks: forgotten });
      }
      return present;
    }, (err: unknown) => {
      this.#packs.delete(pack);
      throw err;
    });
    this.#packs.set(pack, check);
    return check;
  }

  /** Forgets packs about to be deleted (GC in this process): later builds upload their chunks again rather than name
   *  them. Returns the chunks forgotten. The cache file keeps them until the next start HEADs and drops them. */
  forgetPacks(packs: Iterable<string>): number {
    const gone = new Set(packs);
    for (const p of gone) this.#packs.delete(p);
    let forgotten = 0;
    for (const [d, p] of this.#places) {
      if (!gone.has(p.pack)) continue;
      this.#places.delete(d);
      forgotten++;
    }
    return forgotten;
  }

  #remember(digest: string, place: ChunkPlace): void {
    this.#places.delete(digest);
    this.#places.set(digest, place);
    while (this.#places.size > this.#maxKnown) {
      const oldest = this.#places.keys().next();
      if (oldest.done === true) break;
      this.#places.delete(oldest.value);
    }
  }

  /** Reads the cache file once; rewrites it when it holds more than is remembered (forgotten or repeated lines). */
  async #load(): Promise<void> {
    this.#loaded ??= this.#loadNow();
    return this.#loaded;
  }

  async #loadNow(): Promise<void> {
    const file = this.#cacheFile;
    if (file === undefined) return;
    let text: string;
    try {
      const fh = await open(file, 'r');
      try {
        if ((await fh.stat()).size > maxCacheFileBytes) {
          // Ours, and rewritten long before it gets here: only damage makes it so large. Started anew.
          this.#log.warn('pack cache larger than it can be; starting without it', { file, maxBytes: maxCacheFileBytes });
          await rm(file, { force: true });
          return;
        }
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') this.#log.warn('pack cache unreadable; starting without it', { file, err });
      return;
    }
    let entries = 0;
    let bad = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let parsed;
      try {
        parsed = cacheLine.safeParse(JSON.parse(line));
      } catch {
        parsed = null;
      }
      if (parsed?.success !== true) {
        bad++;
        continue;
      }
      for (const [d, offset, stored] of parsed.data.chunks) this.#remember(d, { pack: parsed.data.pack, offset, stored });
      entries += parsed.data.chunks.length;
    }
    if (bad > 0) this.#log.warn('pack cache lines skipped (torn or damaged)', { file, lines: bad });
    this.#fileEntries = entries;
    if (entries > this.#places.size || bad > 0) await this.#compact(file);
  }

  async #compact(file: string): Promise<void> {
    const byPack = new Map<string, Array<[string, number, number]>>();
    for (const [d, p] of this.#places) {
      const list = byPack.get(p.pack) ?? [];
      list.push([d, p.offset, p.stored]);
      byPack.set(p.pack, list);
    }
    const text = [...byPack].map(([pack, chunks]) => `${JSON.stringify({ pack, chunks })}\n`).join('');
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeCache(tmp, text);
      await rename(tmp, file);
      this.#fileEntries = this.#places.size;
    } catch (err) {
      this.#log.warn('cannot compact the pack cache', { file, err });
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** One line for a pack uploaded; lines are appended one at a time. A lost line only costs an upload. */
  async #append(line: { pack: string; chunks: Array<readonly [string, number, number]> }): Promise<void> {
    const file = this.#cacheFile;
    if (file === undefined) return;
    const next = this.#appending.then(async () => {
      // After the load: it may rewrite the file (and ends a torn last line that an append would run on from).
      await this.#load();
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      this.#fileEntries += line.chunks.length;
      // A long-running pusher's file would grow without end: past twice what is remembered it is rewritten from memory.
      if (this.#fileEntries > 2 * this.#maxKnown) await this.#compact(file);
      else await appendFile(file, `${JSON.stringify(line)}\n`, { mode: 0o600 });
    }).catch((err: unknown) => this.#log.warn('cannot write the pack cache', { file, err }));
    this.#appending = next;
    await next;
  }

  /**
   * Standby: reads `range` of its pack with one ranged GET and writes its chunks, inflated and each checked against its
   * length and sha256, back to back into `file` (created). See fetchRangeInto.
   */
  async fetchRange(range: PackRange, file: string): Promise<{ status: 'ok' } | { status: 'short'; packSize: number | null }> {
    // Where each entry goes in `file`: a request started again writes the same bytes at the same places.
    const at = new Map<PackEntry, number>();
    let total = 0;
    for (const e of range.entries) {
      at.set(e, total);
      total += e.size;
    }
    const fh = await open(file, 'wx', 0o600);
    let ok = false;
    try {
      const got = await this.fetchRangeInto(range, async (e, bytes) => {
        let w = 0;
        while (w < bytes.length) w += (await fh.write(bytes, w, bytes.length - w, at.get(e)! + w)).bytesWritten;
      });
      if (got.status === 'ok') await fh.truncate(total);
      ok = got.status === 'ok';
      return got;
    } finally {
      await fh.close();
      if (!ok) await rm(file, { force: true });
    }
  }

  /**
   * Standby: reads `range` of its pack with one ranged GET and hands each chunk, inflated and checked against its
   * length and sha256, to `out` as it arrives (the range itself is never written, nor read back). A stored entry that
   * inflates past its chunk's length is cut off there. A mismatch is fetched again, up to `retries` times (`out` is
   * then called again for the entries of the new request), then BlobDigestMismatchError; BlobMissingError when the
   * bucket lacks the pack; `short` when the pack ends before the range (`out` not called).
   */
  async fetchRangeInto(range: PackRange, out: ChunkOut): Promise<{ status: 'ok' } | { status: 'short'; packSize: number | null }> {
    const key = this.#layout.packKey(asDigest(range.pack));
    let bad: Mismatch = { digest: range.entries[0]?.digest ?? '', size: -1, got: { digest: '', size: -1 } };
    for (let attempt = 1; attempt <= this.#retries; attempt++) {
      const inflater = new RangeInflater(range, out);
      const got = await this.#store.observeRange(key, range.start, range.length, inflater);
      if (got.status === 'missing') throw new BlobMissingError(key);
      if (got.status === 'short') return { status: 'short', packSize: got.objectSize };
      const mismatch = inflater.finish();
      if (mismatch === null) return { status: 'ok' };
      bad = mismatch;
      this.#log.warn('a chunk of a pack does not match its digest; fetching again', { key, attempt, chunk: bad.digest, expectedSize: bad.size, size: bad.got.size });
    }
    throw new BlobDigestMismatchError(`${key} (chunk ${bad.digest})`, { digest: bad.digest, size: bad.size }, bad.got, this.#retries);
  }
}

async function writeCache(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const fh = await open(file, 'wx', 0o600);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
}

type Mismatch = { digest: string; size: number; got: { digest: string; size: number } };

/** The chunk `e` inflated from its stored bytes when it matches its length and sha256, else what was found. */
async function inflateEntry(stored: Buffer, bytesRead: number, e: PackEntry): Promise<Buffer | Mismatch> {
  const miss = (digest: string, size = -1): Mismatch => ({ digest: e.digest, size: e.size, got: { digest, size } });
  if (bytesRead !== e.stored) return miss(`(not computed: ${bytesRead} of ${e.stored} stored bytes)`);
  // A chunk the pusher stored as it is is unframed here (no thread-pool round trip, no deflate pass); any other form
  // goes through gunzip, which refuses what is not gzip.
  let bytes = readStoredMember(stored, e.size);
  if (bytes === null) {
    try {
      bytes = await gunzip(stored, { maxOutputLength: e.size, chunkSize: Math.max(64 * 1024, e.size) });
    } catch (err) {
      return miss(`(not computed: ${(err as Error).message})`);
    }
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  return bytes.length === e.size && actual === e.digest ? bytes : miss(actual, bytes.length);
}

/** A range's bytes as they arrive (a BodyObserver): each entry's stored bytes gathered (one chunk's at most), inflated,
 *  checked against its length and digest and handed to `out`; the bytes between entries dropped. A request started
 *  again hands them again from the start. */
class RangeInflater implements BodyObserver {
  readonly #range: PackRange;
  readonly #out: ChunkOut;
  /** Bytes of the range seen, the entry being gathered and its stored bytes so far. */
  #pos = 0;
  #entry = 0;
  #stored: Buffer | null = null;
  #have = 0;
  #mismatch: Mismatch | null = null;

  constructor(range: PackRange, out: ChunkOut) {
    this.#range = range;
    this.#out = out;
  }

  start(): void {
    this.#pos = 0;
    this.#entry = 0;
    this.#stored = null;
    this.#have = 0;
    this.#mismatch = null;
  }

  async chunk(bytes: Buffer): Promise<void> {
    let off = 0;
    while (off < bytes.length && this.#mismatch === null) {
      const e = this.#range.entries[this.#entry];
      if (e === undefined) break;
      const at = e.offset - this.#range.start;
      if (this.#pos < at) {
        const gap = Math.min(at - this.#pos, bytes.length - off);
        this.#pos += gap;
        off += gap;
        continue;
      }
      this.#stored ??= Buffer.allocUnsafe(e.stored);
      const n = Math.min(e.stored - this.#have, bytes.length - off);
      bytes.copy(this.#stored, this.#have, off, off + n);
      this.#have += n;
      this.#pos += n;
      off += n;
      if (this.#have < e.stored) continue;
      const inflated = await inflateEntry(this.#stored, this.#have, e);
      this.#stored = null;
      this.#have = 0;
      this.#entry++;
      if (!Buffer.isBuffer(inflated)) {
        // The rest is not looked at: the range is fetched again.
        this.#mismatch = inflated;
        break;
      }
      await this.#out(e, inflated);
    }
    this.#pos += bytes.length - off;
  }

  /** Null when every entry came and matched, else the first that did not. */
  finish(): Mismatch | null {
    if (this.#mismatch !== null) return this.#mismatch;
    const e = this.#range.entries[this.#entry];
    if (e !== undefined) return { digest: e.digest, size: e.size, got: { digest: `(not computed: ${this.#have} of ${e.stored} stored bytes)`, size: -1 } };
    return null;
  }
}
