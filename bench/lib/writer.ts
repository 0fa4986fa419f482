// Writes inside a container without a `docker exec` per write: one long-running `sh` (docker exec -i) reads
// commands from its stdin and acknowledges each on stdout. The ack only says "done"; the moment the write
// returned is taken from the kernel: an inotify watch (fs.watch) on the primary's upper dir sees the last
// modification of the file right after its last write(2) returns, with no exec round trip in between.
import { spawn, type ChildProcess } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Engine } from '../../src/lab/engine.js';

export class ContainerShell {
  readonly #child: ChildProcess;
  #buf = '';
  #n = 0;
  readonly #waiters = new Map<string, (status: number) => void>();
  #exited = false;

  constructor(engine: Pick<Engine, 'socketPath'>, container: string) {
    this.#child = spawn('docker', ['-H', `unix://${engine.socketPath}`, 'exec', '-i', container, 'sh'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stdout?.setEncoding('utf8');
    this.#child.stdout?.on('data', (chunk: string) => {
      this.#buf += chunk;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const m = /^__ack (\S+) (\d+)$/.exec(line);
        if (m) this.#waiters.get(m[1]!)?.(Number(m[2]));
      }
    });
    this.#child.stderr?.resume();
    this.#child.on('exit', () => {
      this.#exited = true;
      for (const w of this.#waiters.values()) w(-1);
    });
  }

  /** Runs one shell command line inside the container; rejects on a non-zero status or after timeoutMs. */
  run(command: string, timeoutMs = 120_000): Promise<void> {
    if (this.#exited) return Promise.reject(new Error('container shell exited'));
    const id = `c${this.#n++}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiters.delete(id);
        reject(new Error(`container command timed out after ${timeoutMs} ms: ${command.slice(0, 80)}`));
      }, timeoutMs);
      this.#waiters.set(id, (status) => {
        clearTimeout(t);
        this.#waiters.delete(id);
        if (status === 0) resolve();
        else reject(new Error(`container command failed (${status}): ${command.slice(0, 80)}`));
      });
      this.#child.stdin?.write(`${command}; echo "__ack ${id} $?"\n`);
    });
  }

  close(): void {
    this.#child.stdin?.end();
    if (!this.#exited) setTimeout(() => this.#child.kill('SIGKILL'), 2_000).unref();
  }
}

/** The shell command that replaces `path` with `bytes` bytes: a token line, then random data. */
export function writeCommand(path: string, bytes: number, token: string): string {
  const rest = bytes - token.length - 1;
  if (rest < 0) throw new RangeError(`a change of ${bytes} bytes cannot hold the token`);
  return `{ echo ${token}; head -c ${rest} /dev/urandom; } > ${path}`;
}

/** performance.now() of the last inotify event per file name in one directory. */
export class WriteClock {
  readonly #watcher: FSWatcher;
  readonly #last = new Map<string, number>();

  constructor(dir: string) {
    this.#watcher = watch(dir, { persistent: false }, (_event, name) => {
      if (typeof name === 'string') this.#last.set(name, performance.now());
    });
  }

  reset(name: string): void {
    this.#last.delete(name);
  }

  last(name: string): number | undefined {
    return this.#last.get(name);
  }

  close(): void {
    this.#watcher.close();
  }
}

/** True when `file` starts with `token\n` and has exactly `bytes` bytes (staging renames whole files in). */
export async function fileHolds(file: string, token: string, bytes: number): Promise<boolean> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return false;
  }
  try {
    const st = await fh.stat();
    if (st.size !== bytes) return false;
    const buf = Buffer.alloc(token.length + 1);
    await fh.read(buf, 0, buf.length, 0);
    return buf.toString('utf8') === `${token}\n`;
  } finally {
    await fh.close();
  }
}

/** Polls `probe` every `everyMs` until true; returns performance.now() of the success, or throws after timeoutMs. */
export async function pollUntil(what: string, timeoutMs: number, everyMs: number, probe: () => Promise<boolean>): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await probe()) return performance.now();
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
