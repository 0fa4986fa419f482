// Runs the real `twinlayer` CLI as a child process for end-to-end tests, collecting its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';

import { killTree } from './kill-tree.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** TWINLAYER_BENCH_BIN: another tree's bin/twinlayer.js (a benchmark's "before" in the same run style). */
const bin = process.env['TWINLAYER_BENCH_BIN'] ?? join(repoRoot, 'bin', 'twinlayer.js');

export interface TwinlayerProcess {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  /** Waits (bounded) until a log line matches. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

export function spawnTwinlayer(args: string[], env: Record<string, string>, opts: { netns?: string; echo?: boolean } = {}): TwinlayerProcess {
  const base = [process.execPath, bin, ...args];
  const [file, ...rest] = (opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...base] : base) as [string, ...string[]];
  const child = spawn(file, rest, {
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const onData = (buf: Buffer): void => {
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line) continue;
      lines.push(line);
      if (opts.echo || process.env['TWINLAYER_TEST_ECHO']) process.stderr.write(`[${args[0]}] ${line}\n`);
      for (const w of [...waiters]) if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    lines,
    exited,
    waitForLine(re, timeoutMs) {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { re, resolve: (l: string) => { clearTimeout(t); resolve(l); } };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no line matching ${re} within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`twinlayer ${args[0]} exited (${code}) before a line matched ${re}; last lines:\n${lines.slice(-15).join('\n')}`));
          }
        });
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGKILL takes the tools it runs with it, as systemd does (see kill-tree.ts).
        if (signal === 'SIGKILL' && child.pid !== undefined) await killTree(child.pid);
        else child.kill(signal);
      }
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
