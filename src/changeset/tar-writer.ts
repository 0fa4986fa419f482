// Writes an uncompressed tar to a temp file (so a torn entry can be cut off by truncating back to its start),
// then gzips it deterministically (level 1, or 0 for data that does not compress; gzip mtime 0) into the final
// file while hashing the output.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, writeFile, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip, deflateRawSync, gzipSync } from 'node:zlib';
import { hashTap } from '../streams/hash-tap.js';
import { encodeEntryHeaders, endOfArchive, paddingFor, type TarEntry } from './tar-format.js';

export class TarFileWriter {
  readonly #fh: FileHandle;
  #pos = 0;

  private constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  static async create(path: string): Promise<TarFileWriter> {
    return new TarFileWriter(await open(path, 'wx', 0o600));
  }

  get position(): number {
    return this.#pos;
  }

  async #write(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.#fh.write(buf, off, buf.length - off, this.#pos);
      off += bytesWritten;
      this.#pos += bytesWritten;
    }
  }

  async writeHeader(e: TarEntry): Promise<void> {
    await this.#write(encodeEntryHeaders(e));
  }

  async writeBody(chunk: Buffer): Promise<void> {
    await this.#write(chunk);
  }

  async padBody(size: number): Promise<void> {
    const pad = paddingFor(size);
    if (pad > 0) await this.#write(Buffer.alloc(pad));
  }

  /** Writes a whole entry whose body (if any) is in memory. */
  async writeEntry(e: TarEntry, body?: Buffer): Promise<void> {
    await this.writeHeader(e);
    if (body !== undefined && body.length > 0) {
      await this.writeBody(body);
      await this.padBody(body.length);
    }
  }

  async truncateTo(pos: number): Promise<void> {
    await this.#fh.truncate(pos);
    this.#pos = pos;
  }

  async finish(): Promise<void> {
    await this.#write(endOfArchive);
    await this.#fh.close();
  }

  async abandon(): Promise<void> {
    await this.#fh.close().catch(() => undefined);
  }
}

/** Below this size a changeset is always compressed: the sampling would cost more than it saves. */
const SAMPLE_FROM_BYTES = 1024 * 1024;
const SAMPLE_CHUNK = 256 * 1024;
const SAMPLE_CHUNKS = 4;

/**
 * The gzip level for `src`: 1, or 0 (stored) when samples show the data does not compress (images, archives,
 * encrypted or random data), where deflate at 37 MB/s would be most of the time of a bulk change for nothing.
 * The samples sit at offsets fixed by the size, so the same bytes always get the same level (and digest).
 */
export async function chooseGzipLevel(src: string): Promise<0 | 1> {
  const fh = await open(src, 'r');
  try {
    const { size } = await fh.stat();
    if (size < SAMPLE_FROM_BYTES) return 1;
    let raw = 0;
    let packed = 0;
    const buf = Buffer.alloc(SAMPLE_CHUNK);
    for (let i = 0; i < SAMPLE_CHUNKS; i++) {
      const offset = Math.floor(((size - SAMPLE_CHUNK) * i) / (SAMPLE_CHUNKS - 1));
      const { bytesRead } = await fh.read(buf, 0, SAMPLE_CHUNK, offset);
      raw += bytesRead;
      packed += deflateRawSync(buf.subarray(0, bytesRead), { level: 1 }).length;
    }
    return packed > raw * 0.9 ? 0 : 1;
  } finally {
    await fh.close();
  }
}

/** Below this a tar is gzipped in memory, in one call: a small change's build is not held up by a stream pipeline's
 *  round trips (file opens, the thread pool). The bytes are those of the stream below (one input chunk either way). */
const IN_MEMORY_BYTES = 256 * 1024;

/** Gzips `src` into `dst` deterministically; returns the sha256 and size of the bytes written. */
export async function gzipAndHash(src: string, dst: string): Promise<{ digest: string; size: number }> {
  const fh = await open(src, 'r');
  try {
    const { size } = await fh.stat();
    if (size < IN_MEMORY_BYTES && size < SAMPLE_FROM_BYTES) {
      const gz = gzipSync(await fh.readFile(), { level: 1 });
      await writeFile(dst, gz, { flag: 'wx', mode: 0o600 });
      return { digest: createHash('sha256').update(gz).digest('hex'), size: gz.length };
    }
  } finally {
    await fh.close();
  }
  const tap = hashTap();
  const level = await chooseGzipLevel(src);
  // 1 MiB chunks: each zlib chunk is a round trip to the thread pool (16 KiB ones cost a second per 200 MB).
  await pipeline(createReadStream(src, { highWaterMark: 1 << 20 }), createGzip({ level, chunkSize: 1 << 20 }), tap, createWriteStream(dst, { flags: 'wx', mode: 0o600 }));
  return { digest: tap.hex(), size: tap.bytes() };
}
