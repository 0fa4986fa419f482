// Runs the Debian tools this unit needs (attr's getfattr/setfattr, coreutils' mknod and sync) because Node has
// no xattr or mknod API. Everything that spawns lives here and in xattr.ts / whiteout-node.ts, so a native addon
// can replace them later.
import { spawn } from 'node:child_process';
import { ChangesetToolError } from './errors.js';

export interface ToolResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export async function runTool(cmd: string, args: readonly string[]): Promise<ToolResult> {
  return await new Promise<ToolResult>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new ChangesetToolError(`cannot run ${cmd}: ${e.message}`, { hint: 'install Debian packages attr and coreutils' }, { cause: e })));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

export async function runToolOk(cmd: string, args: readonly string[], path?: string): Promise<ToolResult> {
  const r = await runTool(cmd, args);
  if (r.code !== 0) {
    throw new ChangesetToolError(`${cmd} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 500)}`, path === undefined ? {} : { path });
  }
  return r;
}

/** Flushes the file system holding `dir` (syncfs), covering every file, rename and directory written there. */
export async function syncFileSystem(dir: string): Promise<void> {
  await runToolOk('sync', ['-f', dir], dir);
}

/** Splits paths into batches that keep one command line well under ARG_MAX. */
export function batches(paths: readonly string[], maxCount = 512, maxBytes = 96 * 1024): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let bytes = 0;
  for (const p of paths) {
    const len = Buffer.byteLength(p) + 1;
    if (cur.length > 0 && (cur.length >= maxCount || bytes + len > maxBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(p);
    bytes += len;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
