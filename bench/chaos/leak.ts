// Resident memory and open descriptors of each twinlayer process over time, from /proc, and the leak criterion
// the soak applies to them (pure, so it has unit tests).
import { readdir, readFile } from 'node:fs/promises';
import type { LeakBounds } from './plan.js';

export interface Sample {
  /** ms since the soak started. */
  t: number;
  rssMb: number;
  fds: number;
  /** The process's V8 heap in use plus its external memory (Buffers) as its last major GC left them, from its status;
   *  absent before its first major GC or when it did not answer. */
  heapMb?: number;
  /** When that GC ended (ms since the soak started). */
  heapAt?: number;
  /** The agent's RSS less its garbage not yet collected (heap in use and external memory above the level its last
   *  major GC left), from one reading of its status; absent when it did not answer or had had no major GC. */
  rssLessGarbageMb?: number;
}

/** One life of one process: a restarted agent is a new series. */
export interface Series {
  name: string;
  pid: number;
  /** The host whose agent this is (its role switches are its own). */
  host?: string;
  /** ms since the soak started. */
  startedAt: number;
  samples: Sample[];
}

export interface LeakVerdict {
  name: string;
  pid: number;
  judged: boolean;
  /** Why the series was not judged, or what the fits say. */
  note: string;
  windowMs: number;
  rssFirstMb: number;
  rssLastMb: number;
  /** Growth of the least-squares line of RSS over the judged window (MB): of RSS less the garbage when lessGarbage. */
  rssFitGrowthMb: number;
  /** RSS was judged less the garbage not yet collected (see judgeSeries). */
  lessGarbage: boolean;
  fdsFirst: number;
  fdsLast: number;
  fdsMax: number;
  fdFitGrowth: number;
  /** The heap as major GCs left it (heapUsed + external) within the role judged (or the whole life when no
   *  role is long enough): fit growth (MB), or null when not judged. */
  heapFitGrowthMb: number | null;
  leak: boolean;
}

export async function sampleProcess(pid: number, t: number): Promise<Sample | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    if (m === null) return null;
    const fds = (await readdir(`/proc/${pid}/fd`)).length;
    return { t, rssMb: Math.round((Number(m[1]) / 1024) * 10) / 10, fds };
  } catch {
    return null; // exited
  }
}

/** Slope (per ms) of the least-squares line through (t, y). */
function slope(points: readonly { t: number; y: number }[]): number {
  const n = points.length;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** A failover as one host lived it (ms since the soak started): from its start until that host's new role was
 *  reached — the new primary's promotion over, the old primary back as the standby (a minute later in the quick
 *  soak: its engine back, its rejoin, under faults). No host: both hosts. */
export interface RoleSwitch {
  from: number;
  to: number;
  host?: string;
}

/**
 * The stretches of a life in which its agent kept one role: a role switch (promotion, demotion) is the agent's
 * peak of memory — finalize, boots, a full checkpoint or a staged one per container — and what the allocator keeps
 * of that peak is a step in RSS, not a growth (bench/role-switch-memory.ts: the V8 heap flat over switch after
 * switch while RSS steps up and then stays level). So growth is judged within one role, after a warm-up each.
 */
export function judgeLife(s: Series, bounds: LeakBounds, switches: readonly RoleSwitch[]): LeakVerdict {
  const end = s.samples.at(-1)?.t ?? s.startedAt;
  const cuts = switches.filter((w) => (w.host === undefined || s.host === undefined || w.host === s.host) && w.to > s.startedAt && w.from < end).sort((x, y) => x.from - y.from);
  const stretches: { from: number; to: number }[] = [];
  let from = s.startedAt;
  for (const w of cuts) {
    stretches.push({ from, to: Math.max(from, w.from) });
    from = Math.max(from, w.to);
  }
  stretches.push({ from, to: Infinity });
  const verdicts = stretches.map((x, i) => judgeSeries({ ...s, startedAt: x.from, samples: s.samples.filter((y) => y.t >= x.from && y.t < x.to) }, bounds, i === 0 || bounds.rssAfterSwitch));
  const judged = verdicts.filter((v) => v.judged);
  const worst = judged.find((v) => v.leak) ?? judged.sort((x, y) => y.windowMs - x.windowMs)[0];
  const fdsMax = Math.max(0, ...s.samples.map((x) => x.fds));
  // The heap is what the program holds, whatever the allocator keeps, judged as each major GC leaves it: heapUsed
  // at any other moment counts garbage not yet collected (a sample between two major GCs can read 100 MB above the
  // live set, and V8 may go a minute without one: a floor over samples took that for growth), so only the level after
  // a collection is what a leak raises. Within each role, as RSS: a primary holds more than a standby (its tracked
  // trees, the shipped state of every container). A stretch takes only the levels of its own GCs, not one the other
  // role left. A life with no role long enough to judge is not judged, as for RSS: across a switch the step between
  // the roles' levels reads as growth (CI: a standby's 45 MB, then 87 MB as primary, judged whole as a leak).
  // At least two GCs: one level repeated is no line to judge (heap not judged).
  const heapOf = (from: number, to: number): Sample[] => {
    const own = s.samples.flatMap((x) => (x.heapMb === undefined || x.heapAt === undefined || x.t < from || x.t >= to || x.heapAt < from ? [] : [{ t: x.t, rssMb: x.heapMb, fds: 0, at: x.heapAt }]));
    return new Set(own.map((x) => x.at)).size < 2 ? [] : own.map(({ t, rssMb, fds }) => ({ t, rssMb, fds }));
  };
  const heapByRole = stretches.map((x) => judgeSeries({ ...s, startedAt: x.from, samples: heapOf(x.from, x.to) }, bounds)).filter((v) => v.judged);
  const heap = heapByRole.find((v) => v.leak) ?? heapByRole.sort((x, y) => y.windowMs - x.windowMs)[0] ?? judgeSeries({ ...s, samples: [] }, bounds);
  const heapPart = heap.judged ? (heap.leak ? `heap ${heap.note.replace(/^RSS /, '')}` : `heap flat (${heap.rssFirstMb} → ${heap.rssLastMb} MB, fit ${heap.rssFitGrowthMb >= 0 ? '+' : ''}${heap.rssFitGrowthMb})`) : 'heap not judged';
  const heapFields = { heapFitGrowthMb: heap.judged ? heap.rssFitGrowthMb : null };
  const switchesPart = cuts.length > 0 ? `; ${cuts.length} role switch(es) in this life, RSS judged in ${judged.length} of ${stretches.length} stretch(es) between them` : '';
  if (worst === undefined) {
    const longest = verdicts.at(-1) ?? judgeSeries(s, bounds);
    return { ...longest, ...heapFields, judged: heap.judged, windowMs: heap.windowMs, fdsMax, leak: heap.leak, note: `RSS ${longest.note}; ${heapPart}${switchesPart}` };
  }
  return { ...worst, ...heapFields, fdsMax, leak: worst.leak || heap.leak, note: `${worst.note}; ${heapPart}${switchesPart}` };
}

/**
 * A series leaks when, after its warm-up and over at least minWindowMs:
 * - RSS: the least-squares line grows by more than rssGrowthMb AND by more than rssGrowthFraction of the median
 *   of the window's first quarter (GC sawtooth and a pool filling up stay under both), or
 * - descriptors: the line grows by more than fdGrowth AND the last quarter never drops to the first quarter's
 *   maximum (a burst of connections that closes again is not a leak).
 */
export function judgeSeries(s: Series, bounds: LeakBounds, judgeRss = true): LeakVerdict {
  const from = s.startedAt + bounds.warmUpMs;
  const win = s.samples.filter((x) => x.t >= from);
  const base: LeakVerdict = {
    name: s.name, pid: s.pid, judged: false, note: '', windowMs: 0, rssFirstMb: 0, rssLastMb: 0, rssFitGrowthMb: 0, lessGarbage: false,
    fdsFirst: 0, fdsLast: 0, fdsMax: Math.max(0, ...s.samples.map((x) => x.fds)), fdFitGrowth: 0, heapFitGrowthMb: null, leak: false,
  };
  const first = win[0];
  const last = win.at(-1);
  if (first === undefined || last === undefined || win.length < 8 || last.t - first.t < bounds.minWindowMs) {
    return { ...base, note: `not judged: ${first && last ? Math.round((last.t - first.t) / 1000) : 0} s after warm-up (< ${Math.round(bounds.minWindowMs / 1000)} s)` };
  }
  const windowMs = last.t - first.t;
  const q = Math.max(2, Math.floor(win.length / 4));
  const head = win.slice(0, q);
  const tail = win.slice(-q);
  // RSS counts the garbage a busy agent makes between two major GCs (its heap in use and its Buffers not yet freed:
  // a primary's RSS went 137 → 184 MB over 40 s with no major GC, heapUsed 36 → 69 MB, external 6 → 39 MB, and back
  // at the next GC), which a one-minute fit reads as growth. So RSS is judged less that garbage (above the level the
  // last major GC left) where the agent's status gave it for at least half the window and all of its last quarter
  // (an agent whose status stops answering as it grows is judged on raw RSS); native memory, what the allocator keeps
  // and a heap that grows from GC to GC still count. What the program keeps is judged by the heap level each major
  // GC leaves (judgeLife); a leak too slow to bring two major GCs in a stretch is not told from garbage there.
  const rssPoints = win.map((x) => ({ t: x.t, y: x.rssMb }));
  const lessGarbage = win.filter((x) => x.rssLessGarbageMb !== undefined).length * 2 >= win.length && tail.every((x) => x.rssLessGarbageMb !== undefined);
  const fitted = lessGarbage ? win.flatMap((x) => (x.rssLessGarbageMb === undefined ? [] : [{ t: x.t, y: x.rssLessGarbageMb }])) : rssPoints;
  const rssGrowth = slope(fitted) * windowMs;
  const fdGrowth = slope(win.map((x) => ({ t: x.t, y: x.fds }))) * windowMs;
  const rssBase = median(head.map((x) => x.rssMb));
  const rssLeak = judgeRss && rssGrowth > bounds.rssGrowthMb && rssGrowth > bounds.rssGrowthFraction * rssBase;
  const fdLeak = fdGrowth > bounds.fdGrowth && Math.min(...tail.map((x) => x.fds)) > Math.max(...head.map((x) => x.fds));
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  return {
    ...base, judged: true, windowMs,
    rssFirstMb: first.rssMb, rssLastMb: last.rssMb, rssFitGrowthMb: r1(rssGrowth), lessGarbage,
    fdsFirst: first.fds, fdsLast: last.fds, fdFitGrowth: r1(fdGrowth),
    leak: rssLeak || fdLeak,
    note: `${rssLeak ? `RSS${lessGarbage ? ' less the garbage not yet collected' : ''} grows ${r1(rssGrowth)} MB over ${Math.round(windowMs / 1000)} s (from ${rssBase} MB)` : ''}${rssLeak && fdLeak ? '; ' : ''}${fdLeak ? `descriptors grow ${r1(fdGrowth)} over ${Math.round(windowMs / 1000)} s` : ''}` || (judgeRss ? 'flat' : 'descriptors flat, RSS not judged after a role switch'),
  };
}
