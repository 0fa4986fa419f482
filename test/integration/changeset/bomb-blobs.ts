// Hostile blobs too large to build entry by entry in a test's time: millions of tar entries from one patched header
// template, and gzip streams of concatenated members (gunzip reads them as one stream) where a member that repeats is
// compressed once: 64 MiB of zeros is a ~65 KB member at level 9, so N copies expand to N x 64 MiB.
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGzip, gzipSync } from 'node:zlib';
import { blockSize, encodeEntryHeaders, type TarEntry } from '../../../src/changeset/tar-format.js';

const MiB = 1024 * 1024;

/** A dir entry, then `count` empty files `<dir>/<prefix><7 digits>`: each a 512-byte header made by patching the
 *  name digits and the checksum of one template (gzip level 1: ~10 bytes per entry). `prefix` makes paths long (up to
 *  ~90 bytes fit the ustar name field). */
export async function writeManyEntriesBlob(file: string, count: number, dir: string, prefix = ''): Promise<void> {
  const gz = createGzip({ level: 1, chunkSize: MiB });
  const out = createWriteStream(file);
  gz.pipe(out);
  const base: TarEntry = { path: `${dir}/${prefix}0000000`, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n, size: 0, xattrs: [] };
  const template = encodeEntryHeaders(base);
  if (template.length !== blockSize) throw new Error('template needs a PAX header; use a shorter prefix');
  const digitsAt = Buffer.byteLength(`${dir}/${prefix}`);
  // The checksum is the sum of the header's bytes with its own field read as spaces.
  let baseSum = 0;
  for (let i = 0; i < blockSize; i++) baseSum += i >= 148 && i < 156 ? 0x20 : (template[i] ?? 0);
  const zero = '0'.charCodeAt(0);
  const write = async (b: Buffer): Promise<void> => {
    if (!gz.write(b)) await once(gz, 'drain');
  };
  await write(encodeEntryHeaders({ ...base, path: dir, type: 'dir', mode: 0o755 }));
  const perChunk = 8192;
  for (let start = 0; start < count; start += perChunk) {
    const n = Math.min(perChunk, count - start);
    const chunk = Buffer.alloc(n * blockSize);
    for (let k = 0; k < n; k++) {
      const h = chunk.subarray(k * blockSize, (k + 1) * blockSize);
      template.copy(h);
      const digits = String(start + k).padStart(7, '0');
      let sum = baseSum;
      for (let d = 0; d < 7; d++) {
        const c = digits.charCodeAt(d);
        h[digitsAt + d] = c;
        sum += c - zero;
      }
      h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    }
    await write(chunk);
  }
  await write(Buffer.alloc(2 * blockSize));
  gz.end();
  await once(out, 'close');
}

/** A dir entry, then `count` empty files `<dir>/<prefix><7 digits>` whose paths are long (carried in a PAX header):
 *  the PAX header block and the ustar header are the same for every entry, only the digits in the PAX body change. */
export async function writeLongPathsBlob(file: string, count: number, dir: string, prefix: string): Promise<void> {
  const gz = createGzip({ level: 1, chunkSize: MiB });
  const out = createWriteStream(file);
  gz.pipe(out);
  const write = async (b: Buffer): Promise<void> => {
    if (!gz.write(b)) await once(gz, 'drain');
  };
  const first = `${dir}/${prefix}0000000`;
  const template = encodeEntryHeaders({ path: first, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [] });
  const digitsAt = template.indexOf(Buffer.from(first)) + Buffer.byteLength(first) - 7;
  if (digitsAt < blockSize) throw new Error('expected a PAX path record');
  await write(encodeEntryHeaders({ path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [] }));
  const perChunk = 4096;
  for (let start = 0; start < count; start += perChunk) {
    const n = Math.min(perChunk, count - start);
    const chunk = Buffer.alloc(n * template.length);
    for (let k = 0; k < n; k++) {
      template.copy(chunk, k * template.length);
      chunk.write(String(start + k).padStart(7, '0'), k * template.length + digitsAt, 'latin1');
    }
    await write(chunk);
  }
  await write(Buffer.alloc(2 * blockSize));
  gz.end();
  await once(out, 'close');
}

/** `count` empty files `<dir>/x<7 digits>`, each carrying `perEntry` user.* xattrs of `valueBytes` zero bytes. The
 *  PAX header holding the xattrs is the same for every entry (short names need no PAX path): one member, repeated;
 *  each entry's own ustar header is a small member of its own. */
export async function writeHugeXattrBlob(file: string, count: number, dir: string, perEntry: number, valueBytes: number): Promise<void> {
  const out = createWriteStream(file);
  const write = async (b: Buffer): Promise<void> => {
    if (!out.write(b)) await once(out, 'drain');
  };
  const xattrs = Array.from({ length: perEntry }, (_, i) => [`user.big${i}`, Buffer.alloc(valueBytes)] as const);
  const entry = (i: number): TarEntry => ({ path: `${dir}/x${String(i).padStart(7, '0')}`, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs });
  const plain = encodeEntryHeaders({ ...entry(0), xattrs: [] });
  const withPax = encodeEntryHeaders(entry(0));
  const pax = gzipSync(withPax.subarray(0, withPax.length - plain.length), { level: 9 });
  await write(gzipSync(encodeEntryHeaders({ path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [] })));
  for (let i = 0; i < count; i++) {
    await write(pax);
    await write(gzipSync(encodeEntryHeaders({ ...entry(i), xattrs: [] }), { level: 1 }));
  }
  await write(gzipSync(Buffer.alloc(2 * blockSize)));
  out.end();
  await once(out, 'close');
}

/** A gzip stream (concatenated members) of a tar whose one file `name` declares `declared` bytes, followed by
 *  `zeroMiB` MiB of zeros in all: the body, then (when there is more) the end marker and endless padding. */
export function zeroBomb(name: string, declared: number, zeroMiB: number): Buffer {
  const header = encodeEntryHeaders({ path: name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: declared, xattrs: [] });
  const member = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
  const members = Math.ceil(zeroMiB / 64);
  return Buffer.concat([gzipSync(header), ...Array.from({ length: members }, () => member)]);
}

