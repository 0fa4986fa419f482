// The peer a user would pick instead: lsyncd (Debian) mirroring the primary's upper dir with rsync, at the
// lowest delay it accepts (0: rsync runs as soon as inotify reports a closed write).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pollUntil } from './writer.js';

export interface Lsyncd {
  pid: number;
  stop(): Promise<void>;
}

const luaString = (s: string): string => JSON.stringify(s);

/** Starts lsyncd in the foreground and waits (bounded) until its startup rsync of `source` finished. */
export async function startLsyncd(source: string, target: string, workDir: string): Promise<Lsyncd> {
  const conf = join(workDir, 'lsyncd.lua');
  const logFile = join(workDir, 'lsyncd.log');
  await writeFile(conf, [
    `settings { nodaemon = true, logfile = ${luaString(logFile)}, insist = false }`,
    // --ignore-times: rsync's quick check (same size, same mtime second) would skip a same-size rewrite made
    // within the same second, i.e. lose it until the next change; every listed file is transferred instead.
    `sync { default.rsync, source = ${luaString(source + '/')}, target = ${luaString(target + '/')}, delay = 0, rsync = { _extra = { "--ignore-times" } } }`,
    '',
  ].join('\n'));
  const child: ChildProcess = spawn('lsyncd', [conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  };
  try {
    await pollUntil('lsyncd startup sync', 120_000, 50, async () => {
      if (child.exitCode !== null) throw new Error(`lsyncd exited: ${stderr.slice(-500)}`);
      const log = await readFile(logFile, 'utf8').catch(() => '');
      return /Startup of .* finished/.test(log);
    });
  } catch (err) {
    await stop();
    throw err;
  }
  if (child.pid === undefined) throw new Error('lsyncd did not spawn');
  return { pid: child.pid, stop };
}
