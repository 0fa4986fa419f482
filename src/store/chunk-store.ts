// Chunks of large files in the bucket (<base>/chunks/sha256/<2 hex>/<64 hex>): each stored once, gzip'd, named by
// the sha256 of its uncompressed bytes, so the same bytes in any file of any container are one object. Blobs need
// no signature: the signed record names the chunk list, whose digest covers every chunk's digest and length.
//
// Uploading: a chunk this process uploaded or saw in the bucket is known and costs nothing; any other costs a HEAD
// (a few hundredths of a cent per thousand) before its upload, so a chunk another container or an earlier run
// stored is never sent twice. The known set is bounded (oldest forgotten first): forgetting only costs a HEAD.
// A chunk that disappears from the bucket (nothing deletes chunks yet; GC must keep every chunk a retained record's
// list names) would make the commits naming it unstageable.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { deflateRawSync, gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { silentLogger, type Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { BlobDigestMismatchError, BlobMissingError } from './errors.js';
import type { KeyLayout } from './keys.js';
import { asDigest } from './types.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

export interface ChunkStoreOptions {
  log?: Logger;
  /** Digests remembered as present in the bucket. Default 200,000 (about 25 GiB of chunks; ~20 MB of memory). */
  maxKnown?: number;
  /** Downloads of a chunk that does not match its digest, before giving up. Default 3. */
  retries?: number;
  /** Chunk uploads (each a HEAD and maybe a PUT) in flight at once for one commit. Default 16: chunks are small
   *  requests, bound by round trips rather than bandwidth. */
  concurrency?: number;
}

/** HEADs of a commit's first unknown chunks; when every one of them is missing, the rest of the commit's chunks are
 *  sent without a HEAD (new data: a HEAD per chunk would double the requests for nothing). */
const probeHeads = 8;

/** What the uploads of this process cost, for status and benchmarks. */
export interface ChunkUploadStats {
  heads: number;
  uploaded: number;
  /** Stored (gzip) bytes sent. */
  uploadedBytes: number;
  /** Chunks not sent because the bucket had them (HEAD) or they were known. */
  skipped: number;
}

/** The most a stored chunk of `size` bytes may take: gzip's framing and deflate's stored blocks on data that does not
 *  compress (5 bytes each 16 KiB at level 1 worst case), with room to spare. */
export function maxStoredChunkBytes(size: number): number {
  return size + Math.ceil(size / 1024) + 1024;
}

/** Whether deflate is worth its time on `bytes`: a sample of 16 KiB from the middle shrinks by a tenth at level 1.
 *  Deflate at level 1 runs at about 40 MB/s on data that does not compress; level 0 only frames it. */
function compresses(bytes: Buffer): boolean {
  const n = Math.min(bytes.length, 16 * 1024);
  const start = Math.floor((bytes.length - n) / 2);
  return deflateRawSync(bytes.subarray(start, start + n), { level: 1 }).length < n * 0.9;
}

export class ChunkStore {
  readonly #store: BlobStore;
  readonly #layout: KeyLayout;
  readonly #log: Logger;
  readonly #maxKnown: number;
  readonly #retries: number;
  readonly #concurrency: number;
  readonly #known = new Set<string>();
  readonly #inFlight = new Map<string, Promise<'found' | 'sent'>>();
  readonly stats: ChunkUploadStats = { heads: 0, uploaded: 0, uploadedBytes: 0, skipped: 0 };

  constructor(store: BlobStore, layout: KeyLayout, opts: ChunkStoreOptions = {}) {
    this.#store = store;
    this.#layout = layout;
    this.#log = opts.log ?? silentLogger;
    this.#maxKnown = opts.maxKnown ?? 200_000;
    this.#retries = opts.retries ?? 3;
    this.#concurrency = opts.concurrency ?? 16;
  }

  /**
   * Makes sure the bucket holds every chunk of `spool` (digest -> file of its bytes), `concurrency` at a time. The first
   * chunks not known go through a HEAD; when all of those were missing, the others are sent without one (a chunk
   * sent twice is the same object: only bandwidth is lost, and only when new data happens to repeat old).
   */
  async ensureAll(spool: Iterable<readonly [string, string]>): Promise<void> {
    const todo = [...spool].filter(([d]) => {
      if (!this.#known.has(d)) return true;
      this.stats.skipped++;
      return false;
    });
    // The probe ends before the rest starts: its answers decide whether the rest is HEADed.
    const probe = await this.#pool(todo.slice(0, probeHeads), true);
    await this.#pool(todo.slice(probeHeads), probe.includes('found'));
  }

  /** Ensures `items`, `concurrency` at a time; every one ends before this returns (or throws the first failure). */
  async #pool(items: ReadonlyArray<readonly [string, string]>, head: boolean): Promise<Array<'known' | 'found' | 'sent'>> {
    const out: Array<'known' | 'found' | 'sent'> = [];
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < items.length && !failed; i = next++) {
        const [d, file] = items[i]!;
        try {
          out[i] = await this.ensure(d, file, head);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    const settled = await Promise.allSettled(Array.from({ length: Math.min(this.#concurrency, items.length) }, worker));
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    return out;
  }

  /** Whether the bucket is known to hold the chunk (no request). */
  readonly known = (digest: string): boolean => this.#known.has(digest);

  #remember(digest: string): void {
    this.#known.delete(digest);
    this.#known.add(digest);
    while (this.#known.size > this.#maxKnown) {
      const oldest = this.#known.values().next();
      if (oldest.done === true) break;
      this.#known.delete(oldest.value);
    }
  }

  /** Makes sure the bucket holds the chunk `digest`, whose bytes are the file `file`: nothing when known, else a HEAD,
   *  and an upload when the bucket lacks it. Concurrent calls for one digest share one upload. */
  async ensure(digest: string, file: string, head = true): Promise<'known' | 'found' | 'sent'> {
    if (this.#known.has(digest)) {
      this.stats.skipped++;
      return 'known';
    }
    const running = this.#inFlight.get(digest);
    if (running !== undefined) return running;
    const p = this.#ensureNow(digest, file, head).finally(() => this.#inFlight.delete(digest));
    this.#inFlight.set(digest, p);
    return p;
  }

  async #ensureNow(digest: string, file: string, head: boolean): Promise<'found' | 'sent'> {
    const key = this.#layout.chunkKey(asDigest(digest));
    if (head) {
      this.stats.heads++;
      if (await this.#store.exists(key)) {
        this.stats.skipped++;
        this.#remember(digest);
        return 'found';
      }
    }
    const bytes = await readFile(file);
    const body = await gzip(bytes, { level: compresses(bytes) ? 1 : 0 });
    await this.#store.put(key, body);
    this.stats.uploaded++;
    this.stats.uploadedBytes += body.length;
    this.#remember(digest);
    return 'sent';
  }

  /**
   * Downloads the chunk `digest` of `size` bytes into `file` (created, never replaced), after checking its length and
   * sha256; a stored object larger than a chunk of `size` can be is not read into memory, one that inflates past `size`
   * is cut off there. A mismatch is fetched again, up to `retries` times, then BlobDigestMismatchError; BlobMissingError
   * when the bucket lacks it.
   */
  async fetch(digest: string, size: number, file: string): Promise<void> {
    const key = this.#layout.chunkKey(asDigest(digest));
    let got = { digest: '', size: -1 };
    const tmp = `${file}.gz-${randomBytes(6).toString('hex')}`;
    for (let attempt = 1; attempt <= this.#retries; attempt++) {
      // Streamed to a file with the blob's long request timeout (a chunk is up to a megabyte: the small-object
      // timeout would fail it on a slow link), then read back only when its size fits a chunk of `size` bytes.
      let stored: Buffer | null = null;
      try {
        if (!(await this.#store.getToFile(key, tmp))) throw new BlobMissingError(key);
        const storedSize = (await stat(tmp)).size;
        if (storedSize <= maxStoredChunkBytes(size)) stored = await readFile(tmp);
        else got = { digest: `(not computed: ${storedSize} bytes stored)`, size: -1 };
      } finally {
        await rm(tmp, { force: true });
      }
      if (stored !== null) {
        let bytes: Buffer | null = null;
        try {
          bytes = await gunzip(stored, { maxOutputLength: size });
        } catch (err) {
          got = { digest: `(not computed: ${(err as Error).message})`, size: -1 };
        }
        if (bytes !== null) {
          const actual = createHash('sha256').update(bytes).digest('hex');
          if (bytes.length === size && actual === digest) {
            await writeFile(file, bytes, { flag: 'wx', mode: 0o600 });
            return;
          }
          got = { digest: actual, size: bytes.length };
        }
      }
      this.#log.warn('chunk does not match its digest; fetching again', { key, attempt, expectedSize: size, size: got.size });
    }
    throw new BlobDigestMismatchError(key, { digest, size }, got, this.#retries);
  }
}
