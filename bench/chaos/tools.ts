// What the chaos soak does to the machine besides the lab: commands inside containers through the engine's API,
// their upper dirs and exports, a small loop-mounted file system for a host's Docker data root, and bounded sleeps.
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { readExport, type Tree } from '../../test/support/export-tree.js';

const execFileP = promisify(execFile);

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return;
  await new Promise<void>((resolve) => {
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `sh -c script` inside `name` through the engine's API (a docker CLI per write would cost a process each). */
export async function dockerExec(docker: Docker, name: string, script: string, timeoutMs = 30_000): Promise<number> {
  const run = (async () => {
    const ex = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
    const stream = await ex.start({ hijack: true, stdin: false });
    await new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', reject);
      stream.resume();
    });
    const info = await ex.inspect();
    return info.ExitCode ?? -1;
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`docker exec in ${name}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The container's upper dir; with `twinOnly`, undefined unless it is a twin (label twinlayer.twin=true). */
export async function upperDir(docker: Docker, name: string, opts: { twinOnly?: boolean } = {}): Promise<string | undefined> {
  const info = (await docker.getContainer(name).inspect()) as { GraphDriver: { Data: Record<string, string> | null }; Config: { Labels: Record<string, string> | null } };
  if (opts.twinOnly === true && info.Config.Labels?.['twinlayer.twin'] !== 'true') return undefined;
  return info.GraphDriver.Data?.['UpperDir'];
}

export async function exportTree(docker: Docker, name: string): Promise<Tree> {
  return readExport(await docker.getContainer(name).export());
}

/** A loop-mounted ext4 of `sizeMb` under a fresh temp dir; a host's engine lives on it. */
export async function mountSmallFs(sizeMb: number): Promise<{ dir: string; unmount(): Promise<void> }> {
  const base = await mkdtemp(join(tmpdir(), 'tlc-'));
  const img = join(base, 'fs.img');
  const dir = join(base, 'm');
  await mkdir(dir);
  await execFileP('truncate', ['-s', `${sizeMb}M`, img]);
  await execFileP('mkfs.ext4', ['-q', '-F', '-m', '0', img], { timeout: 60_000 });
  await execFileP('mount', ['-o', 'loop', img, dir]);
  let mounted = true;
  // An exit without the normal teardown (SIGINT: the lab's own handler destroys it and exits) still unmounts.
  const unmountSync = (): void => {
    if (!mounted) return;
    try {
      execFileSync('umount', ['-l', dir], { timeout: 10_000 });
      execFileSync('rm', ['-rf', base], { timeout: 30_000 });
    } catch {
      // best effort on the way out
    }
  };
  process.on('exit', unmountSync);
  return {
    dir,
    async unmount() {
      if (!mounted) return;
      // mount -o loop sets autoclear: the loop device goes with the last unmount.
      await execFileP('umount', [dir]).catch(async () => execFileP('umount', ['-l', dir]));
      mounted = false;
      process.off('exit', unmountSync);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** The files `ldd` names for a binary (it runs in a busybox image that has no libc). */
export async function withLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execFileP('ldd', [binary]);
  const libs = [...stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]).filter((p): p is string => p !== undefined);
  return [binary, ...libs];
}
