// The undo log of one commit being staged: a header line (the intent: which commit, on which boot), then one line
// per step, each appended before the step it describes. Undoing replays the lines in reverse. Pure: encoding,
// parsing and the path rules; the file itself is written and replayed by staging-txn.ts.
//
// The log lives on local disk beside the twin's upper dir, but is read as untrusted: zod-parsed line by line, every
// path relative with no empty, `.` or `..` component and no NUL, undo-area slots plain integers. Nothing it says
// can name a path outside the upper dir (symlinks on the way are refused where the path is used).
import { z } from 'zod';
import { TwinlayerError } from '../log/errors.js';
import { pathMaxBytes } from './limits.js';

/** What the caller stages: recovery compares it with what the caller recorded as staged. */
export interface StageIntent {
  container: string;
  twinId: string;
  generation: number;
  seq: number;
  digest: string;
}

const intentSchema = z.object({
  container: z.string().min(1).max(256),
  twinId: z.string().min(1).max(128),
  generation: z.number().int().nonnegative(),
  seq: z.number().int().nonnegative(),
  digest: z.string().max(128),
}).strict();

export const undoHeaderSchema = z.object({
  v: z.literal(1),
  kind: z.enum(['full', 'delta']),
  /** /proc/sys/kernel/random/boot_id when the commit began: another boot means the page cache may have lost lines. */
  bootId: z.string().max(64),
  startedAt: z.string().max(64),
  intent: intentSchema.nullable(),
}).strict();
export type UndoHeader = z.infer<typeof undoHeaderSchema>;

const relPath = z.string().max(pathMaxBytes);
const hexBytes = z.string().max(2 * 1024 * 1024).regex(/^(?:[0-9a-f]{2})*$/);
const nsText = z.string().regex(/^-?\d{1,24}$/);

export const undoRecordSchema = z.discriminatedUnion('o', [
  /** `p` did not exist; the step creates it. Undo removes whatever is at `p`. */
  z.object({ o: z.literal('C'), p: relPath }).strict(),
  /** What was at `p` (or at the raw bytes `px`, a name on disk that is not UTF-8) moves to undo slot `u`.
   *  Undo, when the slot holds it: removes what is at the path now and moves the slot back. */
  z.object({ o: z.literal('R'), p: relPath.optional(), px: hexBytes.optional(), u: z.number().int().nonnegative().max(2 ** 40) }).strict(),
  /** An existing directory's owner, mode and times before the first change to it or its entries. */
  z.object({
    o: z.literal('D'), p: relPath, uid: z.number().int().nonnegative().max(2 ** 32 - 1), gid: z.number().int().nonnegative().max(2 ** 32 - 1),
    mode: z.number().int().nonnegative().max(0o7777), at: nsText, mt: nsText,
  }).strict(),
  /** Every xattr of an existing directory before its xattrs change: name, value in hex. */
  z.object({ o: z.literal('X'), p: relPath, x: z.array(z.tuple([z.string().min(1).max(255), hexBytes])).max(65536) }).strict(),
]);
export type UndoRecord = z.infer<typeof undoRecordSchema>;

export function encodeLine(value: UndoHeader | UndoRecord): string {
  return `${JSON.stringify(value)}\n`;
}

/** A log that cannot be trusted to undo exactly (a line in the middle does not parse, or names an unsafe path). */
export class UndoLogCorruptError extends TwinlayerError {
  constructor(message: string) {
    super('UNDO_LOG_CORRUPT', message);
  }
}

/** Why the raw bytes of a relative path may not be used under the upper dir, or null. '' (the upper dir itself) only
 *  where `rootAllowed`. */
export function undoPathProblem(rel: Buffer, rootAllowed: boolean): string | null {
  if (rel.length === 0) return rootAllowed ? null : 'the upper dir itself';
  if (rel.length > pathMaxBytes) return 'path too long';
  if (rel.includes(0)) return 'NUL byte in path';
  if (rel[0] === 0x2f) return 'absolute path';
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel[i] !== 0x2f) continue;
    const len = i - start;
    if (len === 0) return 'empty component';
    if (len <= 2 && rel[start] === 0x2e && (len === 1 || rel[start + 1] === 0x2e)) return "'.' or '..' component";
    start = i + 1;
  }
  return null;
}

/** The path a record names, as raw bytes. */
export function recordPath(r: UndoRecord): Buffer {
  if (r.o === 'R' && r.px !== undefined) return Buffer.from(r.px, 'hex');
  return Buffer.from(r.p ?? '', 'utf8');
}

/** Parses one complete line (without its newline); throws UndoLogCorruptError saying which. */
export function parseRecordLine(line: string, where: string): UndoRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new UndoLogCorruptError(`${where}: not JSON`);
  }
  const parsed = undoRecordSchema.safeParse(raw);
  if (!parsed.success) throw new UndoLogCorruptError(`${where}: ${parsed.error.issues[0]?.message ?? 'invalid record'}`);
  const r = parsed.data;
  if (r.o === 'R' && (r.p === undefined) === (r.px === undefined)) throw new UndoLogCorruptError(`${where}: a move names its path by p or px, once`);
  const problem = undoPathProblem(recordPath(r), r.o === 'D' || r.o === 'X');
  if (problem !== null) throw new UndoLogCorruptError(`${where}: unsafe path (${problem})`);
  return r;
}

/** Parses the header line; null when it is absent or torn (written first and synced before any step: nothing was
 *  done). */
export function parseHeader(firstLine: string | null): UndoHeader | null {
  if (firstLine === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(firstLine);
  } catch {
    throw new UndoLogCorruptError('header: not JSON');
  }
  const parsed = undoHeaderSchema.safeParse(raw);
  if (!parsed.success) throw new UndoLogCorruptError(`header: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}
