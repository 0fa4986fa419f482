// The 512-byte ustar header (encoded and checksummed by node-tar's Header) plus our own PAX extended records,
// which node-tar cannot write for xattrs (SCHILY.xattr.*) and parses too loosely for untrusted input.
import { Header } from 'tar/header';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink';

/** One tar entry as it is written and read. Whiteouts and opaque markers are plain empty files with `.wh.` names. */
export interface TarEntry {
  /** Relative path without leading `./` or trailing `/`. */
  path: string;
  type: EntryType;
  /** Permission bits including setuid, setgid and sticky (masked to 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  /** Body bytes; 0 for everything but files. */
  size: number;
  /** Symlink target (verbatim) or hard link target (a relative path of this tree). */
  linkpath?: string;
  /** Extended attributes by full name (e.g. `security.capability`), sorted by name. */
  xattrs: ReadonlyArray<readonly [string, Buffer]>;
  /** On a whiteout: remove the path from the upper dir without leaving a whiteout device (PAX
   *  `TWINLAYER.removeonly=1`; OCI tools that ignore it apply an ordinary whiteout, which is equivalent there). */
  removeOnly?: boolean;
  /** On a regular file with an empty body: the sha256 of its content, shipped as chunks named in the commit's chunk
   *  list (chunk-list.ts), PAX `TWINLAYER.chunked=<sha256>`. An OCI tool that ignores it extracts an empty file. */
  chunked?: string;
}

export const removeOnlyKey = 'TWINLAYER.removeonly';
export const chunkedKey = 'TWINLAYER.chunked';

export const blockSize = 512;
const typeFlag: Record<EntryType, 'File' | 'Directory' | 'SymbolicLink' | 'Link'> = {
  file: 'File',
  dir: 'Directory',
  symlink: 'SymbolicLink',
  hardlink: 'Link',
};
const maxOctal8 = 0o7777777;
const maxOctal12 = 0o77777777777;
const nsPerSec = 1_000_000_000n;

export function paddingFor(size: number): number {
  const rem = size % blockSize;
  return rem === 0 ? 0 : blockSize - rem;
}

function isPlainAscii(s: string, max: number): boolean {
  return s.length < max && /^[\x20-\x7e]*$/.test(s);
}

/** `mtimeNs` as PAX decimal seconds, e.g. `1700000000.123456789`; whole seconds carry no fraction. */
export function formatPaxTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  const sec = abs / nsPerSec;
  const frac = abs % nsPerSec;
  const text = frac === 0n ? `${sec}` : `${sec}.${frac.toString().padStart(9, '0').replace(/0+$/, '')}`;
  return neg ? `-${text}` : text;
}

export function parsePaxTime(text: string): bigint | null {
  const m = /^(-?)(\d{1,20})(?:\.(\d{1,30}))?$/.exec(text);
  if (m === null) return null;
  const frac = BigInt(((m[3] ?? '') + '000000000').slice(0, 9));
  const ns = BigInt(m[2] ?? '0') * nsPerSec + frac;
  return m[1] === '-' ? -ns : ns;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  // The length prefix counts its own digits.
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Encodes the headers of one entry: a PAX 'x' header when something does not fit ustar, then the ustar header. */
export function encodeEntryHeaders(e: TarEntry): Buffer {
  const records: Buffer[] = [];
  const tarPath = e.type === 'dir' ? `${e.path}/` : e.path;
  if (!isPlainAscii(tarPath, 100)) records.push(paxRecord('path', Buffer.from(tarPath)));
  if (e.linkpath !== undefined && !isPlainAscii(e.linkpath, 100)) records.push(paxRecord('linkpath', Buffer.from(e.linkpath)));
  const wholeSec = e.mtimeNs % nsPerSec === 0n && e.mtimeNs >= 0n && e.mtimeNs / nsPerSec <= BigInt(maxOctal12);
  if (!wholeSec) records.push(paxRecord('mtime', Buffer.from(formatPaxTime(e.mtimeNs))));
  if (e.uid > maxOctal8) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (e.gid > maxOctal8) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (e.size > maxOctal12) records.push(paxRecord('size', Buffer.from(String(e.size))));
  if (e.removeOnly === true) records.push(paxRecord(removeOnlyKey, Buffer.from('1')));
  if (e.chunked !== undefined) records.push(paxRecord(chunkedKey, Buffer.from(e.chunked)));
  for (const [name, value] of e.xattrs) records.push(paxRecord(`SCHILY.xattr.${name}`, value));

  const out: Buffer[] = [];
  if (records.length > 0) {
    const body = Buffer.concat(records);
    const h = new Header({ path: 'PaxHeader', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: new Date(0), type: 'ExtendedHeader', linkpath: '', uname: '', gname: '' });
    h.encode();
    out.push(h.block ?? Buffer.alloc(0), body, Buffer.alloc(paddingFor(body.length)));
  }
  const secs = e.mtimeNs / nsPerSec;
  const h = new Header({
    path: tarPath,
    mode: e.mode & 0o7777,
    uid: Math.min(e.uid, maxOctal8),
    gid: Math.min(e.gid, maxOctal8),
    size: Math.min(e.size, maxOctal12),
    mtime: new Date(Number(secs < 0n ? 0n : secs) * 1000),
    type: typeFlag[e.type],
    linkpath: e.linkpath ?? '',
    uname: '',
    gname: '',
  });
  h.encode();
  out.push(h.block ?? Buffer.alloc(0));
  return Buffer.concat(out);
}

/** Strict PAX body parser: every record must be `<len> <key>=<value>\n` with an exact length. Values stay bytes
 *  (xattr values are binary). Returns a problem string on any malformation. */
export function parsePaxBody(body: Buffer): Map<string, Buffer> | string {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < body.length) {
    const sp = body.indexOf(0x20, off);
    if (sp < 0 || sp - off > 20 || sp === off) return 'malformed PAX record length';
    const lenText = body.subarray(off, sp).toString('latin1');
    if (!/^[1-9]\d*$/.test(lenText)) return 'malformed PAX record length';
    const len = Number(lenText);
    if (off + len > body.length || len <= sp - off + 1) return 'PAX record overruns its header';
    const rec = body.subarray(sp + 1, off + len);
    if (rec[rec.length - 1] !== 0x0a) return 'PAX record without trailing newline';
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) return 'PAX record without key';
    const key = rec.subarray(0, eq).toString('utf8');
    if (out.has(key)) return `repeated PAX key ${key}`;
    out.set(key, Buffer.from(rec.subarray(eq + 1, rec.length - 1)));
    off += len;
  }
  return out;
}

export interface DecodedHeader {
  typeKey: string;
  path: string;
  linkpath: string;
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
  size: number | undefined;
  mtimeSec: number | undefined;
}

/** Decodes one 512-byte block; null for an all-zero block, a problem string for a bad checksum. */
export function decodeHeaderBlock(block: Buffer): DecodedHeader | null | string {
  if (block.every((b) => b === 0)) return null;
  const h = new Header(block);
  if (!h.cksumValid) return 'bad header checksum';
  return {
    typeKey: h.typeKey,
    path: h.path ?? '',
    linkpath: h.linkpath ?? '',
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: h.size,
    mtimeSec: h.mtime === undefined ? undefined : Math.floor(h.mtime.getTime() / 1000),
  };
}

export const endOfArchive = Buffer.alloc(blockSize * 2);
