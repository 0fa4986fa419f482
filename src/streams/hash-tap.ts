// A pass-through that hashes and counts a stream as it goes by, so that a file written from a stream need not be
// read back to be hashed: docker's image layers (image-archive.ts) and changeset's gzip'd tars (tar-writer.ts). Below
// every unit (node only), so both may import it.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { crc32 } from 'node:zlib';

export interface HashTap extends Transform {
  /** The sha256 of what went by, lowercase hex: once, after the stream ended. */
  hex(): string;
  /** The same as an OCI digest, sha256:<hex>: once, after the stream ended (hex or digest, not both). */
  digest(): string;
  /** Bytes that went by. */
  bytes(): number;
  /** The CRC32 of what went by (a gzip trailer's); 0 unless made with `crc32: true`. */
  crc(): number;
}

/** A HashTap: sha256 and a count of the bytes, and their CRC32 too with `crc32: true` (it costs a pass of its own). */
export function hashTap(opts: { crc32?: boolean } = {}): HashTap {
  const hash = createHash('sha256');
  const withCrc = opts.crc32 === true;
  let n = 0;
  let c = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      if (withCrc) c = crc32(chunk, c);
      n += chunk.length;
      cb(null, chunk);
    },
  });
  const hex = (): string => hash.digest('hex');
  return Object.assign(t, { hex, digest: () => `sha256:${hex()}`, bytes: () => n, crc: () => c });
}
