// Builds tar streams by hand for tests, hostile ones included: our own header encoder for ordinary entries,
// node-tar's Header for anything our writer would never emit (devices, FIFOs, absolute paths).
import { writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar/header';
import { encodeEntryHeaders, paddingFor, type TarEntry } from '../../../src/changeset/tar-format.js';

export type Piece = Buffer;

export function entry(e: Partial<TarEntry> & { path: string }, body?: Buffer | string): Piece {
  const data = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const full: TarEntry = {
    type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n, size: data.length, xattrs: [], ...e,
  };
  return Buffer.concat([encodeEntryHeaders(full), data, Buffer.alloc(paddingFor(data.length))]);
}

export const file = (path: string, body: string | Buffer = 'x', extra: Partial<TarEntry> = {}): Piece => entry({ path, ...extra }, body);
export const dir = (path: string, extra: Partial<TarEntry> = {}): Piece => entry({ path, type: 'dir', mode: 0o755, ...extra });
export const symlinkEntry = (path: string, target: string): Piece => entry({ path, type: 'symlink', mode: 0o777, linkpath: target });
export const hardlinkEntry = (path: string, target: string): Piece => entry({ path, type: 'hardlink', linkpath: target });

/** A raw ustar header through node-tar, bypassing our writer's conventions. */
export function rawHeader(data: HeaderData): Piece {
  const h = new Header({ mode: 0o644, uid: 0, gid: 0, size: 0, mtime: new Date(0), uname: '', gname: '', linkpath: '', ...data });
  h.encode();
  return h.block ?? Buffer.alloc(0);
}

/** A PAX 'x' header with the given raw body (no validation). */
export function rawPax(body: Buffer): Piece {
  return Buffer.concat([rawHeader({ path: 'PaxHeader', type: 'ExtendedHeader', size: body.length }), body, Buffer.alloc(paddingFor(body.length))]);
}

export function paxRecord(key: string, value: Buffer | string): Buffer {
  const v = Buffer.from(value);
  const rest = Buffer.concat([Buffer.from(` ${key}=`), v, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

export function tarOf(pieces: Piece[], end = true): Buffer {
  return Buffer.concat([...pieces, end ? Buffer.alloc(1024) : Buffer.alloc(0)]);
}

export async function writeGz(path: string, tar: Buffer): Promise<string> {
  await writeFile(path, gzipSync(tar, { level: 1 }));
  return path;
}
