// Strict, bounded streaming reader of a gzip'd changeset tar. Pulls gunzip output chunk by chunk, so memory stays
// at a few chunks whatever the blob holds; the uncompressed byte count is checked as it grows against the total
// limit and the expansion ratio of this blob, which stops gzip bombs after reading no more than that. Anything it
// does not understand is refused with ChangesetRejectedError; an abort signal stops it between chunks.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { expansionBound } from './declared.js';
import { ChangesetRejectedError } from './errors.js';
import { maxTrailingZeroBytes, maxXattrValueBytes, type Limits } from './limits.js';
import { blockSize, decodeHeaderBlock, paddingFor, parsePaxBody, parsePaxTime, removeOnlyKey, chunkedKey, type EntryType, type TarEntry } from './tar-format.js';

export interface EntryBody {
  readonly size: number;
  /** The body in chunks; may be called at most once. Unread bytes are skipped after the callback returns. */
  chunks(): AsyncGenerator<Buffer>;
}

export interface ReadSummary {
  entries: number;
  totalBytes: number;
}

const typeByKey: Record<string, EntryType | undefined> = { '0': 'file', '5': 'dir', '2': 'symlink', '1': 'hardlink' };
const refusedTypes: Record<string, string> = {
  '3': 'character device', '4': 'block device', '6': 'FIFO', 'g': 'global PAX header', 'L': 'GNU long name',
  'K': 'GNU long link', 'S': 'sparse file',
};
const maxUid = 0xfffffffe;

class ByteSource {
  readonly #it: AsyncIterator<Buffer>;
  readonly #limit: number;
  readonly #limitWhy: string;
  readonly #signal: AbortSignal | undefined;
  #buf: Buffer = Buffer.alloc(0);
  #total = 0;
  #done = false;
  entry = '<stream>';

  constructor(it: AsyncIterator<Buffer>, limit: number, limitWhy: string, signal: AbortSignal | undefined) {
    this.#it = it;
    this.#limit = limit;
    this.#limitWhy = limitWhy;
    this.#signal = signal;
  }

  get total(): number {
    return this.#total;
  }

  /** Pulls one more chunk; false at the end of the stream. */
  async #pull(): Promise<boolean> {
    if (this.#done) return false;
    this.#signal?.throwIfAborted();
    let r: IteratorResult<Buffer>;
    try {
      r = await this.#it.next();
    } catch (err) {
      throw new ChangesetRejectedError(`corrupt or truncated gzip stream: ${(err as Error).message}`, { entry: this.entry }, { cause: err });
    }
    if (r.done === true) {
      this.#done = true;
      return false;
    }
    this.#total += r.value.length;
    if (this.#total > this.#limit) {
      throw new ChangesetRejectedError(`uncompressed size exceeds ${this.#limit} bytes (${this.#limitWhy}); stopped reading there`, { entry: this.entry });
    }
    this.#next = r.value;
    return true;
  }

  /** The chunk #pull read last, until it becomes #buf. */
  #next: Buffer | null = null;

  /** Once the current chunk is used up: makes the next one current. */
  async #advance(): Promise<boolean> {
    if (!(await this.#pull()) || this.#next === null) return false;
    this.#buf = this.#next;
    this.#next = null;
    return true;
  }

  /** Exactly n bytes (n small), or null when the stream ends cleanly before the first byte. A block cut by a chunk
   *  boundary is assembled from copies of its two parts; the chunks themselves are never concatenated (that copied
   *  a whole 1 MiB chunk per boundary, garbage that grew the peak RSS by tens of MB). */
  async readExact(n: number): Promise<Buffer | null> {
    if (this.#buf.length < n) {
      const head = Buffer.from(this.#buf);
      const parts: Buffer[] = [head];
      let have = head.length;
      this.#buf = Buffer.alloc(0);
      while (have < n) {
        if (!(await this.#pull()) || this.#next === null) {
          if (have === 0) return null;
          throw new ChangesetRejectedError('truncated tar stream', { entry: this.entry });
        }
        const chunk = this.#next;
        this.#next = null;
        const part = chunk.subarray(0, n - have);
        parts.push(part);
        have += part.length;
        this.#buf = chunk.subarray(part.length);
      }
      return Buffer.concat(parts, n);
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** Up to `n` bytes as they arrive; throws when the stream ends first. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#advance())) {
        throw new ChangesetRejectedError('truncated tar stream', { entry: this.entry });
      }
      const part = this.#buf.subarray(0, Math.min(left, this.#buf.length));
      this.#buf = this.#buf.subarray(part.length);
      left -= part.length;
      yield part;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.take(n)) {
      // discard
    }
  }

  /** Consumes the rest, which must be zero padding of at most `max` bytes. */
  async drainZeros(max: number): Promise<void> {
    let seen = 0;
    for (;;) {
      if (this.#buf.some((b) => b !== 0)) throw new ChangesetRejectedError('data after the end of the archive', { entry: this.entry });
      seen += this.#buf.length;
      if (seen > max) throw new ChangesetRejectedError(`more than ${max} bytes of padding after the end of the archive`, { entry: this.entry });
      this.#buf = Buffer.alloc(0);
      if (!(await this.#advance())) return;
    }
  }
}

function reject(message: string, entry: string): never {
  throw new ChangesetRejectedError(message, { entry });
}

function uidValue(text: Buffer | undefined, fallback: number | undefined, what: string, entry: string): number {
  if (text === undefined) {
    if (fallback === undefined || !Number.isSafeInteger(fallback) || fallback < 0 || fallback > maxUid) reject(`bad ${what}`, entry);
    return fallback;
  }
  const s = text.toString('latin1');
  if (!/^\d{1,10}$/.test(s) || Number(s) > maxUid) reject(`bad PAX ${what}`, entry);
  return Number(s);
}

/** Reads every entry of `file` in order and calls `onEntry` for each. Validates framing, checksums and limits;
 *  path safety and tree rules are the caller's (see validate.ts). `signal` aborts between chunks (throws its reason). */
export async function readChangeset(
  file: string,
  limits: Limits,
  onEntry: (e: TarEntry, body: EntryBody) => Promise<void>,
  opts: { signal?: AbortSignal } = {},
): Promise<ReadSummary> {
  const stored = (await stat(file)).size;
  return readChangesetFrom(createReadStream(file, { highWaterMark: 1 << 20 }), stored, limits, onEntry, opts);
}

/** readChangeset of the gzip'd bytes `input` streams (destroyed at the end); `stored`: how many there are at most
 *  (a download's declared size), which bounds the expansion. An error of `input` ends the read as a corrupt stream. */
export async function readChangesetFrom(
  input: Readable,
  stored: number,
  limits: Limits,
  onEntry: (e: TarEntry, body: EntryBody) => Promise<void>,
  opts: { signal?: AbortSignal } = {},
): Promise<ReadSummary> {
  const bound = expansionBound(stored, limits);
  const why = bound === limits.maxTotalBytes ? 'the limit on uncompressed bytes' : `${limits.maxExpansionRatio}:1 expansion of a ${stored}-byte blob`;
  // Large chunks: each zlib chunk is a round trip to the thread pool, and 16 KiB ones made reading 200 MB take a second.
  const gunzip = createGunzip({ chunkSize: 1 << 20 });
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  const it = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const src = new ByteSource(it, bound, why, opts.signal);
  let entries = 0;
  try {
    let pax: Map<string, Buffer> | null = null;
    for (;;) {
      const block = await src.readExact(blockSize);
      if (block === null) reject('tar stream ends without an end-of-archive marker', src.entry);
      const h = decodeHeaderBlock(block);
      if (typeof h === 'string') reject(h, src.entry);
      if (h === null) {
        const second = await src.readExact(blockSize);
        if (second === null || second.some((b) => b !== 0)) reject('malformed end-of-archive marker', src.entry);
        if (pax !== null) reject('PAX header without an entry', src.entry);
        await src.drainZeros(maxTrailingZeroBytes);
        break;
      }
      src.entry = h.path || '<unnamed>';
      const size = h.size;
      if (size === undefined || !Number.isSafeInteger(size) || size < 0) reject('bad size field', src.entry);
      if (h.typeKey === 'x') {
        if (pax !== null) reject('two PAX headers in a row', src.entry);
        if (size > limits.maxPaxBytes) reject(`PAX header of ${size} bytes exceeds the limit of ${limits.maxPaxBytes}`, src.entry);
        const parts: Buffer[] = [];
        for await (const part of src.take(size)) parts.push(Buffer.from(part));
        await src.skip(paddingFor(size));
        const parsed = parsePaxBody(Buffer.concat(parts));
        if (typeof parsed === 'string') reject(parsed, src.entry);
        pax = parsed;
        continue;
      }
      const type = typeByKey[h.typeKey];
      if (type === undefined) reject(`unsupported entry type: ${refusedTypes[h.typeKey] ?? JSON.stringify(h.typeKey)}`, src.entry);
      entries++;
      if (entries > limits.maxEntries) reject(`more than ${limits.maxEntries} entries`, src.entry);
      const entry = buildEntry(h.path, h.linkpath, type, h, pax, limits);
      pax = null;
      src.entry = entry.path;
      // The callback may stream the body; whatever it leaves unread is skipped.
      let used = false;
      let consumed = 0;
      const body: EntryBody = {
        size: entry.size,
        chunks: async function* () {
          if (used) throw new Error('entry body read twice');
          used = true;
          for await (const c of src.take(entry.size)) {
            consumed += c.length;
            yield c;
          }
        },
      };
      await onEntry(entry, body);
      await src.skip(entry.size - consumed);
      await src.skip(paddingFor(entry.size));
    }
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  return { entries, totalBytes: src.total };
}

function buildEntry(
  rawPath: string,
  rawLink: string,
  type: EntryType,
  h: { mode: number | undefined; uid: number | undefined; gid: number | undefined; size: number | undefined; mtimeSec: number | undefined },
  pax: Map<string, Buffer> | null,
  limits: Limits,
): TarEntry {
  const p = pax ?? new Map<string, Buffer>();
  let path = p.get('path')?.toString('utf8') ?? rawPath;
  if (Buffer.byteLength(path) > limits.maxPathBytes) reject(`path longer than ${limits.maxPathBytes} bytes`, path.slice(0, 200));
  // A directory is written with one trailing slash; a leading `./` is not accepted (strict).
  if (path.endsWith('/') && type === 'dir') path = path.slice(0, -1);
  const entryName = path;
  let size = h.size ?? 0;
  const paxSize = p.get('size');
  if (paxSize !== undefined) {
    const s = paxSize.toString('latin1');
    if (!/^\d{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) reject('bad PAX size', entryName);
    size = Number(s);
  }
  if (type !== 'file' && size !== 0) reject(`${type} entry with a body`, entryName);
  if (h.mode === undefined || !Number.isSafeInteger(h.mode) || h.mode < 0) reject('bad mode field', entryName);
  let mtimeNs: bigint;
  const paxMtime = p.get('mtime');
  if (paxMtime !== undefined) {
    const t = parsePaxTime(paxMtime.toString('latin1'));
    if (t === null) reject('bad PAX mtime', entryName);
    mtimeNs = t;
  } else {
    if (h.mtimeSec === undefined || !Number.isSafeInteger(h.mtimeSec)) reject('bad mtime field', entryName);
    mtimeNs = BigInt(h.mtimeSec) * 1_000_000_000n;
  }
  const entry: TarEntry = {
    path,
    type,
    mode: h.mode & 0o7777,
    uid: uidValue(p.get('uid'), h.uid, 'uid', entryName),
    gid: uidValue(p.get('gid'), h.gid, 'gid', entryName),
    mtimeNs,
    size,
    xattrs: [],
  };
  if (type === 'symlink' || type === 'hardlink') {
    const link = p.get('linkpath')?.toString('utf8') ?? rawLink;
    if (link === '') reject(`${type} without a target`, entryName);
    if (link.includes('\0')) reject('NUL byte in link target', entryName);
    if (Buffer.byteLength(link) > limits.maxPathBytes) reject(`link target longer than ${limits.maxPathBytes} bytes`, entryName);
    entry.linkpath = link;
  }
  const removeOnly = p.get(removeOnlyKey);
  if (removeOnly !== undefined) {
    if (removeOnly.toString('latin1') !== '1') reject(`bad ${removeOnlyKey}`, entryName);
    entry.removeOnly = true;
  }
  const chunked = p.get(chunkedKey);
  if (chunked !== undefined) {
    const d = chunked.toString('latin1');
    if (!/^[0-9a-f]{64}$/.test(d)) reject(`bad ${chunkedKey}`, entryName);
    if (type !== 'file' || size !== 0) reject(`${chunkedKey} on an entry that is not an empty regular file`, entryName);
    entry.chunked = d;
  }
  const xattrs: Array<[string, Buffer]> = [];
  for (const [key, value] of p) {
    if (!key.startsWith('SCHILY.xattr.')) continue;
    const name = key.slice('SCHILY.xattr.'.length);
    if (value.length > maxXattrValueBytes) reject(`xattr ${name} value too large`, entryName);
    xattrs.push([name, value]);
  }
  xattrs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  entry.xattrs = xattrs;
  return entry;
}
