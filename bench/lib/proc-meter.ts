// CPU seconds and peak RSS of one process over a workload, from /proc. The peak is reset at the start of each
// workload by writing 5 to /proc/<pid>/clear_refs (Linux >= 4.0), so VmHWM is the peak of that workload only.
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';

/** getconf CLK_TCK on Linux x86-64 and arm64. */
const TICKS_PER_SECOND = 100;

export interface ProcUsage {
  cpuSeconds: number;
  peakRssMB: number;
}

async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at the closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field (index 0 here).
  return Number(fields[11]) + Number(fields[12]);
}

async function peakRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) : Number.NaN;
}

export class ProcMeter {
  readonly pid: number;
  #startTicks = 0;

  constructor(pid: number) {
    this.pid = pid;
  }

  async begin(): Promise<void> {
    await writeFile(`/proc/${this.pid}/clear_refs`, '5');
    this.#startTicks = await cpuTicks(this.pid);
  }

  async end(): Promise<ProcUsage> {
    const ticks = await cpuTicks(this.pid);
    const kb = await peakRssKb(this.pid);
    return { cpuSeconds: Math.round(((ticks - this.#startTicks) / TICKS_PER_SECOND) * 100) / 100, peakRssMB: Math.round(kb / 102.4) / 10 };
  }
}

/** Meters several processes over the same workload; a process that exited reports NaN. */
export async function measure<T>(meters: Record<string, ProcMeter>, work: () => Promise<T>): Promise<{ result: T; usage: Record<string, ProcUsage> }> {
  for (const m of Object.values(meters)) await m.begin();
  const result = await work();
  const usage: Record<string, ProcUsage> = {};
  for (const [name, m] of Object.entries(meters)) {
    usage[name] = await m.end().catch(() => ({ cpuSeconds: Number.NaN, peakRssMB: Number.NaN }));
  }
  return { result, usage };
}

/** VmRSS of a process now (MB). */
export async function rssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : Number.NaN;
}

/** inotify watches of a process: the `inotify wd:` lines of its inotify descriptors' fdinfo. */
export async function inotifyWatches(pid: number): Promise<number> {
  let n = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target !== 'anon_inode:inotify') continue;
    const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
    n += info.split('\n').filter((l) => l.startsWith('inotify wd:')).length;
  }
  return n;
}

/** inotify instances (descriptors) a process holds: fs.inotify.max_user_instances bounds them per user. */
export async function inotifyInstances(pid: number): Promise<number> {
  let n = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === 'anon_inode:inotify') n++;
  }
  return n;
}
