// The chunk list of a commit: for each file of the changeset shipped in chunks (larger than the pusher's threshold),
// its size, its sha256 and its content-defined chunks (chunker.ts) in order, each a digest, a length and where it is
// stored: a pack (an object of packs/, named by the sha256 of its bytes, that holds chunks back to back, each one a
// gzip member of its own) and the chunk's offset and stored length in it. The tar carries such a file as an empty
// body with a PAX record naming its digest (tar-format.ts `TWINLAYER.chunked`); the list is its own content-addressed
// blob (gzip of JSON, one chunk a line), named by the signed commit record, which also declares its totals: the
// record's signature covers the list's digest, the list covers every chunk's digest, length and place.
// Read on the standby it is untrusted: the record's totals are bounded before the list is fetched, the list is held
// to them and to itself while it is parsed (places inside a bounded pack, no two chunks of a pack overlapping, one
// length and one place per digest), and nothing is fetched or written before it passes.
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { ChangesetRejectedError } from './errors.js';
import type { Limits } from './limits.js';
import { comparePaths } from './paths.js';

const gunzip = promisify(gunzipCb);

/** A chunk: its sha256 (64 lowercase hex) and its length in bytes. */
export type ChunkRef = readonly [digest: string, size: number];

/** A chunk as the list names it: digest, length, the pack it is in (an index into ChunkList.packs), and its offset and
 *  stored (gzip) length there. */
export type PackedChunk = readonly [digest: string, size: number, pack: number, offset: number, stored: number];

/** A file to ship in chunks, as the pusher cut it (before the chunks have a place). */
export interface ChunkedFile {
  /** The entry's path in the changeset (relative, as in the tar). */
  path: string;
  size: number;
  /** sha256 of the whole file. */
  digest: string;
  chunks: ChunkRef[];
}

/** A file of a chunk list: its chunks placed in packs. */
export interface ListedFile {
  path: string;
  size: number;
  digest: string;
  chunks: PackedChunk[];
}

export interface ChunkList {
  version: 2;
  /** The packs the chunks are in (sha256 of each pack's bytes), each named once. */
  packs: string[];
  /** In tar order (byte order of the paths), one per chunked entry. */
  files: ListedFile[];
}

/** Where a chunk is stored: its pack and its offset and stored length there. */
export interface ChunkPlace { pack: string; offset: number; stored: number }

/** What the commit record declares of its chunk list: checked before the list is fetched. */
export interface ChunkListDeclared {
  /** Stored (gzip) bytes of the list blob. */
  size: number;
  files: number;
  /** Chunks named, over all files (a chunk named twice counts twice). */
  count: number;
  /** Bytes of the files assembled from chunks. */
  bytes: number;
}

/** The most a stored chunk of `size` bytes may take: gzip's framing and deflate's stored blocks on data that does not
 *  compress (5 bytes each 16 KiB at level 1 worst case), with room to spare. */
export function maxStoredChunkBytes(size: number): number {
  return size + Math.ceil(size / 1024) + 1024;
}

const hex64 = /^[0-9a-f]{64}$/;
const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const listSchema = z.strictObject({
  version: z.literal(2),
  packs: z.array(z.string().regex(hex64)),
  files: z.array(z.strictObject({
    path: z.string().min(1).max(8192),
    size: int,
    digest: z.string().regex(hex64),
    chunks: z.array(z.tuple([z.string().regex(hex64), int.min(1), int, int, int.min(1)])),
  })),
});

export function summarize(list: { files: ReadonlyArray<{ size: number; chunks: readonly unknown[] }> }): Omit<ChunkListDeclared, 'size'> {
  let count = 0;
  let bytes = 0;
  for (const f of list.files) {
    count += f.chunks.length;
    bytes += f.size;
  }
  return { files: list.files.length, count, bytes };
}

/** The list of `files` with each chunk placed where `place` says (every chunk must have a place); packs are named in
 *  the order their first chunk appears. */
export function placeChunks(files: readonly ChunkedFile[], place: (digest: string) => ChunkPlace | undefined): ChunkList {
  const packs: string[] = [];
  const packIndex = new Map<string, number>();
  const out = files.map((f): ListedFile => ({
    path: f.path,
    size: f.size,
    digest: f.digest,
    chunks: f.chunks.map(([d, size]): PackedChunk => {
      const p = place(d);
      if (p === undefined) throw new Error(`chunk ${d} of ${f.path} has no place in a pack`);
      let i = packIndex.get(p.pack);
      if (i === undefined) {
        i = packs.length;
        packs.push(p.pack);
        packIndex.set(p.pack, i);
      }
      return [d, size, i, p.offset, p.stored];
    }),
  }));
  return { version: 2, packs, files: out };
}

/** The stored form: gzip of the JSON, one pack a line, one file header a line and one chunk a line, so `zcat` shows it
 *  readably. Deterministic: the same list gives the same bytes (gzip mtime 0). */
export function encodeChunkList(list: ChunkList): Buffer {
  const lines: string[] = ['{"version":2,"packs":['];
  list.packs.forEach((p, i) => lines.push(`"${p}"${i < list.packs.length - 1 ? ',' : ''}`));
  lines.push('],"files":[');
  list.files.forEach((f, i) => {
    lines.push(`{"path":${JSON.stringify(f.path)},"size":${f.size},"digest":"${f.digest}","chunks":[`);
    f.chunks.forEach(([d, s, p, o, st], j) => lines.push(`["${d}",${s},${p},${o},${st}]${j < f.chunks.length - 1 ? ',' : ''}`));
    lines.push(`]}${i < list.files.length - 1 ? ',' : ''}`);
  });
  lines.push(']}');
  return gzipSync(Buffer.from(lines.join('\n') + '\n'), { level: 6 });
}

/** Why a chunk list declaring this is refused without being fetched, or null. */
export function chunkListProblem(d: ChunkListDeclared, limits: Limits): string | null {
  if (d.count > limits.maxChunks) return `the record declares ${d.count} chunks; the limit is ${limits.maxChunks}`;
  if (d.size > limits.maxChunkListBytes) return `the record declares a chunk list of ${d.size} bytes; the limit is ${limits.maxChunkListBytes}`;
  if (d.files > limits.maxEntries) return `the record declares ${d.files} chunked files; the limit is ${limits.maxEntries}`;
  if (d.bytes > limits.maxTotalBytes) return `the record declares ${d.bytes} bytes of chunked files; the limit is ${limits.maxTotalBytes}`;
  if (d.count > 0 && d.bytes > d.count * limits.maxChunkBytes) return `the record declares ${d.bytes} bytes in ${d.count} chunks of at most ${limits.maxChunkBytes}`;
  if (d.files > d.count && d.bytes > 0) return `the record declares ${d.files} chunked files but only ${d.count} chunks`;
  return null;
}

function reject(message: string, entry = '<chunk list>'): never {
  throw new ChangesetRejectedError(`chunk list: ${message}`, { entry });
}

const short = (d: string): string => d.slice(0, 12);

/**
 * Parses a stored chunk list (gzip of JSON) and holds it to what the record declared and to `limits`: sizes that add
 * up per file and in total, no chunk larger than maxChunkBytes, no digest named with two lengths or two places, paths
 * in strictly increasing order, packs named once each and used, every chunk's place inside maxPackBytes with a stored
 * length a chunk of its size can have, and no two chunks of a pack overlapping. Throws ChangesetRejectedError; the
 * caller checked `declared` with chunkListProblem first.
 */
export async function parseChunkList(stored: Buffer, declared: ChunkListDeclared, limits: Limits): Promise<ChunkList> {
  if (stored.length !== declared.size) reject(`${stored.length} bytes stored, the record declares ${declared.size}`);
  let text: Buffer;
  try {
    text = await gunzip(stored, { maxOutputLength: limits.maxChunkListBytes });
  } catch (err) {
    reject(`not a gzip stream of at most ${limits.maxChunkListBytes} bytes: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch (err) {
    reject(`not JSON: ${(err as Error).message}`);
  }
  const parsed = listSchema.safeParse(json);
  if (!parsed.success) reject(`does not parse: ${parsed.error.issues.slice(0, 2).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const list = parsed.data as ChunkList;
  if (list.files.length !== declared.files) reject(`${list.files.length} files, the record declares ${declared.files}`);
  if (list.packs.length > declared.count) reject(`${list.packs.length} packs for ${declared.count} chunks`);
  if (new Set(list.packs).size !== list.packs.length) reject('a pack named twice');
  /** digest -> its length and place, as first named. */
  const seen = new Map<string, PackedChunk>();
  /** Per pack: [offset, stored, digest] of each distinct chunk. */
  const extents: Array<Array<readonly [number, number, string]>> = list.packs.map(() => []);
  let count = 0;
  let bytes = 0;
  let prev: string | null = null;
  for (const f of list.files) {
    if (prev !== null && comparePaths(prev, f.path) >= 0) reject('files out of order or repeated', f.path);
    prev = f.path;
    let sum = 0;
    for (const c of f.chunks) {
      const [d, s, p, o, st] = c;
      if (s > limits.maxChunkBytes) reject(`a chunk of ${s} bytes; the limit is ${limits.maxChunkBytes}`, f.path);
      const known = seen.get(d);
      if (known !== undefined) {
        if (known[1] !== s) reject(`chunk ${short(d)} named with lengths ${known[1]} and ${s}`, f.path);
        if (known[2] !== p || known[3] !== o || known[4] !== st) reject(`chunk ${short(d)} placed at two places`, f.path);
      } else {
        if (p >= list.packs.length) reject(`chunk ${short(d)} is in pack ${p}; the list names ${list.packs.length}`, f.path);
        if (st > maxStoredChunkBytes(s)) reject(`chunk ${short(d)} of ${s} bytes stored in ${st}; at most ${maxStoredChunkBytes(s)} can be`, f.path);
        if (o + st > limits.maxPackBytes) reject(`chunk ${short(d)} at bytes ${o}+${st} of its pack; packs hold at most ${limits.maxPackBytes}`, f.path);
        seen.set(d, c);
        extents[p]!.push([o, st, d]);
      }
      sum += s;
    }
    if (sum !== f.size) reject(`chunks add up to ${sum} bytes, the file has ${f.size}`, f.path);
    count += f.chunks.length;
    bytes += f.size;
    if (count > declared.count || count > limits.maxChunks) reject(`more chunks than the ${declared.count} the record declares`, f.path);
    if (bytes > declared.bytes) reject(`more bytes than the ${declared.bytes} the record declares`, f.path);
  }
  if (count !== declared.count) reject(`${count} chunks, the record declares ${declared.count}`);
  if (bytes !== declared.bytes) reject(`${bytes} bytes, the record declares ${declared.bytes}`);
  extents.forEach((ex, p) => {
    if (ex.length === 0) reject(`pack ${short(list.packs[p]!)} holds none of the list's chunks`);
    ex.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ex.length; i++) {
      const [o0, st0, d0] = ex[i - 1]!;
      const [o1, , d1] = ex[i]!;
      if (o0 + st0 > o1) reject(`chunks ${short(d0)} and ${short(d1)} overlap in pack ${short(list.packs[p]!)}`);
    }
  });
  return list;
}
