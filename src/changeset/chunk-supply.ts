// Standby side: gathers every chunk a commit's chunk list names before the commit is applied. A chunk is taken from
// the twin's upper dir or one of its volumes (the index names tar paths, TreeRoots maps them) when the twin's chunk index (chunk-index.ts) says a file there held it (the previous version
// of the same file, usually) and its bytes there still hash to its digest; any other is downloaded into the commit's
// chunk dir and checked there. The files read are opened before the apply begins and kept open until it ends, so an
// entry of the same commit that replaces one cannot change what is read. Nothing is written to the twin's dirs here;
// assembling (write()) checks the whole file's digest before the caller renames it in.
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangesetRejectedError } from './errors.js';
import type { ChunkedFile, ChunkList } from './chunk-list.js';
import { ancestorsOf } from './paths.js';
import type { TreeRoots } from './tree-roots.js';
import { treeOf } from './volume-paths.js';

/** Downloads the chunk `digest` of `size` bytes into `file`, checked (ChunkStore.fetch). */
export type FetchChunk = (digest: string, size: number, file: string) => Promise<void>;

/** Where a chunk may be in the twin: a file's tar path (in the upper dir or a volume) and the chunk's offset in it. */
export interface ChunkLocation { path: string; offset: number }

export interface SupplyOptions {
  list: ChunkList;
  /** The twin's upper dir and volumes. */
  roots: TreeRoots;
  /** Where the twin's chunk index says a chunk is (a hint: what is read there is checked). */
  locate: (digest: string) => ChunkLocation | undefined;
  fetch: FetchChunk;
  /** Downloads go here (created; removed by close()). */
  dir: string;
  signal?: AbortSignal;
  /** Downloads at once. Default 16. */
  concurrency?: number;
}

export interface SupplyStats { local: number; localBytes: number; fetched: number; fetchedBytes: number }

type Source = { fh: FileHandle; offset: number } | { file: string };

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

export class ChunkSupply {
  readonly #sources = new Map<string, Source>();
  readonly #open: FileHandle[] = [];
  readonly #dir: string;
  readonly stats: SupplyStats = { local: 0, localBytes: 0, fetched: 0, fetchedBytes: 0 };

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** Finds or fetches every chunk of `o.list`. On failure (a chunk missing from the bucket or not matching its digest,
   *  an abort) closes what it opened and removes what it fetched, then throws. */
  static async prepare(o: SupplyOptions): Promise<ChunkSupply> {
    const s = new ChunkSupply(o.dir);
    try {
      await mkdir(o.dir, { recursive: true, mode: 0o700 });
      await s.#prepare(o);
      return s;
    } catch (err) {
      await s.close();
      throw err;
    }
  }

  async #prepare(o: SupplyOptions): Promise<void> {
    const needed = new Map<string, number>();
    for (const f of o.list.files) for (const [d, size] of f.chunks) needed.set(d, size);
    // Local candidates, grouped by file and read in offset order.
    const byPath = new Map<string, Array<{ digest: string; size: number; offset: number }>>();
    for (const [digest, size] of needed) {
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
    const missing = [...needed].filter(([d]) => !this.#sources.has(d));
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < missing.length && !failed; i = next++) {
        o.signal?.throwIfAborted();
        const [digest, size] = missing[i]!;
        const file = join(this.#dir, digest);
        await o.fetch(digest, size, file);
        this.#sources.set(digest, { file });
        this.stats.fetched++;
        this.stats.fetchedBytes += size;
      }
    };
    // Every worker ends before this returns (or throws): close() must not race a download still writing.
    const settled = await Promise.allSettled(Array.from({ length: Math.min(o.concurrency ?? 16, missing.length) }, () => worker().catch((err: unknown) => {
      failed = true;
      throw err;
    })));
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
  }

  /** Writes `f`'s content into `out` from offset 0 and checks the whole file against its digest (ChangesetRejectedError
   *  when the list's chunks do not make the file it names). */
  async write(out: FileHandle, f: ChunkedFile): Promise<void> {
    const whole = createHash('sha256');
    let pos = 0;
    for (const [digest, size] of f.chunks) {
      const src = this.#sources.get(digest);
      if (src === undefined) throw new Error(`chunk ${digest} was not gathered`);
      let buf: Buffer | null;
      if ('fh' in src) {
        buf = await readAt(src.fh, size, src.offset);
      } else {
        const fh = await open(src.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
        try {
          buf = await readAt(fh, size, 0);
        } finally {
          await fh.close();
        }
      }
      // Each chunk was checked when it was gathered (read through a handle held since, or fetched into our own dir);
      // the whole file's digest below checks them again at once.
      if (buf === null) throw new Error(`chunk ${digest} is shorter than ${size} bytes now`);
      whole.update(buf);
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await out.write(buf, off, buf.length - off, pos);
        off += bytesWritten;
        pos += bytesWritten;
      }
    }
    const actual = whole.digest('hex');
    if (actual !== f.digest) throw new ChangesetRejectedError(`the file assembled from its chunks has sha256 ${actual}, the chunk list says ${f.digest}`, { entry: f.path });
  }

  async close(): Promise<void> {
    for (const fh of this.#open.splice(0)) await fh.close().catch(() => undefined);
    await rm(this.#dir, { recursive: true, force: true });
  }
}
