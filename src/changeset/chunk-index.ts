// Standby side: what the standby knows of the chunked files in one twin's upper dir — for each path staged from a
// chunk list, that list — so the next version of a file is assembled from the chunks its previous version holds
// (chunk-supply.ts). Kept in the puller's state dir, one JSON file per container, tied to the twin's id. It is only a
// hint: every chunk read through it is checked against its digest, so a stale or lost index costs downloads, never
// a wrong byte; a path a later commit replaced or removed stays until the next full commit resets the index.
// It also keeps where the lists placed each chunk (pack, offset, stored length): when this standby is promoted, its
// pusher learns from it which chunks the bucket holds (places()), so its first full commit uploads none of them.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { ChangesetKind } from './built-changeset.js';
import type { ChunkList, ChunkPlace } from './chunk-list.js';
import type { ChunkLocation } from './chunk-supply.js';

const hex64 = /^[0-9a-f]{64}$/;
const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const indexSchema = z.strictObject({
  version: z.literal(2),
  twinId: z.string(),
  packs: z.array(z.string().regex(hex64)),
  files: z.record(z.string(), z.strictObject({
    digest: z.string().regex(hex64),
    // [digest, size, pack (index into packs), offset, stored]
    chunks: z.array(z.tuple([z.string().regex(hex64), int.min(1), int, int, int.min(1)])),
  })),
});

/** The index file of container `name`'s twin in `dir` (the puller's chunk-index dir). */
export function chunkIndexFile(dir: string, name: string): string {
  return join(dir, `${name}.json`);
}

type Placed = readonly [digest: string, size: number, place: ChunkPlace];

/** Chunks remembered over all paths; the oldest paths are forgotten beyond it (that only costs downloads). */
const maxIndexedChunks = 1_000_000;

export class ChunkIndex {
  readonly #file: string;
  readonly #twinId: string;
  /** Path -> its file's digest and chunks, oldest first. */
  #files = new Map<string, { digest: string; chunks: Placed[] }>();
  #where: Map<string, ChunkLocation> | null = null;

  private constructor(file: string, twinId: string) {
    this.#file = file;
    this.#twinId = twinId;
  }

  /** The index kept in `file` for the twin `twinId`; empty when there is none, it does not parse, or it describes
   *  another twin. */
  static async load(file: string, twinId: string): Promise<ChunkIndex> {
    const index = new ChunkIndex(file, twinId);
    const text = await readFile(file, 'utf8').catch(() => null);
    if (text === null) return index;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return index;
    }
    const parsed = indexSchema.safeParse(json);
    if (!parsed.success || parsed.data.twinId !== twinId) return index;
    const packs = parsed.data.packs;
    for (const [path, f] of Object.entries(parsed.data.files)) {
      const chunks: Placed[] = [];
      for (const [d, size, p, offset, stored] of f.chunks) {
        const pack = packs[p];
        if (pack === undefined) return new ChunkIndex(file, twinId);
        chunks.push([d, size, { pack, offset, stored }]);
      }
      index.#files.set(path, { digest: f.digest, chunks });
    }
    return index;
  }

  get size(): number {
    return this.#files.size;
  }

  /** Where a chunk is, by the index: the first path holding it and its offset there. */
  readonly locate = (digest: string): ChunkLocation | undefined => {
    if (this.#where === null) {
      const where = new Map<string, ChunkLocation>();
      for (const [path, f] of this.#files) {
        let offset = 0;
        for (const [d, size] of f.chunks) {
          if (!where.has(d)) where.set(d, { path, offset });
          offset += size;
        }
      }
      this.#where = where;
    }
    return this.#where.get(digest);
  };

  /** Takes in the files a staged commit wrote from its chunk list; a full commit's list replaces the index. */
  adopt(list: ChunkList | null, kind: ChangesetKind): void {
    if (kind === 'full') this.#files = new Map();
    for (const f of list?.files ?? []) {
      this.#files.delete(f.path);
      this.#files.set(f.path, { digest: f.digest, chunks: f.chunks.map(([d, size, p, offset, stored]): Placed => [d, size, { pack: list?.packs[p] ?? '', offset, stored }]) });
    }
    let total = 0;
    for (const f of this.#files.values()) total += f.chunks.length;
    for (const [path, f] of this.#files) {
      if (total <= maxIndexedChunks) break;
      this.#files.delete(path);
      total -= f.chunks.length;
    }
    this.#where = null;
  }

  /** Every chunk the index knows, with where the lists placed it (each digest once). */
  *places(): Iterable<readonly [string, ChunkPlace]> {
    const seen = new Set<string>();
    for (const f of this.#files.values()) {
      for (const [d, , place] of f.chunks) {
        if (seen.has(d)) continue;
        seen.add(d);
        yield [d, place];
      }
    }
  }

  /** Writes the index (temp file and rename: a crash leaves the old one or the new one). */
  async save(): Promise<void> {
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 });
    const packs: string[] = [];
    const packIndex = new Map<string, number>();
    const files: Record<string, { digest: string; chunks: Array<readonly [string, number, number, number, number]> }> = {};
    for (const [path, f] of this.#files) {
      files[path] = {
        digest: f.digest,
        chunks: f.chunks.map(([d, size, p]) => {
          let i = packIndex.get(p.pack);
          if (i === undefined) {
            i = packs.length;
            packs.push(p.pack);
            packIndex.set(p.pack, i);
          }
          return [d, size, i, p.offset, p.stored] as const;
        }),
      };
    }
    const tmp = `${this.#file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify({ version: 2, twinId: this.#twinId, packs, files }), { mode: 0o600 });
      await rename(tmp, this.#file);
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
