// What a chaos soak does and when: the sizes of a quick, full or custom-length run, and the fault schedule drawn
// from the seeded PRNG (pure: the same plan and seed give the same schedule).
import { Prng } from './prng.js';

export const KILL_KINDS = ['kill-pusher', 'kill-puller', 'kill-engine-primary', 'kill-engine-standby'] as const;
export type KillKind = (typeof KILL_KINDS)[number];
/** Faults of the fault proxy on one host's path to the bucket (`stall`: the request is never answered). */
export const NET_KINDS = ['reset', 'slowdown', 'truncate', 'stall', 'lose-answer', 'error500'] as const;
export type NetKind = (typeof NET_KINDS)[number];
/** Failovers in the middle of the soak: the whole primary host SIGKILLed (agent, keepalived, engine, containers;
 *  revived later as after a reboot), or its keepalived stopped (the host runs on and demotes itself). */
export const FAILOVER_KINDS = ['failover-kill', 'failover-keepalived'] as const;
export type FailoverKind = (typeof FAILOVER_KINDS)[number];
export type FaultKind = KillKind | NetKind | FailoverKind | 'outage' | 'disk-full';
export const FAULT_KINDS: readonly FaultKind[] = [...KILL_KINDS, ...NET_KINDS, ...FAILOVER_KINDS, 'outage', 'disk-full'];

export type ScheduledFault =
  | { at: number; kind: KillKind; /** How long the killed process stays down before it is started again. */ downMs: number }
  | { at: number; kind: 'outage' | 'disk-full'; ms: number }
  | { at: number; kind: NetKind; host: 'primary' | 'standby'; count: number }
  | { at: number; kind: FailoverKind; /** A killed host comes back with its VRRP state file still saying MASTER (its /run survived). */ keepVrrpStateFile: boolean };

export interface LeakBounds {
  /** Samples of a process's first warmUpMs are not judged (caches, JIT, connection pools fill). */
  warmUpMs: number;
  /** A process life is judged only with at least this much after its warm-up. */
  minWindowMs: number;
  /** Leak when the least-squares fit of RSS grows by more than this over the judged window (MB)... */
  rssGrowthMb: number;
  /** ...and by more than this fraction of the window's first-quarter median. */
  rssGrowthFraction: number;
  /** Leak when the fit of the open descriptors grows by more than this over the window and the window's last
   *  quarter's minimum is above its first quarter's maximum. */
  fdGrowth: number;
  /** Whether RSS is judged in a stretch that begins at a role switch. A new role's RSS climbs for minutes after the
   *  switch, what the allocator keeps of its bursts (a promoted primary's full checkpoints and commits: 237 → 331 MB
   *  over 100 s with its heap level flat at 61-63 MB, quick soak seed 2654238462): the quick soak's one-minute window
   *  cannot tell that from growth, so there the heap level (and descriptors) judge such a stretch; the full soak's
   *  five-minute windows judge RSS too. */
  rssAfterSwitch: boolean;
}

export interface ChaosPlan {
  mode: string;
  /** Protected containers written to (the lab's `web` is protected too and compared as well). */
  containers: number;
  /** Length of the phase with writes and faults (ms). */
  soakMs: number;
  /** The last part of the soak without SIGKILLs of the agents, so each agent has one long life to judge for leaks. */
  agentKillFreeTailMs: number;
  writesPerSecond: number;
  killsPusher: number;
  killsPuller: number;
  killsEnginePrimary: number;
  killsEngineStandby: number;
  /** Down time after a kill before the process or engine is started again (ms range). */
  downMs: [number, number];
  /** Durations of the bucket outages (ms); at least one of them is the longest the plan allows. */
  outagesMs: number[];
  diskFullsMs: number[];
  /** Mean gap between two faults of the fault proxy (ms). */
  netFaultGapMs: number;
  /** A probe written after a fault must be staged on the standby within this much time that no other fault
   *  accounts for (ms). */
  faultConvergeBoundMs: number;
  /** After the soak: the bound for every twin to hold the final marker and the standby to stage the head. */
  finalConvergeMs: number;
  /** Bound for an agent to log "agent started" after a restart (the bucket may be out for the longest outage). */
  agentStartMs: number;
  /** Sampling period of RSS and descriptors of each twinlayer process (ms). */
  sampleMs: number;
  leak: LeakBounds;
  /** Failovers in the middle of the soak (every other one a kill of the whole primary, the first included). */
  failovers: number;
  /** The last part of the soak in which no failover starts, so the last one is over before the writes stop. */
  failoverRoomMs: number;
  /** Bound for each step of a failover: the promotion, the old primary back as the standby, its tails saved. */
  failoverStepMs: number;
  /** The old primary is back as the standby once it has staged, in every container, a head of the new generation read
   *  at most this long before (ms): its replication lag. Writes go on meanwhile, so "the head read just before" would
   *  need a moment at which all containers are current at once, which a standby that follows a second or two behind
   *  may not have for minutes (seed 3051411080: after a 90 s wait 4 of 17 containers were 3–9 s behind the head read
   *  just before, with commits every 0.2–2 s each). A standby that does not keep up falls further behind and still fails. */
  rejoinLagMs: number;
  /** The agents' finalize deadline: ten times the longest finalize seen without a fault in the way (0.5 s), so a
   *  standby a few commits behind catches up at MASTER and "every commit that reached the bucket before MASTER is in
   *  the promoted container" is what is checked; below the 30 s request timeout, so a stalled request makes a
   *  finalize time out, say so, and leave out what the old primary's divergent tail must then hold. */
  finalizeDeadlineMs: number;
  /** Size of each host's loop-mounted file system holding its Docker data root (MiB); the standby's is filled. */
  standbyFsMb: number;
}

const MIN = 60_000;

export function quickPlan(): ChaosPlan {
  return {
    mode: 'quick', containers: 16, soakMs: 180_000, agentKillFreeTailMs: 110_000, writesPerSecond: 4,
    killsPusher: 2, killsPuller: 2, killsEnginePrimary: 1, killsEngineStandby: 1, downMs: [300, 2_000],
    outagesMs: [20_000, 4_000], diskFullsMs: [12_000], netFaultGapMs: 6_000,
    faultConvergeBoundMs: 90_000, finalConvergeMs: 120_000, agentStartMs: 60_000, sampleMs: 2_000,
    leak: { warmUpMs: 15_000, minWindowMs: 60_000, rssGrowthMb: 48, rssGrowthFraction: 0.35, fdGrowth: 24, rssAfterSwitch: false },
    failovers: 2, failoverRoomMs: 90_000, failoverStepMs: 90_000, rejoinLagMs: 10_000, finalizeDeadlineMs: 5_000,
    standbyFsMb: 512,
  };
}

/** The full soak (50 min of writes and faults, under 60 min in all), or a shorter run of the same mix (`minutes`). */
export function fullPlan(minutes = 50): ChaosPlan {
  if (!(minutes >= 5 && minutes <= 50)) throw new RangeError(`Expected --minutes within 5..50, got ${minutes}`);
  const f = minutes / 50;
  const longest = Math.min(5 * MIN, Math.round(minutes * MIN * 0.1));
  // Outages from seconds to the longest: log-spread, about 17 % of the soak in all for the full run.
  const outagesMs = [longest, 2 * MIN, 75_000, 40_000, 20_000, 10_000, 6_000, 3_000].filter((ms) => ms <= longest);
  const keep = Math.max(2, Math.round(outagesMs.length * Math.min(1, f * 1.5)));
  return {
    mode: minutes === 50 ? 'full' : `${minutes}min`, containers: 40, soakMs: minutes * MIN, agentKillFreeTailMs: Math.round(minutes * MIN * 0.3),
    writesPerSecond: 5,
    killsPusher: Math.max(2, Math.round(40 * f)), killsPuller: Math.max(2, Math.round(40 * f)),
    killsEnginePrimary: Math.max(1, Math.round(14 * f)), killsEngineStandby: Math.max(1, Math.round(14 * f)),
    downMs: [300, 5_000],
    outagesMs: outagesMs.slice(0, keep), diskFullsMs: [90_000, 45_000, 20_000].slice(0, Math.max(1, Math.round(3 * f))),
    netFaultGapMs: 8_000,
    faultConvergeBoundMs: 180_000, finalConvergeMs: 300_000, agentStartMs: longest + 2 * MIN, sampleMs: 5_000,
    leak: { warmUpMs: 60_000, minWindowMs: Math.min(5 * MIN, Math.round(minutes * MIN * 0.25)), rssGrowthMb: 48, rssGrowthFraction: 0.25, fdGrowth: 24, rssAfterSwitch: true },
    // At least two (one there, one back); the full run 5, one every 8.4 min.
    failovers: Math.max(2, Math.round(minutes / 10)), failoverRoomMs: 3 * MIN, failoverStepMs: 4 * MIN, rejoinLagMs: 10_000, finalizeDeadlineMs: 5_000,
    standbyFsMb: 1024,
  };
}

/** Non-overlapping windows of the given lengths, at random places in [from, to). */
function placeWindows(prng: Prng, lengths: number[], from: number, to: number): { at: number; ms: number }[] {
  const total = lengths.reduce((s, x) => s + x, 0);
  const slack = to - from - total;
  if (slack < 0) throw new RangeError(`windows of ${total} ms do not fit in ${to - from} ms`);
  // Random gaps that add up to the slack, windows in random order.
  const cuts = lengths.map(() => prng.next()).concat([prng.next()]);
  const sum = cuts.reduce((s, x) => s + x, 0);
  let t = from;
  const out: { at: number; ms: number }[] = [];
  for (const [i, ms] of prng.shuffle(lengths).entries()) {
    t += Math.floor(((cuts[i] ?? 0) / sum) * slack);
    out.push({ at: t, ms });
    t += ms;
  }
  return out;
}

/** The fault schedule of one run, sorted by time (ms from the start of the soak). */
export function drawSchedule(plan: ChaosPlan, prng: Prng): ScheduledFault[] {
  const out: ScheduledFault[] = [];
  const start = 5_000;
  const end = plan.soakMs - 10_000;
  const agentEnd = plan.soakMs - plan.agentKillFreeTailMs;
  const kills: [KillKind, number, number][] = [
    ['kill-pusher', plan.killsPusher, agentEnd],
    ['kill-puller', plan.killsPuller, agentEnd],
    ['kill-engine-primary', plan.killsEnginePrimary, end],
    ['kill-engine-standby', plan.killsEngineStandby, end],
  ];
  for (const [kind, n, until] of kills) {
    // Stratified: one kill per slice, at a random place in it, so kills spread over the whole window.
    const slice = (until - start) / n;
    for (let i = 0; i < n; i++) out.push({ at: Math.floor(start + i * slice + prng.range(0, slice)), kind, downMs: Math.floor(prng.range(plan.downMs[0], plan.downMs[1])) });
  }
  for (const w of placeWindows(prng, plan.outagesMs, start, end)) out.push({ at: w.at, kind: 'outage', ms: w.ms });
  for (const w of placeWindows(prng, plan.diskFullsMs, start, end)) out.push({ at: w.at, kind: 'disk-full', ms: w.ms });
  // Faults of the proxy: every kind at least once early on (a quick run sees them all), then random ones.
  const net: NetKind[] = prng.shuffle(NET_KINDS);
  let t = start;
  for (let i = 0; ; i++) {
    t += Math.floor(prng.range(0.5, 1.5) * plan.netFaultGapMs);
    if (t >= end) break;
    const kind = net[i] ?? prng.pick(NET_KINDS);
    out.push({ at: t, kind, host: prng.next() < 0.5 ? 'primary' : 'standby', count: prng.int(1, 4) });
  }
  // Failovers last (a seed gives the other faults it gave before they existed): one per slice of the middle of the
  // soak; a kill of the whole host restarts its agent, so none falls in the agent-kill-free tail.
  const foFrom = Math.round(plan.soakMs * 0.1);
  const slice = (plan.soakMs - plan.failoverRoomMs - foFrom) / plan.failovers;
  for (let i = 0; i < plan.failovers; i++) {
    const lo = foFrom + i * slice;
    const kill = i % 2 === 0 && lo < agentEnd - 5_000;
    const at = Math.floor(prng.range(lo, kill ? Math.min(lo + slice, agentEnd) : lo + slice));
    out.push({ at, kind: kill ? 'failover-kill' : 'failover-keepalived', keepVrrpStateFile: kill && prng.next() < 0.3 });
  }
  return out.sort((x, y) => x.at - y.at);
}

/** Counts per fault kind in a schedule. */
export function countKinds(schedule: readonly ScheduledFault[]): Record<FaultKind, number> {
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  for (const f of schedule) counts[f.kind]++;
  return counts;
}
