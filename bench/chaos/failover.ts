// A failover during the chaos soak, and what it must prove. The primary goes (its whole host SIGKILLed, or its
// keepalived stopped while the host runs on); the standby becomes MASTER and boots its twins. Then:
// - every commit that reached the bucket before MASTER (the server answered its PUT before the promotion started)
//   is within what the new primary's claim says it finalized, unless its finalize timed out and said so;
// - each promoted container holds, file by file, the markers of the newest such commit, every marker finalized
//   that a write acknowledged, and nothing the bucket did not have (markers.ts);
// - writes go on on the new primary; the old one comes back (after a kill: engine, agent, keepalived, as after a
//   reboot) as the standby, and every acknowledged write it held that the new primary lacks is in its divergent
//   tail (the tail's changeset, or its commits after the claim) — accounted, not a divergence;
// - the old primary catches up as the standby.
import type Docker from 'dockerode';
import { z } from 'zod';
import { standbyGapTo, type AgentLab } from '../../src/lab/agent-lab.js';
import { waitFor } from '../../src/lab/wait.js';
import type { DivergentRecord, Generation } from '../../src/store/index.js';
import type { JournalView } from './journal-view.js';
import { judgePromoted, markersInUpper, ranges, type MarkerBook } from './markers.js';
import type { ChaosPlan, FailoverKind } from './plan.js';
import { upperDir } from './tools.js';

/** Who is what now; a failover swaps them once the new primary is checked. */
export interface Roles {
  primary: string;
  standby: string;
  /** The generation the primary writes. */
  generation: number;
}

export interface FailoverDeps {
  lab: AgentLab;
  plan: ChaosPlan;
  /** The containers written to (they carry markers). */
  names: readonly string[];
  /** Every protected container (the written ones and the lab's web). */
  protectedNames: readonly string[];
  journal: JournalView;
  book: MarkerBook;
  docker(host: string): Docker;
  roles: Roles;
  log: (line: string) => void;
  /** ms since the soak started. */
  now: () => number;
  /** Stops sending writes and probes, and waits for those in flight. */
  pauseWrites(): Promise<void>;
  /** Sends them to roles.primary again. */
  resumeWrites(): void;
  /** Before the soak kills the agent on `host` itself (its exit is expected). */
  agentKilled(host: string): void;
  /** Starts the agent on `host` again (a new life, sampled for leaks). */
  startAgent(host: string): Promise<void>;
  /** The faults that began in [from, to] (ms since the soak started), for the record of a finalize that timed out. */
  faultsBetween(from: number, to: number): string[];
}

export interface FailoverResult {
  n: number;
  kind: FailoverKind | 'final-kill';
  from: string;
  to: string;
  /** When the kill or the stop came (s since the run started). */
  atS: number;
  generations: [number, number];
  outcome: string | null;
  /** The kill or stop → the promotion started (keepalived's MASTER reached the agent). */
  triggerToMasterMs: number | null;
  /** The promotion itself: finalize, claim, twins started, restart policies back. */
  promotionMs: number | null;
  /** The kill or stop → the promotion over. */
  triggerToBootedMs: number | null;
  finalizeMs: number | null;
  finalizeTimedOut: boolean;
  /** When the finalize timed out: what it said per container left behind, and the faults of the minute before. */
  finalizeTimeout: { containers: string[]; faults: string[] } | null;
  /** Commits in the bucket before MASTER (all generations), and of the old generation. */
  commitsBeforeMaster: number;
  commitsBeforeMasterOldGeneration: number;
  /** Containers whose newest commit before MASTER was left out by a finalize that timed out (accounted in the tails). */
  notFinalized: { container: string; seq: number; finalized: number }[];
  /** Marker files checked in the promoted containers, and those of the newest commits before MASTER among them. */
  markersChecked: number;
  /** Markers the promoted containers hold empty: created by a commit the finalize took, written by one it did not
   *  (their writes are lost writes, in the divergent tail). */
  halfWritten: number;
  newestCommitMarkers: number;
  /** Acknowledged writes on the old primary the new one lacks (after the last commit it finalized). */
  lostWrites: number;
  /** The old primary's divergent tails of this failover, and the lost writes found in them. */
  tails: number;
  lostWritesAccounted: number;
  /** The kill or stop → the old primary caught up as the standby (plan.rejoinLagMs). */
  rejoinMs: number | null;
  /** Then: how old the newest head it had staged in full was (ms). */
  rejoinLagMs: number | null;
  failures: string[];
}

const demotionSchema = z.looseObject({
  lastDemotion: z.looseObject({ startedAt: z.string(), finishedAt: z.string().nullable() }).nullable().optional(),
  lastPromotion: z.looseObject({
    finalize: z.looseObject({
      ms: z.number(),
      timedOut: z.boolean(),
      containers: z.array(z.looseObject({ name: z.string(), stagedSeq: z.number(), latestSeq: z.number().nullable(), error: z.string().optional() })),
    }).nullable().optional(),
  }).nullable(),
});

async function upper(docker: Docker, name: string): Promise<string> {
  const dir = await upperDir(docker, name);
  if (dir === undefined) throw new Error(`${name}: no UpperDir in docker inspect`);
  return dir;
}

export interface FailoverOptions {
  /** A killed host comes back with its VRRP state file still saying MASTER. */
  keepVrrpStateFile: boolean;
  /** Called once the new primary is checked and the old one's agent and keepalived run again: other faults may come
   *  again (they wait while a failover's checks and restarts are under way). */
  exclusiveOver: () => void;
  /** ms since `from` (ms since the soak started) that no other fault that blocks replication explains. */
  unexplainedSince: (from: number) => number;
}

/** Waits for `probe`, bounded by `boundMs` of time no other fault explains (an outage may come meanwhile). */
async function waitUnexplained<T>(what: string, boundMs: number, o: FailoverOptions, from: number, probe: () => Promise<T | undefined>, everyMs: number): Promise<T> {
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    const ms = o.unexplainedSince(from);
    if (ms > boundMs) throw new Error(`timed out waiting for ${what}: ${Math.round(ms / 1000)} s that no other fault explains`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A failover that could not go on (a wait timed out): what it had checked and found until then comes with it. */
export class FailoverAborted extends Error {
  constructor(message: string, readonly partial: FailoverResult) {
    super(message);
  }
}

/** Runs one failover from roles.primary to roles.standby; kind final-kill: the last one, after the soak (no rejoin). */
export async function runFailover(d: FailoverDeps, n: number, kind: FailoverKind | 'final-kill', opts: FailoverOptions): Promise<FailoverResult> {
  const r: FailoverResult = {
    n, kind, from: d.roles.primary, to: d.roles.standby, atS: Math.round(d.now() / 1000), generations: [d.roles.generation, 0], outcome: null, triggerToMasterMs: null, promotionMs: null, triggerToBootedMs: null, finalizeMs: null,
    finalizeTimedOut: false, finalizeTimeout: null, commitsBeforeMaster: 0, commitsBeforeMasterOldGeneration: 0, notFinalized: [], markersChecked: 0, halfWritten: 0,
    newestCommitMarkers: 0, lostWrites: 0, tails: 0, lostWritesAccounted: 0, rejoinMs: null, rejoinLagMs: null, failures: [],
  };
  try {
    return await failoverSteps(d, n, kind, opts, r);
  } catch (err) {
    // The checks of the promoted containers ran before the wait that gave up: their findings are reported too.
    throw new FailoverAborted(err instanceof Error ? err.message : String(err), r);
  }
}

async function failoverSteps(d: FailoverDeps, n: number, kind: FailoverKind | 'final-kill', opts: FailoverOptions, r: FailoverResult): Promise<FailoverResult> {
  const l = d.lab;
  const step = d.plan.failoverStepMs;
  const O = d.roles.primary;
  const N = d.roles.standby;
  const g = d.roles.generation;
  const t0 = Date.now();
  const bad = (msg: string): void => {
    r.failures.push(`failover ${n} (${kind}, ${O}→${N}): ${msg}`);
  };
  d.log(`failover ${n} (${kind}): ${O} → ${N}, generation ${g}`);

  // --- the primary goes ---
  if (kind === 'failover-keepalived') {
    // The host runs on: writes keep going to it until the standby has taken over (they make its divergent tail).
    await l.lab.stopKeepalivedOn(O);
  } else {
    await d.pauseWrites();
    d.agentKilled(O);
    await l.kill(O);
  }

  // --- the standby becomes MASTER and boots the twins ---
  const st = await waitFor(`${N} promoted after ${kind} of ${O}`, step, async () => {
    const s = await l.status(N);
    const p = s?.lastPromotion;
    return s?.role === 'primary' && p && p.ms > 0 && Date.parse(p.startedAt) >= t0 && s.generation !== null && s.generation > g ? s : undefined;
  }, 100);
  await d.pauseWrites();
  const promotion = st.lastPromotion;
  if (promotion === null) throw new Error('unreachable: promotion checked above');
  const masterAt = Date.parse(promotion.startedAt);
  const g2 = st.generation ?? 0;
  r.generations = [g, g2];
  r.outcome = promotion.outcome;
  r.triggerToMasterMs = masterAt - t0;
  r.promotionMs = promotion.ms;
  r.triggerToBootedMs = masterAt + promotion.ms - t0;
  const extra = demotionSchema.safeParse(st);
  const finalize = extra.success ? extra.data.lastPromotion?.finalize ?? null : null;
  r.finalizeMs = finalize?.ms ?? null;
  r.finalizeTimedOut = finalize?.timedOut === true;
  if (r.finalizeTimedOut && finalize) {
    const behind = finalize.containers.filter((c) => c.error !== undefined || (c.latestSeq !== null && c.stagedSeq < c.latestSeq));
    const masterRel = d.now() - (Date.now() - masterAt);
    r.finalizeTimeout = {
      containers: behind.map((c) => `${c.name}: staged ${c.stagedSeq} of ${c.latestSeq ?? '?'}${c.error === undefined ? '' : ` (${c.error})`}`),
      faults: d.faultsBetween(masterRel - 60_000, d.now()),
    };
    d.log(`failover ${n}: the finalize timed out after ${finalize.ms} ms; behind: ${r.finalizeTimeout.containers.join('; ') || 'none'}; faults of the minute before: ${r.finalizeTimeout.faults.join('; ') || 'none'}`);
  }
  if (promotion.outcome !== 'booted') bad(`the promotion's outcome is ${promotion.outcome}`);
  const started = new Set((promotion.start?.containers ?? []).filter((c) => c.ok).map((c) => c.name));
  for (const name of d.protectedNames) if (!started.has(name)) bad(`${name} was not started on ${N} at MASTER`);

  const claim = await waitFor(`the claim of generation ${g2}`, step, async () => (await l.bucket.readClaim(g2 as Generation)) ?? undefined, 200);
  if (claim.host !== l.hostId(N)) bad(`generation ${g2} is claimed by ${claim.host}, not ${l.hostId(N)}`);
  if (claim.from.generation !== g) bad(`${N} claimed generation ${g2} from generation ${claim.from.generation}, not ${g}: a failover happened outside the schedule`);
  await d.journal.refreshAll();
  const before = d.journal.before(g, masterAt);
  r.commitsBeforeMaster = before.count;
  r.commitsBeforeMasterOldGeneration = before.inGeneration;
  if (before.unseen.length > 0) d.log(`failover ${n}: ${before.unseen.length} record(s) of generation ${g} with no answer seen by a proxy (counted as before MASTER): ${ranges(before.unseen.slice(0, 50))}`);

  // --- every commit before MASTER is in the promoted container ---
  for (const name of d.protectedNames) {
    const newest = before.newest.get(name) ?? 0;
    const finalized = claim.from.containers[name] ?? 0;
    if (newest <= finalized) continue;
    // After the soak everything had converged: nothing may be left behind, deadline or not.
    if (r.finalizeTimedOut && kind !== 'final-kill') r.notFinalized.push({ container: name, seq: newest, finalized });
    else bad(`${name}: commit ${g}/${newest} reached the bucket before MASTER, but ${N} finalized from ${finalized} (and its finalize did not time out)`);
  }
  const docker = d.docker(N);
  const lost = new Map<string, number[]>();
  for (const name of d.names) {
    const finalized = claim.from.containers[name] ?? 0;
    const { markers: present, empty, bad: wrong } = await markersInUpper(await upper(docker, name));
    for (const w of wrong) bad(`${name} on ${N}: ${w}`);
    r.markersChecked += present.size;
    const newest = before.newest.get(name) ?? 0;
    const newestCommit = newest > 0 ? d.journal.record(g, newest) : undefined;
    if (newestCommit !== undefined) {
      const inCommit = await d.journal.markersOf(newestCommit);
      for (const w of inCommit.bad) bad(`${name}: commit ${g}/${newest}: ${w}`);
      r.newestCommitMarkers += inCommit.markers.size;
      const missing = [...inCommit.markers].filter((m) => !present.has(m));
      if (missing.length > 0 && newest <= finalized) bad(`${name}: the promoted container lacks markers ${ranges(missing)} of commit ${g}/${newest}, the newest before MASTER`);
    }
    const maxFinalized = await d.journal.maxMarker(g, finalized);
    // Booted empty: allowed only where the write was not finalized complete (markers.ts).
    const known = d.book.halfWritten(name);
    const epoch = d.book.epoch(name);
    const halfNow = [...empty].filter((m) => !known.has(m));
    const wrongEmpty = halfNow.filter((m) => m <= maxFinalized || m < epoch.start);
    if (wrongEmpty.length > 0) bad(`${name} on ${N}: markers ${ranges(wrongEmpty)} are empty although their writes were finalized complete (up to marker ${maxFinalized}) or done before this epoch`);
    r.halfWritten += halfNow.length - wrongEmpty.length;
    d.book.noteHalfWritten(name, halfNow);
    const v = judgePromoted(epoch, maxFinalized, present);
    if (v.missing.length > 0) bad(`${name}: the promoted container lacks markers ${ranges(v.missing)}, finalized (up to marker ${maxFinalized}, commit ${g}/${finalized}) or held at the last failover`);
    if (v.unexpected.length > 0) bad(`${name}: the promoted container holds markers ${ranges(v.unexpected)} that neither its last failover nor the commits up to ${g}/${finalized} (marker ${maxFinalized}) account for`);
    if (v.lost.length > 0) lost.set(name, v.lost);
    r.lostWrites += v.lost.length;
    d.book.newEpoch(name, N, present);
  }
  d.roles.primary = N;
  d.roles.standby = O;
  d.roles.generation = g2;
  d.resumeWrites();
  d.log(`failover ${n}: ${N} ${promotion.outcome} ${started.size} containers ${r.triggerToBootedMs} ms after the ${kind === 'failover-keepalived' ? 'stop' : 'kill'} (finalize ${r.finalizeMs ?? '?'} ms${r.finalizeTimedOut ? ', TIMED OUT' : ''}); ${r.commitsBeforeMaster} commits before MASTER; ${r.markersChecked} markers checked in the promoted containers${r.halfWritten > 0 ? ` (${r.halfWritten} booted empty: created, not yet written in what was finalized)` : ''}; ${r.lostWrites} acknowledged writes on ${O} after what was finalized`);
  if (kind === 'final-kill') {
    // Everything had converged before this kill: no acknowledged write may be missing.
    for (const [name, ms] of lost) bad(`${name}: acknowledged writes (markers ${ranges(ms)}) were not finalized although the standby had converged`);
    opts.exclusiveOver();
    return r;
  }

  // --- the old primary comes back as the standby; its tails account for the writes the new primary lacks ---
  if (kind === 'failover-kill') {
    await l.revive(O, { keepVrrpStateFile: opts.keepVrrpStateFile });
    await d.startAgent(O);
  }
  await l.lab.startKeepalivedOn(O);
  // From here other faults come again: the old primary may be killed again while it demotes, its engine too, the
  // bucket may go out. Its tails are looked for in the bucket, whichever life of its agent saved them.
  opts.exclusiveOver();
  const from = d.now();
  const accountFor = new Set([...lost.keys(), ...r.notFinalized.map((x) => x.container)]);
  const ofThis = (items: Awaited<ReturnType<typeof l.bucket.listDivergent>>): DivergentRecord[] =>
    items.flatMap((i) => ('record' in i ? [i.record] : [])).filter((t) => t.generation === g && t.claimGeneration === g2);
  let items = await waitUnexplained(`${O} a standby with a divergent tail for ${[...accountFor].join(', ') || 'no container'}`, step, opts, from, async () => {
    if ((await l.status(O))?.role !== 'standby') return undefined;
    const found = await l.bucket.listDivergent(l.hostId(O));
    const tails = ofThis(found);
    return [...accountFor].every((name) => tails.some((t) => t.container === name)) ? found : undefined;
  }, 500).catch((err: unknown) => {
    bad((err as Error).message);
    return null;
  });
  items ??= await l.bucket.listDivergent(l.hostId(O));
  for (const i of items) if ('error' in i) bad(`divergent record ${i.key}: ${i.error}`);
  const tails = ofThis(items);
  r.tails = tails.length;
  await d.journal.refresh(g);
  for (const name of accountFor) {
    const mine = tails.filter((t) => t.container === name);
    const writes = lost.get(name) ?? [];
    if (mine.length === 0) {
      bad(`${name}: ${writes.length} acknowledged write(s) on ${O} (markers ${ranges(writes)}) are neither in the promoted container nor in a divergent tail of ${O}`);
      continue;
    }
    const found = new Set<number>();
    for (const t of mine) {
      for (const m of (await d.journal.markersOfBlob(t.digest, t.size)).markers) found.add(m);
      for (const c of d.journal.range(g, name, t.fromSeq, t.lastShippedSeq)) for (const m of (await d.journal.markersOf(c)).markers) found.add(m);
    }
    const unaccounted = writes.filter((m) => !found.has(m));
    if (unaccounted.length > 0) bad(`${name}: acknowledged writes on ${O} (markers ${ranges(unaccounted)}) are in neither the promoted container nor ${O}'s divergent tail`);
    r.lostWritesAccounted += writes.length - unaccounted.length;
    for (const nf of r.notFinalized.filter((x) => x.container === name)) {
      if (!mine.some((t) => t.fromSeq === nf.finalized && t.lastShippedSeq >= nf.seq)) bad(`${name}: commit ${g}/${nf.seq} was not finalized and ${O}'s tail does not name it (${JSON.stringify(mine.map((t) => [t.fromSeq, t.lastShippedSeq]))})`);
    }
  }
  // Heads of the new generation as read over the last rejoinLagMs, oldest first: caught up once one of them is
  // staged in full (the newest such one says how far behind the standby follows).
  const heads: Array<{ at: number; head: Awaited<ReturnType<typeof l.head>> }> = [];
  r.rejoinLagMs = await waitUnexplained(`${O} caught up as the standby of generation ${g2} (every container staged to a head at most ${d.plan.rejoinLagMs / 1000} s old)`, step, opts, from, async () => {
    heads.push({ at: Date.now(), head: await l.head() });
    while (heads.length > 0 && Date.now() - heads[0]!.at > d.plan.rejoinLagMs) heads.shift();
    const s = await l.status(O);
    const staged = s === null ? undefined : heads.findLast((h) => standbyGapTo(s, h.head).length === 0);
    return staged === undefined ? undefined : Date.now() - staged.at;
  }, 500).catch(async (err: unknown) => {
    // What the agent said last: a stuck role, a generation not followed, containers behind (and where).
    throw new Error(`${(err as Error).message}; ${O} now: ${await l.standbyGap(O).catch((e: unknown) => String(e))}`);
  });
  r.rejoinMs = Date.now() - t0;
  d.log(`failover ${n}: ${O} back as the standby after ${r.rejoinMs} ms (following ${r.rejoinLagMs} ms behind); its ${r.tails} divergent tail(s) hold ${r.lostWritesAccounted} of its ${r.lostWrites} lost writes`);
  return r;
}
