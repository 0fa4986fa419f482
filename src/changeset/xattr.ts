// Extended attributes through Debian's attr tools, many paths per spawn. Never follows symlinks (-h).
import { open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChangesetToolError } from './errors.js';
import { batches, runTool, runToolOk } from './tools.js';
import { xattrFootprint } from './xattr-rules.js';

export type Xattrs = Array<[string, Buffer]>;

/** getfattr escapes bytes as `\ooo` octal in names and paths. */
function unescapeOctal(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i] ?? 0;
    if (b === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

function escapeOctal(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[0-9A-Za-z/._+:@-]/.test(c) ? c : '\\' + b.toString(8).padStart(3, '0');
  }
  return out;
}

/** Reads every xattr of each absolute path (symlinks themselves, not their targets). Paths that vanished
 *  meanwhile are simply absent from the result. */
export async function readXattrs(absPaths: readonly string[]): Promise<Map<string, Xattrs>> {
  const result = new Map<string, Xattrs>();
  for (const batch of batches(absPaths)) {
    const r = await runTool('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'hex', '--', ...batch]);
    if (r.code !== 0) {
      const bad = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.endsWith('No such file or directory'));
      if (bad.length > 0) throw new ChangesetToolError(`getfattr failed: ${bad.slice(0, 3).join('; ')}`);
    }
    let current: Xattrs | null = null;
    for (const line of r.stdout.toString('utf8').split('\n')) {
      if (line.startsWith('# file: ')) {
        current = [];
        result.set(unescapeOctal(line.slice('# file: '.length)), current);
      } else if (line !== '' && current !== null) {
        const eq = line.indexOf('=');
        const name = unescapeOctal(eq < 0 ? line : line.slice(0, eq));
        const text = eq < 0 ? '' : line.slice(eq + 1);
        let value: Buffer;
        if (text.startsWith('0x')) value = Buffer.from(text.slice(2), 'hex');
        else if (text.startsWith('"') && text.endsWith('"')) value = Buffer.from(unescapeOctal(text.slice(1, -1)), 'utf8');
        else throw new ChangesetToolError(`getfattr printed an unexpected value for ${name}`);
        current.push([name, value]);
      }
    }
  }
  for (const list of result.values()) list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return result;
}

/** Sets the given xattrs with one `setfattr --restore` per call; the dump file lives in `tmpDir`. */
export async function writeXattrs(items: ReadonlyArray<{ path: string; xattrs: ReadonlyArray<readonly [string, Buffer]> }>, tmpDir: string): Promise<void> {
  const todo = items.filter((i) => i.xattrs.length > 0);
  if (todo.length === 0) return;
  const dump = join(tmpDir, `.xattr-restore-${randomBytes(6).toString('hex')}`);
  const text = todo
    .map((i) => `# file: ${escapeOctal(i.path)}\n${i.xattrs.map(([n, v]) => `${escapeOctal(n)}=0x${v.toString('hex')}\n`).join('')}\n`)
    .join('');
  await writeFile(dump, text, { mode: 0o600 });
  try {
    await runToolOk('setfattr', ['-h', `--restore=${dump}`]);
  } finally {
    await rm(dump, { force: true });
  }
}

/** Removes one xattr name from each path (each path must carry it). */
export async function removeXattr(name: string, absPaths: readonly string[]): Promise<void> {
  for (const batch of batches(absPaths)) await runToolOk('setfattr', ['-h', '-x', name, '--', ...batch]);
}

/** How the kernel says an inode's xattrs do not fit: ENOSPC (ext4 without ea_inode), E2BIG, ERANGE. */
const noRoom = /No space left on device|Argument list too long|Numerical result out of range/;

/**
 * Whether xattrs of these names and value sizes fit one inode of the file system holding `tmpDir`: sets the same number of names,
 * of the same lengths (at least), with values of the same sizes, as `trusted.*` on a scratch file there (trusted.*
 * is stored like user.* and security.* without their checks). Returns the kernel's refusal, or null when they fit.
 * Other failures (no such tool, no xattr support at all) throw ChangesetToolError.
 */
export async function probeXattrRoom(tmpDir: string, layout: ReadonlyArray<readonly [name: string, valueBytes: number]>): Promise<string | null> {
  const file = join(tmpDir, `.xattr-probe-${randomBytes(6).toString('hex')}`);
  const probe: Array<[string, Buffer]> = layout.map(([name, valueBytes], i) => {
    const suffix = name.slice(name.indexOf('.') + 1);
    return [`trusted.p${i}`.padEnd('trusted.'.length + suffix.length, 'x'), Buffer.alloc(valueBytes, 0x61)];
  });
  await (await open(file, 'wx', 0o600)).close();
  try {
    await writeXattrs([{ path: file, xattrs: probe }], tmpDir);
    return null;
  } catch (err) {
    if (err instanceof ChangesetToolError && noRoom.test(err.message)) {
      return `its xattrs (${xattrFootprint(layout)} bytes on disk) do not fit one inode of the target file system: ${err.message.replace(/^setfattr failed \(exit \d+\): /, '')}`;
    }
    throw err;
  } finally {
    await rm(file, { force: true });
  }
}
