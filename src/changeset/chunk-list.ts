// The chunk list of a commit: for each file of the changeset shipped in chunks (larger than the pusher's threshold),
// its size, its sha256 and its content-defined chunks (chunker.ts) in order, each a digest and a length. The tar
// carries such a file as an empty body with a PAX record naming its digest (tar-format.ts `TWINLAYER.chunked`); the
// list is its own content-addressed blob (gzip of JSON, one chunk a line), named by the commit record, which also
// declares its totals. Read on the standby it is untrusted: the record's totals are bounded before the list is
// fetched, the list is held to them while it is parsed, and nothing is fetched or written before it passes.
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { ChangesetRejectedError } from './errors.js';
import type { Limits } from './limits.js';
import { comparePaths } from './paths.js';

const gunzip = promisify(gunzipCb);

/** A chunk: its sha256 (64 lowercase hex) and its length in bytes. */
export type ChunkRef = readonly [digest: string, size: number];

export interface ChunkedFile {
  /** The entry's path in the changeset (relative, as in the tar). */
  path: string;
  size: number;
  /** sha256 of the whole file. */
  digest: string;
  chunks: ChunkRef[];
}

export interface ChunkList {
  version: 1;
  /** In tar order (byte order of the paths), one per chunked entry. */
  files: ChunkedFile[];
}

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

const hex64 = /^[0-9a-f]{64}$/;
const listSchema = z.strictObject({
  version: z.literal(1),
  files: z.array(z.strictObject({
    path: z.string().min(1).max(8192),
    size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    digest: z.string().regex(hex64),
    chunks: z.array(z.tuple([z.string().regex(hex64), z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)])),
  })),
});

export function summarize(list: ChunkList): Omit<ChunkListDeclared, 'size'> {
  let count = 0;
  let bytes = 0;
  for (const f of list.files) {
    count += f.chunks.length;
    bytes += f.size;
  }
  return { files: list.files.length, count, bytes };
}

/** The stored form: gzip of the JSON, one file header a line and one chunk a line, so `zcat` shows it readably.
 *  Deterministic: the same list gives the same bytes (gzip mtime 0). */
export function encodeChunkList(list: ChunkList): Buffer {
  const lines: string[] = ['{"version":1,"files":['];
  list.files.forEach((f, i) => {
    lines.push(`{"path":${JSON.stringify(f.path)},"size":${f.size},"digest":"${f.digest}","chunks":[`);
    f.chunks.forEach(([d, s], j) => lines.push(`["${d}",${s}]${j < f.chunks.length - 1 ? ',' : ''}`));
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

/**
 * Parses a stored chunk list (gzip of JSON) and holds it to what the record declared and to `limits`: sizes that add
 * up per file and in total, no chunk larger than maxChunkBytes, no digest named with two lengths, paths in strictly
 * increasing order. Throws ChangesetRejectedError; the caller checked `declared` with chunkListProblem first.
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
  const lengths = new Map<string, number>();
  let count = 0;
  let bytes = 0;
  let prev: string | null = null;
  for (const f of list.files) {
    if (prev !== null && comparePaths(prev, f.path) >= 0) reject('files out of order or repeated', f.path);
    prev = f.path;
    let sum = 0;
    for (const [d, s] of f.chunks) {
      if (s > limits.maxChunkBytes) reject(`a chunk of ${s} bytes; the limit is ${limits.maxChunkBytes}`, f.path);
      const known = lengths.get(d);
      if (known !== undefined && known !== s) reject(`chunk ${d.slice(0, 12)} named with lengths ${known} and ${s}`, f.path);
      lengths.set(d, s);
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
  return list;
}
