// A chunk of data that does not compress goes into its pack as a gzip member of stored (uncompressed) deflate blocks:
// the same bytes zlib's level 0 writes in form (any gunzip, `zcat` of a whole pack, reads it), but framed here, straight
// into the pack's buffer. zlib's level 0 still runs its deflate loop over every byte and hands back a buffer of its
// own (a copy and garbage per chunk): on a 206 MB file of random bytes that was about 300 ms of the pusher's build on
// this machine's cores, against about 80 ms for the CRC-32 alone (bench/shipping-chunked.ts).
// The reverse (the standby): a member in exactly this form is unframed here without zlib, each block's bytes copied
// out; anything else (a member deflated at level 1, or framed otherwise) goes to zlib as before. Either way the
// caller checks the chunk's length and sha256: the CRC-32 is checked here too, so what passes is what gunzip passes.
import { crc32 } from 'node:zlib';

/** gzip's member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown. */
const header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff] as const;
/** The most a stored block holds (its length field is 16 bits). */
const blockBytes = 65535;

/** Bytes `size` bytes take as one gzip member of stored blocks (an empty chunk is one empty final block). */
export function storedMemberBytes(size: number): number {
  return header.length + 5 * Math.max(1, Math.ceil(size / blockBytes)) + size + 8;
}

/**
 * Writes `parts` (`size` bytes in all) as one gzip member of stored blocks into `out` at `at`, which must have room
 * for storedMemberBytes(size) bytes. Returns the member's length.
 */
export function writeStoredMember(parts: readonly Buffer[], size: number, out: Buffer, at: number): number {
  let w = at;
  for (const b of header) out[w++] = b;
  let crc = 0;
  let part = 0;
  let partOff = 0;
  let left = size;
  do {
    const len = Math.min(blockBytes, left);
    left -= len;
    out[w] = left === 0 ? 1 : 0; // BFINAL on the last block; BTYPE 00 (stored)
    out.writeUInt16LE(len, w + 1);
    out.writeUInt16LE(~len & 0xffff, w + 3);
    w += 5;
    for (let need = len; need > 0;) {
      const p = parts[part];
      if (p === undefined) throw new RangeError(`writeStoredMember: the parts hold fewer than ${size} bytes`);
      const n = Math.min(need, p.length - partOff);
      const piece = p.subarray(partOff, partOff + n);
      piece.copy(out, w);
      crc = crc32(piece, crc);
      w += n;
      need -= n;
      partOff += n;
      if (partOff === p.length) {
        part++;
        partOff = 0;
      }
    }
  } while (left > 0);
  out.writeUInt32LE(crc >>> 0, w);
  out.writeUInt32LE(size >>> 0, w + 4);
  return w + 8 - at;
}

/**
 * The bytes of `member` when it is one gzip member of stored blocks exactly as writeStoredMember frames it (any block
 * lengths) holding at most `maxSize` bytes, with a matching CRC-32 and length; null when it is in any other form
 * (for zlib to read, and to refuse when it is not gzip at all).
 */
export function readStoredMember(member: Buffer, maxSize: number): Buffer | null {
  if (member.length < header.length + 5 + 8) return null;
  // Magic, deflate, no flags (no name, comment or extra field: the blocks start at byte 10); mtime, extra flags and
  // OS are not looked at (zlib's level 0 writes other values there than this framing).
  for (let i = 0; i < 4; i++) if (member[i] !== header[i]) return null;
  const end = member.length - 8;
  const size = member.readUInt32LE(end + 4);
  if (size > maxSize || storedMemberBytes(size) > member.length) return null;
  const out = Buffer.allocUnsafe(size);
  let r = header.length;
  let w = 0;
  for (;;) {
    if (r + 5 > end) return null;
    const flags = member[r]!;
    if ((flags & ~1) !== 0) return null; // a block other than stored, or bits this framing never sets
    const len = member.readUInt16LE(r + 1);
    if ((~len & 0xffff) !== member.readUInt16LE(r + 3) || r + 5 + len > end || w + len > size) return null;
    member.copy(out, w, r + 5, r + 5 + len);
    w += len;
    r += 5 + len;
    if (flags === 1) break;
  }
  if (r !== end || w !== size || (crc32(out) >>> 0) !== member.readUInt32LE(end)) return null;
  return out;
}
