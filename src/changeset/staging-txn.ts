// One commit being staged, made undoable. Before its first write the intent (header) is written and synced into
// <tmp>/txn/undo.log; before each step that changes the upper dir a line saying how to undo it is appended with
// write(2): an entry about to be replaced or removed is moved into the undo area <tmp>/txn/undo/<slot> instead of
// deleted, a path about to be created is named, an existing directory's owner, mode, times and xattrs are logged
// before they change. The page cache survives kill -9, so every step that happened has its line; undo replays the
// lines in reverse, which leaves the upper dir exactly as before the commit. On success the caller records the
// commit and the txn dir is discarded.
//
// Power loss is the one case the lines may not survive (they are not synced one by one, which would cost an fsync
// per entry): the header is, so recovery knows a commit was under way, and the boot id in it says whether the
// machine restarted meanwhile; the caller then restages that container from its latest full checkpoint.
import type { BigIntStats } from 'node:fs';
import { writeSync, constants as fsc } from 'node:fs';
import { chmod, lchown, lstat, lutimes, mkdir, open, readFile, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { StagePendingError } from './errors.js';
import {
  encodeLine, parseHeader, parseRecordLine, recordPath, UndoLogCorruptError, type StageIntent, type UndoHeader, type UndoRecord,
} from './undo-log.js';
import { syncFileSystem } from './tools.js';
import { readXattrs, removeXattr, writeXattrs, type Xattrs } from './xattr.js';
import type { ChangesetKind } from './built-changeset.js';
import type { TreeRoots } from './tree-roots.js';

export const txnDirName = 'txn';
const logName = 'undo.log';
const undoAreaName = 'undo';
const opaqueXattr = 'trusted.overlay.opaque';

/** A time utimes(2) sets exactly: seconds as a number; before 1970 a Date, since Node turns a negative number into
 *  "now". */
export function timeOf(ns: bigint): number | Date {
  return ns < 0n ? new Date(Number(ns / 1_000_000n)) : Number(ns) / 1e9;
}

let bootId: string | null = null;
export async function currentBootId(): Promise<string> {
  bootId ??= (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => 'unknown')).trim().slice(0, 64);
  return bootId;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

async function lstatOrNull(path: string | Buffer): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class StagingTxn {
  /** The txn dir: temp files of the commit go here too, so whatever a crash leaves goes with it. */
  readonly dir: string;
  readonly #roots: TreeRoots;
  readonly #undoArea: string;
  #fh: FileHandle | null;
  #slot = 0;
  /** Directories whose state before the commit is logged, or that the commit created (nothing to log). */
  readonly #noted = new Set<string>();

  private constructor(roots: TreeRoots, dir: string, fh: FileHandle) {
    this.#roots = roots;
    this.dir = dir;
    this.#undoArea = join(dir, undoAreaName);
    this.#fh = fh;
  }

  /** Throws StagePendingError when a commit left half staged is still there (checked before validation, which may
   *  take long, as well as by begin). */
  static async assertNone(tmp: string): Promise<void> {
    const dir = join(tmp, txnDirName);
    if ((await lstatOrNull(dir)) !== null) throw new StagePendingError('a commit left half staged is still to be recovered', { path: dir });
  }

  /** Writes and syncs the intent; throws StagePendingError when a commit left half staged is still there. */
  static async begin(roots: TreeRoots, tmp: string, kind: ChangesetKind, intent: StageIntent | null): Promise<StagingTxn> {
    const dir = join(tmp, txnDirName);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new StagePendingError('a commit left half staged is still to be recovered', { path: dir });
      throw err;
    }
    try {
      await mkdir(join(dir, undoAreaName), { mode: 0o700 });
      const fh = await open(join(dir, logName), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_APPEND | fsc.O_NOFOLLOW, 0o600);
      try {
        const header: UndoHeader = { v: 1, kind, bootId: await currentBootId(), startedAt: new Date().toISOString(), intent };
        await fh.write(encodeLine(header));
        // The intent survives power loss: after a reboot, recovery knows a commit was under way.
        await fh.datasync();
        await fsyncDir(dir);
        await fsyncDir(tmp);
      } catch (err) {
        await fh.close();
        throw err;
      }
      return new StagingTxn(roots, dir, fh);
    } catch (err) {
      // Nothing was written to the upper dir yet.
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  #append(records: readonly UndoRecord[]): void {
    if (this.#fh === null) throw new Error('staging txn already closed');
    const buf = Buffer.from(records.map(encodeLine).join(''), 'utf8');
    // A synchronous write(2): a few microseconds into the page cache, and the step waits for it.
    let off = 0;
    while (off < buf.length) off += writeSync(this.#fh.fd, buf, off, buf.length - off);
  }

  #abs(rel: string): string {
    return this.#roots.abs(rel);
  }

  /** Before `rel` is created (`create`) or removed: whatever is there moves to the undo area (logged first), and a
   *  path to be created is logged. Returns whether something was there. The parent must already be noted. */
  async clear(rel: string, create: boolean): Promise<boolean> {
    const abs = this.#abs(rel);
    const st = await lstatOrNull(abs);
    if (st === null) {
      if (create) this.#append([{ o: 'C', p: rel }]);
      return false;
    }
    const u = this.#slot++;
    this.#append([{ o: 'R', p: rel, u }]);
    await rename(abs, join(this.#undoArea, String(u)));
    return true;
  }

  /** Moves an entry whose name on disk is not UTF-8 (`rel` as raw bytes, `absBytes` its absolute path) aside. */
  async clearRaw(rel: Buffer, absBytes: Buffer): Promise<void> {
    const u = this.#slot++;
    this.#append([{ o: 'R', px: rel.toString('hex'), u }]);
    await rename(absBytes, join(this.#undoArea, String(u)));
  }

  /** Logs an existing directory's owner, mode and times before the first change to it or to its entries. */
  noteDir(rel: string, st: BigIntStats): void {
    if (this.#noted.has(rel)) return;
    this.#append([{ o: 'D', p: rel, uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) & 0o7777, at: st.atimeNs.toString(), mt: st.mtimeNs.toString() }]);
    this.#noted.add(rel);
  }

  /** A directory this commit created: undone by removing it, nothing to log about it. */
  noteNewDir(rel: string): void {
    this.#noted.add(rel);
  }

  isNoted(rel: string): boolean {
    return this.#noted.has(rel);
  }

  /** Logs every xattr of existing directories before theirs change (one write for the batch). */
  xattrsBefore(items: ReadonlyArray<readonly [rel: string, xattrs: Xattrs]>): void {
    if (items.length === 0) return;
    this.#append(items.map(([p, x]) => ({ o: 'X', p, x: x.map(([n, v]) => [n, v.toString('hex')] as [string, string]) })));
  }

  async #close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    await fh?.close();
  }

  /** Leaves the txn in place for recoverStaging. */
  async leave(): Promise<void> {
    await this.#close();
  }

  /** The commit is applied, synced and recorded: the log and the undo area go. */
  async discard(): Promise<void> {
    await this.#close();
    await discardTxn(this.dir);
  }

  /** Undoes every logged step, syncs, then discards. Throws (leaving the txn for recovery) when a step fails. */
  async undo(): Promise<number> {
    await this.#close();
    const steps = await undoTxn(this.#roots, this.dir);
    await discardTxn(this.dir);
    return steps;
  }
}

/** The log goes first: a txn dir without one is only garbage. */
export async function discardTxn(dir: string): Promise<void> {
  await unlink(join(dir, logName)).catch((err: unknown) => {
    if (!isMissing(err)) throw err;
  });
  await rm(dir, { recursive: true, force: true });
}

/** The header of a txn's log; null when the log is missing or its header torn (nothing was done). */
export async function readTxnHeader(dir: string): Promise<UndoHeader | null> {
  let fh: FileHandle;
  try {
    fh = await open(join(dir, logName), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
  try {
    const { header } = await readHeaderOf(fh);
    return header;
  } finally {
    await fh.close();
  }
}

const maxHeaderBytes = 4096;

async function readHeaderOf(fh: FileHandle): Promise<{ header: UndoHeader | null; end: number }> {
  const buf = Buffer.alloc(maxHeaderBytes);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
  if (nl < 0) {
    if (bytesRead === maxHeaderBytes) throw new UndoLogCorruptError('header: longer than any header written');
    return { header: null, end: 0 };
  }
  return { header: parseHeader(buf.subarray(0, nl).toString('utf8')), end: nl + 1 };
}

/** The log's lines after the header, last first; the first one yielded is what follows the last newline (empty, or a
 *  line torn by the process dying while writing it). Reads 64 KiB at a time: memory stays small whatever the log. */
async function* segmentsBackward(fh: FileHandle, start: number, size: number): AsyncGenerator<Buffer> {
  let pos = size;
  let carry = Buffer.alloc(0);
  while (pos > start) {
    const n = Math.min(65536, pos - start);
    const chunk = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(chunk, got, n - got, pos - n + got);
      if (bytesRead === 0) throw new UndoLogCorruptError('the log shrank while being read');
      got += bytesRead;
    }
    pos -= n;
    const buf = carry.length === 0 ? chunk : Buffer.concat([chunk, carry]);
    let end = buf.length;
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) continue;
      yield buf.subarray(i + 1, end);
      end = i;
    }
    carry = Buffer.from(buf.subarray(0, end));
  }
  yield carry;
}

/** The log's records after the header, last first, parsed; a line torn by kill -9 (after the last newline) was never
 *  acted on and is skipped. */
async function* recordsBackward(fh: FileHandle, start: number): AsyncGenerator<UndoRecord> {
  const size = (await fh.stat()).size;
  let first = true;
  let lineNo = 0;
  for await (const seg of segmentsBackward(fh, start, size)) {
    if (first) {
      first = false;
      continue;
    }
    lineNo++;
    yield parseRecordLine(seg.toString('utf8'), `undo log line ${lineNo} from the end`);
  }
}

/** Replays a txn's log in reverse into the upper dir and volumes of `roots`, then syncs the file system. The whole log is checked first: one that
 *  does not parse changes nothing (UndoLogCorruptError). Returns the number of steps undone. */
export async function undoTxn(roots: TreeRoots, dir: string): Promise<number> {
  let fh: FileHandle;
  try {
    fh = await open(join(dir, logName), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (isMissing(err)) return 0;
    throw err;
  }
  const undoer = new Undoer(roots, dir);
  let steps = 0;
  try {
    const { header, end } = await readHeaderOf(fh);
    if (header === null) return 0;
    let records = 0;
    for await (const _ of recordsBackward(fh, end)) records++;
    if (records === 0) return 0;
    for await (const record of recordsBackward(fh, end)) {
      await undoer.undo(record);
      steps++;
    }
  } finally {
    await fh.close();
  }
  await syncFileSystem(roots.upper);
  return steps;
}

/** Applies the inverse of one record, touching only paths below the upper dir or a volume, reached through real
 *  directories. */
class Undoer {
  readonly #roots: TreeRoots;
  readonly #dir: string;

  constructor(roots: TreeRoots, dir: string) {
    this.#roots = roots;
    this.#dir = dir;
  }

  /** The absolute path of `rel` when each of its ancestors below its tree's dir is a real directory; null when one
   *  is missing. Never goes through a symlink. */
  async #reach(rel: Buffer): Promise<Buffer | null> {
    const split = this.#roots.split(rel);
    if (split === null) throw new UndoLogCorruptError(`undo names ${rel.toString('utf8')}, which is in no tree of this twin`);
    const { base, rest } = split;
    if (rest.length === 0) return base;
    let i = rest.indexOf(0x2f);
    while (i >= 0) {
      const st = await lstatOrNull(Buffer.concat([base, Buffer.from('/'), rest.subarray(0, i)]));
      if (st === null) return null;
      if (!st.isDirectory()) throw new UndoLogCorruptError(`undo would go through ${rest.subarray(0, i).toString('utf8')}, which is not a directory`);
      i = rest.indexOf(0x2f, i + 1);
    }
    return Buffer.concat([base, Buffer.from('/'), rest]);
  }

  async undo(r: UndoRecord): Promise<void> {
    const rel = recordPath(r);
    const show = rel.toString('utf8');
    switch (r.o) {
      case 'C': {
        const abs = await this.#reach(rel);
        if (abs !== null && (await lstatOrNull(abs)) !== null) await rm(abs, { recursive: true, force: true });
        return;
      }
      case 'R': {
        const slot = join(this.#dir, undoAreaName, String(r.u));
        // Not in the undo area: the move never happened (or was undone by an earlier attempt).
        if ((await lstatOrNull(slot)) === null) return;
        const abs = await this.#reach(rel);
        if (abs === null) throw new UndoLogCorruptError(`the parent of ${show} is missing; cannot put it back`);
        if ((await lstatOrNull(abs)) !== null) await rm(abs, { recursive: true, force: true });
        await rename(slot, abs);
        return;
      }
      case 'D': {
        const abs = await this.#dirAt(rel, show);
        // chown before chmod: chown clears setuid/setgid.
        await lchown(abs, r.uid, r.gid);
        await chmod(abs, r.mode);
        await lutimes(abs, timeOf(BigInt(r.at)), timeOf(BigInt(r.mt)));
        return;
      }
      case 'X': {
        const abs = (await this.#dirAt(rel, show)).toString('utf8');
        const current = (await readXattrs([abs])).get(abs) ?? [];
        // overlayfs' own bookkeeping (redirect, origin, impure...) is never written from a log: staging changes none
        // of it but the opaque flag.
        const ours = (n: string): boolean => !n.startsWith('trusted.overlay.') || n === opaqueXattr;
        const before = new Map(r.x.filter(([n]) => ours(n)).map(([n, v]) => [n, Buffer.from(v, 'hex')]));
        for (const [name] of current) if (ours(name) && !before.has(name)) await removeXattr(name, [abs]);
        const now = new Map(current);
        const restore = [...before].filter(([n, v]) => !(now.get(n)?.equals(v) ?? false));
        await writeXattrs([{ path: abs, xattrs: restore }], this.#dir);
        return;
      }
    }
  }

  async #dirAt(rel: Buffer, show: string): Promise<Buffer> {
    const abs = await this.#reach(rel);
    const st = abs === null ? null : await lstatOrNull(abs);
    if (abs === null || st?.isDirectory() !== true) throw new UndoLogCorruptError(`${show || '.'} is not a directory; cannot restore its attributes`);
    return abs;
  }
}

/** What recoverStaging did. `rebooted`: the machine restarted since the commit began, so lines of its log may have
 *  been lost with the page cache; restage the container from its latest full checkpoint. */
export type RecoveryOutcome =
  | { action: 'none' }
  | { action: 'rolled-forward'; intent: StageIntent | null }
  | { action: 'undone'; intent: StageIntent | null; steps: number; rebooted: boolean };

/** Names in the tmp dir that older runs or validation's probe leave after a crash: never seen by a twin, removed. */
const strayPrefixes = ['.stage-', '.xattr-restore-', '.xattr-probe-'];

export function isStrayTemp(name: string): boolean {
  return strayPrefixes.some((p) => name.startsWith(p));
}

export function undoAreaOf(dir: string): string {
  return join(dir, undoAreaName);
}

export { logName as undoLogName };
