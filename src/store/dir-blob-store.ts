// A BlobStore on a local directory: key "a/b/c" is the file <root>/a/b/c. For unit tests and local experiments.
// Unlike S3 it cannot hold both "a" and "a/b", and it refuses keys that are not safe relative paths.
// Conditional writes: putIfAbsent links a complete temp file to the key, which fails if the key exists, so it is
// atomic even across processes; putIfMatch (check, then rename) is atomic only against writers in this process,
// whose writes of a key run one at a time.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

import { checkRange, observed, type BlobStore, type BodyObserver, type DeleteManyOptions, type GetOptions, type ListedObject, type PutOptions, type RangeObserved, type RangeOptions, type RangeRead } from './blob-store.js';
import { InvalidKeyError, ObjectTooLargeError } from './errors.js';
import { KeyedMutex } from './keyed-mutex.js';

/** Temp files live here, on the same filesystem, so a rename publishes an object atomically. */
const TMP_DIR = '.dirblobstore-tmp';

function errno(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : '';
}

const missing = (err: unknown): boolean => errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR' || errno(err) === 'EISDIR';

/** S3's ETag of a single-part object: the quoted MD5 of its bytes. */
function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}

function unquote(etag: string): string {
  return etag.length >= 2 && etag.startsWith('"') && etag.endsWith('"') ? etag.slice(1, -1) : etag;
}

function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class DirBlobStore implements BlobStore {
  readonly rootDir: string;
  readonly #writes = new KeyedMutex();

  constructor(rootDir: string) {
    if (typeof rootDir !== 'string' || rootDir === '') throw new TypeError(`Expected \`rootDir\` to be a non-empty path, got ${JSON.stringify(rootDir)}`);
    this.rootDir = rootDir;
  }

  #path(key: string): string {
    if (key.length === 0 || key.length > 1024) throw new InvalidKeyError(key, 'expected 1 to 1024 characters');
    if (key.includes('\0')) throw new InvalidKeyError(key, 'NUL character');
    const segments = key.split('/');
    for (const seg of segments) {
      if (seg === '' || seg === '.' || seg === '..') throw new InvalidKeyError(key, 'empty, "." or ".." path segment');
    }
    if (segments[0] === TMP_DIR) throw new InvalidKeyError(key, `${TMP_DIR} is reserved`);
    return join(this.rootDir, ...segments);
  }

  async #tmp(): Promise<string> {
    const dir = join(this.rootDir, TMP_DIR);
    await mkdir(dir, { recursive: true });
    return join(dir, randomBytes(8).toString('hex'));
  }

  async put(key: string, body: Buffer | { file: string }, opts: PutOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const dest = this.#path(key);
    await this.#writes.run(key, () => this.#replace(dest, body));
  }

  async #replace(dest: string, body: Buffer | { file: string }): Promise<void> {
    const tmp = await this.#tmp();
    try {
      if (Buffer.isBuffer(body)) await writeFile(tmp, body);
      else await copyFile(body.file, tmp);
      await mkdir(join(dest, '..'), { recursive: true });
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    const dest = this.#path(key);
    return this.#writes.run(key, async () => {
      const tmp = await this.#tmp();
      try {
        await writeFile(tmp, body);
        await mkdir(join(dest, '..'), { recursive: true });
        await link(tmp, dest);
        return true;
      } catch (err) {
        if (errno(err) === 'EEXIST') return false;
        throw err;
      } finally {
        await rm(tmp, { force: true });
      }
    });
  }

  async putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean> {
    const dest = this.#path(key);
    return this.#writes.run(key, async () => {
      const current = await this.getBuffer(key, Number.MAX_SAFE_INTEGER);
      if (current === null || unquote(etagOf(current)) !== unquote(etag)) return false;
      await this.#replace(dest, body);
      return true;
    });
  }

  async getBuffer(key: string, maxBytes: number): Promise<Buffer | null> {
    const path = this.#path(key);
    try {
      const st = await stat(path);
      if (!st.isFile()) return null;
      if (st.size > maxBytes) throw new ObjectTooLargeError(key, st.size, maxBytes);
      const buf = await readFile(path);
      if (buf.length > maxBytes) throw new ObjectTooLargeError(key, buf.length, maxBytes);
      return buf;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  async getToFile(key: string, file: string, maxBytes = Number.MAX_SAFE_INTEGER, opts: GetOptions = {}): Promise<boolean> {
    opts.signal?.throwIfAborted();
    const path = this.#path(key);
    try {
      const st = await stat(path);
      if (!st.isFile()) return false;
      if (st.size > maxBytes) throw new ObjectTooLargeError(key, st.size, maxBytes);
    } catch (err) {
      if (missing(err)) return false;
      throw err;
    }
    // Errors from here on are about the destination (or a race with delete) and are reported as they are.
    const tmp = `${file}.part-${randomBytes(6).toString('hex')}`;
    try {
      if (opts.observe === undefined) {
        await copyFile(path, tmp);
      } else {
        opts.observe.start();
        await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), observed(opts.observe), createWriteStream(tmp, { flags: 'wx' }), opts.signal === undefined ? {} : { signal: opts.signal });
      }
      // It may have grown since the stat.
      const copied = (await stat(tmp)).size;
      if (copied > maxBytes) throw new ObjectTooLargeError(key, copied, maxBytes);
      await rename(tmp, file);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async observeRange(key: string, start: number, length: number, observe: BodyObserver, opts: RangeOptions = {}): Promise<RangeObserved> {
    checkRange(start, length);
    opts.signal?.throwIfAborted();
    let fh;
    try {
      fh = await open(this.#path(key), 'r');
    } catch (err) {
      if (missing(err)) return { status: 'missing' };
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { status: 'missing' };
      const size = st.size;
      if (start >= size || (opts.partial !== true && start + length > size)) return { status: 'short', objectSize: size };
      const end = Math.min(start + length, size);
      observe.start();
      const buf = Buffer.allocUnsafe(Math.min(end - start, 1 << 20));
      for (let at = start; at < end;) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
        if (bytesRead === 0) return { status: 'short', objectSize: null };
        await observe.chunk(Buffer.from(buf.subarray(0, bytesRead)));
        at += bytesRead;
      }
      return { status: 'ok', objectSize: size };
    } finally {
      await fh.close();
    }
  }

  async getRangeToFile(key: string, start: number, length: number, file: string): Promise<RangeRead> {
    checkRange(start, length);
    const path = this.#path(key);
    let size: number;
    try {
      const st = await stat(path);
      if (!st.isFile()) return { status: 'missing' };
      size = st.size;
    } catch (err) {
      if (missing(err)) return { status: 'missing' };
      throw err;
    }
    if (start + length > size) return { status: 'short', objectSize: size };
    const tmp = `${file}.part-${randomBytes(6).toString('hex')}`;
    try {
      const buf = Buffer.allocUnsafe(length);
      const fh = await open(path, 'r');
      try {
        const { bytesRead } = await fh.read(buf, 0, length, start);
        if (bytesRead !== length) return { status: 'short', objectSize: null };
      } finally {
        await fh.close();
      }
      await writeFile(tmp, buf);
      await rename(tmp, file);
      return { status: 'ok' };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async getIfNoneMatch(
    key: string,
    etag: string | undefined,
    maxBytes: number,
  ): Promise<{ status: 'missing' } | { status: 'unchanged' } | { status: 'ok'; body: Buffer; etag: string }> {
    const body = await this.getBuffer(key, maxBytes);
    if (body === null) return { status: 'missing' };
    const current = etagOf(body);
    if (etag !== undefined && etag === current) return { status: 'unchanged' };
    return { status: 'ok', body, etag: current };
  }

  async exists(key: string, opts: PutOptions = {}): Promise<boolean> {
    opts.signal?.throwIfAborted();
    try {
      return (await stat(this.#path(key))).isFile();
    } catch (err) {
      if (missing(err)) return false;
      throw err;
    }
  }

  async *list(prefix: string, startAfter?: string): AsyncIterable<string> {
    // Walk only the directory the prefix names (its part up to the last "/"); the rest is filtered by name.
    const cut = prefix.lastIndexOf('/');
    const dirPart = cut === -1 ? '' : prefix.slice(0, cut);
    if (dirPart !== '' && dirPart.split('/').some((s) => s === '' || s === '.' || s === '..' || s.includes('\0'))) return;
    const keys: string[] = [];
    // Iterative walk; bounded by the number of entries under the directory.
    const stack: string[] = [dirPart];
    while (stack.length > 0) {
      const rel = stack.pop() ?? '';
      let entries;
      try {
        entries = await readdir(rel === '' ? this.rootDir : join(this.rootDir, rel), { withFileTypes: true });
      } catch (err) {
        if (missing(err)) continue;
        throw err;
      }
      for (const e of entries) {
        const key = rel === '' ? e.name : `${rel}/${e.name}`;
        if (rel === '' && e.name === TMP_DIR) continue;
        if (e.isDirectory()) {
          // Skip subtrees that cannot hold a key with this prefix.
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) stack.push(key);
        } else if (e.isFile() && key.startsWith(prefix) && (startAfter === undefined || compareKeys(key, startAfter) > 0)) {
          keys.push(key);
        }
      }
    }
    keys.sort(compareKeys);
    yield* keys;
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    await this.#writes.run(key, async () => {
      try {
        await unlink(path);
      } catch (err) {
        if (!missing(err)) throw err;
      }
    });
  }

  async *listObjects(prefix: string, startAfter?: string): AsyncIterable<ListedObject> {
    for await (const key of this.list(prefix, startAfter)) {
      try {
        const st = await stat(this.#path(key));
        yield { key, size: st.size, lastModified: st.mtimeMs };
      } catch (err) {
        // Deleted since it was listed.
        if (!missing(err)) throw err;
      }
    }
  }

  async deleteMany(keys: readonly string[], opts: DeleteManyOptions = {}): Promise<void> {
    // One request in S3 terms: checked once.
    if (keys.length > 0) await opts.beforeRequest?.();
    for (const key of keys) await this.delete(key);
  }
}
