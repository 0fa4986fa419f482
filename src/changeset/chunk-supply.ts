// Standby side: gathers every chunk a commit's chunk list names before the commit is applied. A chunk is taken from
// the twin's upper dir or one of its volumes (the index names tar paths, TreeRoots maps them) when the twin's chunk
// index (chunk-index.ts) says a file there held it (the previous version of the same file, usually) and its bytes
// there still hash to its digest; the others are downloaded from their packs with ranged GETs, neighbours in a pack
// coalesced into one range, each chunk inflated, checked, and written straight to where it belongs: its first place
// in the file being assembled for the listed file that holds it (one file per listed file in the commit's chunk
// dir; a chunk of zeros is left a hole). The files read in the twin are opened before the apply begins and kept open
// until it ends, so an entry of the same commit that replaces one cannot change what is read. Nothing is written to
// the twin's dirs here; take() completes an assembled file, checks the whole file's digest, and only then links it
// to the caller's temp name (which the caller renames in): the bytes fetched are written once and read once more.
import { createHash, type Hash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { link, lstat, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangesetRejectedError } from './errors.js';
import type { ChunkList, ListedFile } from './chunk-list.js';
import { ancestorsOf } from './paths.js';
import type { TreeRoots } from './tree-roots.js';
import { treeOf } from './volume-paths.js';

/** A chunk in a pack: digest, length, offset and stored length in the pack. */
export interface PackEntry { digest: string; size: number; offset: number; stored: number }

/** One ranged read of a pack: bytes [start, start + length), which hold `entries` in offset order. */
export interface PackRange { pack: string; start: number; length: number; entries: PackEntry[] }

/** Takes one fetched chunk: its entry and its bytes, inflated and checked against the entry's digest and length. */
export type ChunkOut = (entry: PackEntry, bytes: Buffer) => Promise<void>;

/** Fetches `range` and hands each of its chunks, inflated and checked against its digest and length, to `out` in
 *  entry order (again from the first when a request is started again). `short` when the pack ends before the range
 *  does (`out` not called); throws when the pack is missing or a chunk does not match (PackStore.fetchRangeInto). */
export type FetchRange = (range: PackRange, out: ChunkOut) => Promise<{ status: 'ok' } | { status: 'short'; packSize: number | null }>;

/** Where a chunk may be in the twin: a file's tar path (in the upper dir or a volume) and the chunk's offset in it. */
export interface ChunkLocation { path: string; offset: number }

export interface SupplyOptions {
  list: ChunkList;
  /** The twin's upper dir and volumes. */
  roots: TreeRoots;
  /** Where the twin's chunk index says a chunk is (a hint: what is read there is checked). */
  locate: (digest: string) => ChunkLocation | undefined;
  /** The packs the list names (ChunkList.packs). */
  packs: readonly string[];
  fetch: FetchRange;
  /** Downloads go here (created; removed by close()). */
  dir: string;
  signal?: AbortSignal;
  /** Ranged GETs at once. Default 8. */
  concurrency?: number;
  /** Chunks of a pack at most this far apart are fetched in one range (the bytes between are read and dropped).
   *  Default 256 KiB: about what one more request costs in time on a link of 100 MB/s. */
  gapBytes?: number;
  /** Longest range. Default 8 MiB. */
  rangeBytes?: number;
}

export interface SupplyStats {
  local: number;
  localBytes: number;
  fetched: number;
  /** Inflated bytes of the chunks fetched. */
  fetchedBytes: number;
  /** Ranged GETs, and the pack bytes they read (stored bytes, gaps between chunks included). */
  ranges: number;
  rangeBytes: number;
  /** ms reading and checking the chunks found in the twin, then fetching the others (performance.now()). */
  localMs: number;
  fetchMs: number;
  /** Ranged GETs run at once (the workers started: at most the concurrency, at most the ranges). */
  workers: number;
  /** ms take() waited, once an assembled file was read back and hashed, for its write-back to reach the disk. */
  flushWaitMs: number;
  /** Assembled files take() copied to their temp name because a link(2) there failed with EXDEV (another mount). */
  copied: number;
}

/** A chunk's bytes: in a file of the twin (held open), or in a file being assembled in the chunk dir. */
type Source = { fh: FileHandle; offset: number } | { file: string; offset: number };

/** `wanted` (of one pack, in offset order; no two overlap: parseChunkList) cut into ranges of neighbours. */
export function coalesce(pack: string, wanted: readonly PackEntry[], gapBytes: number, rangeBytes: number): PackRange[] {
  const out: PackRange[] = [];
  let cur: PackRange | null = null;
  for (const e of wanted) {
    const end = e.offset + e.stored;
    if (cur !== null && e.offset - (cur.start + cur.length) <= gapBytes && end - cur.start <= rangeBytes) {
      cur.length = end - cur.start;
      cur.entries.push(e);
      continue;
    }
    cur = { pack, start: e.offset, length: e.stored, entries: [e] };
    out.push(cur);
  }
  return out;
}

/** Files of the twin kept open at once; chunks of further files are downloaded instead. */
const maxOpenSources = 64;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Opens the regular file at tar path `path` (below the upper dir or a volume of the twin) for reading, through real
 *  directories only and never a symlink; null when anything on the way is not what it should be, or the path is in
 *  no tree of the twin. */
async function openInTwin(roots: TreeRoots, path: string): Promise<FileHandle | null> {
  const t = treeOf(path);
  const base = t.root === 'upper' ? roots.upper : t.root === 'volume' ? roots.volumes.get(t.key) : undefined;
  const rel = t.root === 'volumes' ? '' : t.rel;
  if (base === undefined || rel === '') return null;
  for (const a of ancestorsOf(rel)) {
    const st = await lstat(join(base, a)).catch(() => null);
    if (st === null || !st.isDirectory()) return null;
  }
  let fh: FileHandle;
  try {
    fh = await open(join(base, rel), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch {
    return null;
  }
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    return null;
  }
  return fh;
}

const zeros = Buffer.alloc(64 * 1024);

/** Whether every byte of `buf` is zero (memcmp against a block of zeros, a block at a time). */
export function isZeros(buf: Buffer): boolean {
  for (let off = 0; off < buf.length; off += zeros.length) {
    const n = Math.min(zeros.length, buf.length - off);
    if (!buf.subarray(off, off + n).equals(zeros.subarray(0, n))) return false;
  }
  return true;
}

async function readAt(fh: FileHandle, size: number, offset: number): Promise<Buffer | null> {
  const buf = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const { bytesRead } = await fh.read(buf, got, size - got, offset + got);
    if (bytesRead === 0) return null;
    got += bytesRead;
  }
  return buf;
}

async function writeAt(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off, pos + off)).bytesWritten;
}

/** Bytes take() reads back at once: 1600 reads of 128 KiB chunks (the chunker's average) cost a thread-pool round
 *  trip and a fresh buffer each; 50 reads of 4 MiB into two buffers reused, the next read under way while one is
 *  hashed, do not (206 MB: 190-310 ms → 140-235 ms, hashing alone 120 ms, on the 2-core lab machine). */
const readBlockBytes = 4 * 1024 * 1024;

/** Feeds bytes [start, start + length) of `fh` to `hash`, reading the next block while hashing the one before. */
export async function hashSpan(fh: FileHandle, start: number, length: number, hash: Hash, blocks: [Buffer, Buffer], file = 'the assembled file'): Promise<void> {
  const end = start + length;
  const readBlock = async (at: number, buf: Buffer): Promise<Buffer> => {
    const n = Math.min(buf.length, end - at);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, at + got);
      if (bytesRead === 0) throw new Error(`${file} ends at byte ${at + got}, before ${end}`);
      got += bytesRead;
    }
    return buf.subarray(0, n);
  };
  let i = 0;
  let pos = start;
  let pending = readBlock(pos, blocks[0]);
  while (pos < end) {
    const cur = await pending;
    pos += cur.length;
    i ^= 1;
    // Always settled before the loop goes on or ends: a block read is never left running into a buffer reused.
    if (pos < end) pending = readBlock(pos, blocks[i as 0 | 1]);
    hash.update(cur);
  }
}

/** Copies the assembled file `from` of `f` into `to` (created), a chunk at a time; chunks of zeros are left holes. */
async function copySparse(from: string, to: string, f: ListedFile): Promise<void> {
  const src = await open(from, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const out = await open(to, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      await out.truncate(f.size);
      let pos = 0;
      for (const [, size] of f.chunks) {
        const buf = await readAt(src, size, pos);
        if (buf === null) throw new Error(`${from} ended before ${f.size} bytes`);
        if (!isZeros(buf)) await writeAt(out, buf, pos);
        pos += size;
      }
    } finally {
      await out.close();
    }
  } finally {
    await src.close();
  }
}

export class ChunkSupply {
  readonly #sources = new Map<string, Source>();
  readonly #open: FileHandle[] = [];
  readonly #dir: string;
  /** The file assembled for each listed file. */
  #files = new Map<ListedFile, string>();
  readonly stats: SupplyStats = { local: 0, localBytes: 0, fetched: 0, fetchedBytes: 0, ranges: 0, rangeBytes: 0, localMs: 0, fetchMs: 0, workers: 0, flushWaitMs: 0, copied: 0 };

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** Finds or fetches every chunk of `o.list`. On failure (a pack missing from the bucket or ending before a chunk
   *  the list places in it, a chunk not matching its digest, an abort) closes what it opened and removes what it
   *  fetched, then throws. */
  static async prepare(o: SupplyOptions): Promise<ChunkSupply> {
    const s = new ChunkSupply(o.dir);
    try {
      // A fresh dir: an assembly left by an earlier run may be hard-linked into a twin by now, and writing into it
      // would change the twin's file before any check.
      await rm(o.dir, { recursive: true, force: true });
      await mkdir(o.dir, { recursive: true, mode: 0o700 });
      await s.#prepare(o);
      return s;
    } catch (err) {
      await s.close();
      throw err;
    }
  }

  async #prepare(o: SupplyOptions): Promise<void> {
    const needed = new Map<string, { size: number; pack: number; offset: number; stored: number }>();
    for (const f of o.list.files) for (const [d, size, pack, offset, stored] of f.chunks) needed.set(d, { size, pack, offset, stored });
    const localAt = performance.now();
    // Local candidates, grouped by file and read in offset order.
    const byPath = new Map<string, Array<{ digest: string; size: number; offset: number }>>();
    for (const [digest, { size }] of needed) {
      const at = o.locate(digest);
      if (at === undefined) continue;
      const list = byPath.get(at.path) ?? [];
      list.push({ digest, size, offset: at.offset });
      byPath.set(at.path, list);
    }
    for (const [path, cands] of byPath) {
      if (this.#open.length >= maxOpenSources) break;
      o.signal?.throwIfAborted();
      const fh = await openInTwin(o.roots, path);
      if (fh === null) continue;
      this.#open.push(fh);
      cands.sort((a, b) => a.offset - b.offset);
      for (const c of cands) {
        const buf = await readAt(fh, c.size, c.offset);
        if (buf === null || sha256(buf) !== c.digest) continue;
        this.#sources.set(c.digest, { fh, offset: c.offset });
        this.stats.local++;
        this.stats.localBytes += c.size;
      }
    }
    this.stats.localMs = Math.round(performance.now() - localAt);
    const fetchAt = performance.now();
    // The rest from their packs: per pack in offset order, neighbours in one range.
    const byPack = new Map<number, PackEntry[]>();
    for (const [digest, n] of needed) {
      if (this.#sources.has(digest)) continue;
      const list = byPack.get(n.pack) ?? [];
      list.push({ digest, size: n.size, offset: n.offset, stored: n.stored });
      byPack.set(n.pack, list);
    }
    const ranges: PackRange[] = [];
    for (const [p, entries] of byPack) {
      const pack = o.packs[p];
      if (pack === undefined) throw new ChangesetRejectedError(`chunk list: pack ${p} is not named`, { entry: '<chunk list>' });
      entries.sort((a, b) => a.offset - b.offset);
      ranges.push(...coalesce(pack, entries, o.gapBytes ?? 256 * 1024, o.rangeBytes ?? 8 * 1024 * 1024));
    }
    // Each fetched chunk goes to its first place in the listed files, in the file assembled for it.
    const place = new Map<string, { file: string; offset: number }>();
    o.list.files.forEach((f, i) => {
      let offset = 0;
      for (const [d, size] of f.chunks) {
        if (!this.#sources.has(d) && !place.has(d)) place.set(d, { file: this.#assembly(i), offset });
        offset += size;
      }
    });
    this.#files = new Map(o.list.files.map((f, i) => [f, this.#assembly(i)]));
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      // The range's chunks mostly belong to one file: its handle stays open while they come.
      const out: { file: string | null; fh: FileHandle | null } = { file: null, fh: null };
      try {
        for (let i = next++; i < ranges.length && !failed; i = next++) {
          o.signal?.throwIfAborted();
          const r = ranges[i]!;
          const got = await o.fetch(r, async (e, bytes) => {
            const at = place.get(e.digest);
            if (at === undefined) throw new Error(`chunk ${e.digest} has no place`);
            // Zeros stay a hole: the assembled file gets its full length in take().
            if (isZeros(bytes)) return;
            if (out.file !== at.file) {
              await out.fh?.close();
              out.fh = null;
              out.fh = await open(at.file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
              out.file = at.file;
            }
            await writeAt(out.fh!, bytes, at.offset);
          });
          if (got.status === 'short') {
            throw new ChangesetRejectedError(`chunk list: chunks at bytes ${r.start}-${r.start + r.length - 1} of pack ${r.pack.slice(0, 12)}, which ${got.packSize === null ? 'ends before' : `holds ${got.packSize} bytes`}`, { entry: '<chunk list>' });
          }
          for (const e of r.entries) {
            this.#sources.set(e.digest, place.get(e.digest)!);
            this.stats.fetched++;
            this.stats.fetchedBytes += e.size;
          }
          this.stats.ranges++;
          this.stats.rangeBytes += r.length;
        }
      } finally {
        await out.fh?.close();
      }
    };
    // Every worker ends before this returns (or throws): close() must not race a download still writing.
    this.stats.workers = Math.min(o.concurrency ?? 8, ranges.length);
    const settled = await Promise.allSettled(Array.from({ length: this.stats.workers }, () => worker().catch((err: unknown) => {
      failed = true;
      throw err;
    })));
    this.stats.fetchMs = Math.round(performance.now() - fetchAt);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
  }

  #assembly(index: number): string {
    return join(this.#dir, `file-${index}`);
  }

  /** Makes `f`'s content the file `dest` (a new name, which the caller renames in): completes the file assembled for
   *  it (the fetched chunks are there already; the others are copied from where they were found), checks the whole
   *  file against its digest (ChangesetRejectedError when the list's chunks do not make the file it names; nothing is
   *  made at `dest` then), and links it to `dest` (copied when `dest` is on another file system). A chunk of zeros is
   *  not written but left a hole: a sparse file on the primary (extended with `truncate -s`, a VM image, a database's
   *  preallocated pages) stays sparse in the twin instead of taking its full size on disk. */
  async take(f: ListedFile, dest: string): Promise<void> {
    const own = this.#files.get(f);
    if (own === undefined) throw new Error(`${f.path} is not a file of this chunk list`);
    const whole = createHash('sha256');
    // The two buffers the file is read back into (one read while the other is hashed): this call's own, so two
    // takes under way at once cannot fill each other's.
    let blocks: [Buffer, Buffer] | null = null;
    const spanHashed = (span: { start: number; length: number }): Promise<void> =>
      hashSpan(fh, span.start, span.length, whole, blocks ??= [Buffer.allocUnsafe(readBlockBytes), Buffer.allocUnsafe(readBlockBytes)], `${own} (assembled for ${f.path})`);
    const fh = await open(own, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
    // Reads of chunks placed in another assembled file keep its handle open while they come from it.
    const other: { file: string | null; fh: FileHandle | null } = { file: null, fh: null };
    // The write-back of what the gather wrote starts now, on a thread of the pool, while the file is read back and
    // hashed below: the fsync before the commit is recorded (CommitSync) then finds little left to write. It only
    // flushes a temp file outside the twin's dirs; the crash rules are unchanged (renamed in later, synced again,
    // recorded after). Its failure (EIO, ENOSPC) fails the commit before anything is renamed in.
    let flushing: Promise<unknown> | null = null;
    try {
      // Its full length first: a chunk left a hole at the end reads as zeros, not as the end of the file.
      await fh.truncate(f.size);
      flushing = fh.datasync().then(() => null, (err: unknown) => err);
      let pos = 0;
      // Chunks fetched to their own place in this file, back to back: read back in large blocks, not chunk by chunk.
      let span = { start: 0, length: 0 };
      for (const [digest, size] of f.chunks) {
        const src = this.#sources.get(digest);
        if (src === undefined) throw new Error(`chunk ${digest} was not gathered`);
        if (!('fh' in src) && src.file === own && src.offset === pos) {
          if (span.length === 0) span = { start: pos, length: 0 };
          span.length += size;
          pos += size;
          continue;
        }
        if (span.length > 0) await spanHashed(span);
        span = { start: 0, length: 0 };
        let buf: Buffer | null;
        if ('fh' in src) {
          buf = await readAt(src.fh, size, src.offset);
        } else if (src.file === own) {
          buf = await readAt(fh, size, src.offset);
        } else {
          if (other.fh === null || other.file !== src.file) {
            await other.fh?.close();
            other.fh = null;
            other.fh = await open(src.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
            other.file = src.file;
          }
          buf = await readAt(other.fh, size, src.offset);
        }
        // Each chunk was checked when it was gathered (read through a handle held since, or fetched into our own dir);
        // the whole file's digest below checks them again at once.
        if (buf === null) throw new Error(`chunk ${digest} is shorter than ${size} bytes now`);
        whole.update(buf);
        if (!isZeros(buf)) await writeAt(fh, buf, pos);
        pos += size;
      }
      if (span.length > 0) await spanHashed(span);
      const actual = whole.digest('hex');
      if (actual !== f.digest) throw new ChangesetRejectedError(`the file assembled from its chunks has sha256 ${actual}, the chunk list says ${f.digest}`, { entry: f.path });
      if (pos !== f.size) throw new ChangesetRejectedError(`the chunks of the file make ${pos} bytes, the chunk list says ${f.size}`, { entry: f.path });
      const waitAt = performance.now();
      const flushed = await flushing;
      flushing = null;
      this.stats.flushWaitMs += Math.round(performance.now() - waitAt);
      if (flushed !== null) throw new Error(`${own}: writing back the assembled file failed: ${(flushed as Error).message}`, { cause: flushed });
    } finally {
      // Never close the handle under a flush still running on it.
      await flushing;
      await other.fh?.close();
      await fh.close();
    }
    try {
      // The assembled file stays in the chunk dir (another file's chunk may be read from it) until close().
      await link(own, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      this.stats.copied++;
      await copySparse(own, dest, f);
    }
  }

  async close(): Promise<void> {
    for (const fh of this.#open.splice(0)) await fh.close().catch(() => undefined);
    await rm(this.#dir, { recursive: true, force: true });
  }
}
