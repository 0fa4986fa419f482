// Processes the lab starts and how it ends them. Only pids the lab spawned, or pids living inside a network
// namespace the lab created (and their descendants), are ever signalled.
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

export interface LabProcess {
  readonly pid: number;
  readonly label: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnLogged(
  label: string,
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; log?: (line: string) => void; onLine?: (line: string) => void } = {},
): Promise<LabProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    let running = true;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once('exit', (code, signal) => {
        running = false;
        res({ code, signal });
      });
    });
    for (const stream of [child.stdout, child.stderr]) {
      const rl = createInterface({ input: stream });
      rl.on('line', (line) => {
        opts.onLine?.(line);
        opts.log?.(`[${label}] ${line}`);
      });
    }
    child.once('error', (err) => {
      running = false;
      reject(err);
    });
    child.once('spawn', () => {
      const pid = child.pid;
      if (pid === undefined) return reject(new Error(`${label}: no pid after spawn`));
      resolve({
        pid,
        label,
        exited,
        get running() {
          return running;
        },
        kill(signal: NodeJS.Signals = 'SIGTERM') {
          if (running) child.kill(signal);
        },
      });
    });
  });
}

interface ProcStat {
  ppid: number;
  state: string;
}

async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ppid ..." — comm may hold spaces and parentheses, so split after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

export async function isAlive(pid: number): Promise<boolean> {
  const st = await readStat(pid);
  return st !== null && st.state !== 'Z' && st.state !== 'X';
}

/** `roots` plus every process descending from them (one /proc scan). */
export async function withDescendants(roots: readonly number[]): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = await readStat(Number(name));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(name));
    children.set(st.ppid, list);
  }
  const seen = new Set<number>();
  const todo = [...roots];
  while (todo.length > 0) {
    const pid = todo.pop();
    if (pid === undefined || seen.has(pid)) continue;
    seen.add(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return [...seen];
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Freeze all first, then SIGKILL all: no process gets to react to another's death (keepalived's parent would
 * respawn its VRRP child; a shim would report its container's exit). Waits, bounded, until they are gone.
 * Returns the pids still alive after `timeoutMs`.
 */
export async function killHard(pids: readonly number[], timeoutMs = 5_000): Promise<number[]> {
  for (const pid of pids) signal(pid, 'SIGSTOP');
  for (const pid of pids) signal(pid, 'SIGKILL');
  const deadline = Date.now() + timeoutMs;
  let alive = [...pids];
  while (alive.length > 0 && Date.now() < deadline) {
    const next: number[] = [];
    for (const pid of alive) if (await isAlive(pid)) next.push(pid);
    alive = next;
    if (alive.length > 0) await new Promise((r) => setTimeout(r, 20));
  }
  return alive;
}
