// The chaos soak itself: the agent lab (two hosts, a Docker engine and `twinlayer agent` in each, keepalived, the
// embedded S3 server behind a fault proxy per host), each host's Docker data root on a small loop-mounted file
// system, N protected containers written to at random on whichever host is primary, and the seeded fault schedule
// (plan.ts) played against them, failovers included (failover.ts: each checks that the promoted containers hold
// every commit that reached the bucket before MASTER, and that the old primary's divergent tail holds the
// acknowledged writes they lack). Then writes and faults stop, everything must converge, every twin must equal its
// primary (`docker export`), and the primary is killed once more, checked the same way.
import { execFile } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { AgentLab, WEB, type AgentRun } from '../../src/lab/agent-lab.js';
import { copyImage, importBusyboxImage } from '../../src/lab/busybox-image.js';
import { dockerCli } from '../../src/lab/engine.js';
import type { Fault } from '../../src/lab/fault-proxy.js';
import { killHard, withDescendants } from '../../src/lab/processes.js';
import { waitFor } from '../../src/lab/wait.js';
import { diffTrees, type Tree } from '../../test/support/export-tree.js';
import { FailoverAborted, runFailover, type FailoverDeps, type FailoverResult, type Roles } from './failover.js';
import { FaultLog, type Convergence, type FaultInterval } from './faults.js';
import { JournalView } from './journal-view.js';
import { judgeLife, sampleProcess, type LeakVerdict, type RoleSwitch, type Series } from './leak.js';
import { markerScript, MarkerBook } from './markers.js';
import { countKinds, drawSchedule, type ChaosPlan, type FailoverKind, type FaultKind, type KillKind, type NetKind, type ScheduledFault } from './plan.js';
import { Prng } from './prng.js';
import { dockerExec, exportTree, mountSmallFs, sleep, upperDir, withLibraries } from './tools.js';
import { drawOp, OPS, type Op } from './workload.js';

const execFileP = promisify(execFile);
/** keepalived's first MASTER; the other host starts as the standby. Roles change with every failover. */
const FIRST_PRIMARY = 'a';
const FIRST_STANDBY = 'b';
/** At most this many writes in flight (each to another container). */
const WRITES_IN_FLIGHT = 6;
const IMAGE = 'tl-chaos:lab';
/** The container the convergence probes are written to. */
const PROBE_CONTAINER = 'c01';
const NET_FAULT: Record<NetKind, Fault> = { reset: 'reset', slowdown: 'slowdown', truncate: 'truncate', stall: 'hang', 'lose-answer': 'lose-answer', error500: 'error500' };

export interface Divergence { container: string; phase: 'twin' | 'promoted'; differences: string[] }

export interface SoakResult {
  mode: string;
  seed: number;
  startedAt: string;
  totalS: number;
  soakS: number;
  containers: number;
  scheduled: Record<FaultKind, number>;
  injected: Record<FaultKind, number>;
  kills: { total: number; survived: number; byKind: Record<KillKind, number> };
  outage: { count: number; seconds: number; longestS: number };
  diskFull: { count: number; seconds: number };
  proxy: Record<string, { requests: number; faults: Record<string, number> }>;
  writes: { ok: number; failed: number; perSecond: number; byOp: Record<Op, number> };
  commits: number;
  generations: number;
  finalConvergeMs: number | null;
  convergence: { probes: number; longestMs: number; longestAttributableMs: number; longest: Convergence | null; byKind: Record<string, { n: number; maxMs: number; maxAttributableMs: number }>; all: Convergence[] };
  divergences: Divergence[];
  /** Every failover, the final one (kind final-kill, after the soak) last. */
  failovers: FailoverResult[];
  processes: LeakVerdict[];
  series: Series[];
  agentRestarts: Record<string, number>;
  /** Error lines the agents logged, by message (a fault is expected to cause some). */
  agentErrors: Record<string, number>;
  unexpectedExits: string[];
  failures: string[];
}

export interface SoakOptions {
  plan: ChaosPlan;
  seed: number;
  log: (line: string) => void;
  /** Every line the agents and the lab print, each prefixed with the soak's second, appended to this file. */
  agentLog?: string;
}

class Fatal extends Error {}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const { plan, seed, log } = opts;
  const t0 = Date.now();
  const now = (): number => Date.now() - t0;
  const failures: string[] = [];
  const fail = (msg: string): void => {
    failures.push(msg);
    log(`FAILURE: ${msg}`);
  };
  const schedulePrng = new Prng(seed);
  const writePrng = new Prng((seed ^ 0x9e3779b9) >>> 0);
  const schedule = drawSchedule(plan, schedulePrng);
  const names = Array.from({ length: plan.containers }, (_, i) => `c${String(i + 1).padStart(2, '0')}`);
  const protectedNames = [WEB, ...names];
  const faults = new FaultLog(now);
  const convergences: Convergence[] = [];
  const series: Series[] = [];
  /** Failovers, from start to the old primary back as the standby: RSS is judged for growth between them. */
  const roleSwitches: RoleSwitch[] = [];
  const unexpectedExits: string[] = [];
  const injected = Object.fromEntries(Object.keys(countKinds([])).map((k) => [k, 0])) as Record<FaultKind, number>;
  const agentRestarts: Record<string, number> = { [FIRST_PRIMARY]: 0, [FIRST_STANDBY]: 0 };
  const writes = { ok: 0, failed: 0, byOp: Object.fromEntries(OPS.map((o) => [o, 0])) as Record<Op, number> };
  let finalConvergeMs: number | null = null;
  let soakS = 0;
  const divergences: Divergence[] = [];
  const failovers: FailoverResult[] = [];
  let commits = 0;
  let generationCount = 0;
  const proxyStats: SoakResult['proxy'] = {};
  /** Lines of the agents that are not JSON (start-up refusals), newest last. */
  const plainLines: string[] = [];
  /** Error lines of the agents, by message. */
  const agentErrors: Record<string, number> = {};
  /** Set once the soak kills or tears down the agents itself (the final failover, teardown). */
  let expectExits = false;

  log(`chaos soak ${plan.mode}, seed ${seed}: ${plan.containers} containers, ${Math.round(plan.soakMs / 1000)} s of writes and faults; schedule ${JSON.stringify(countKinds(schedule))}`);
  // SIGINT/SIGTERM once the lab is being made: its own handler tears it down and exits, and the exit hook of
  // mountSmallFs unmounts. Before that, only the mount exists: exit, and the hook unmounts it.
  let labStarted = false;
  /** A signal while AgentLab.create runs, before the lab's own handler is there: the soak ends once it returns. */
  const interrupted: { by: NodeJS.Signals | null } = { by: null };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!labStarted) process.exit(sig === 'SIGINT' ? 130 : 143);
    if (al === null) interrupted.by = sig;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Both hosts on a small file system of their own: the standby's is the one filled, and either host is the standby
  // in turn.
  const smallFs = new Map<string, Awaited<ReturnType<typeof mountSmallFs>>>();
  let al: AgentLab | null = null;
  let journal: JournalView | null = null;
  const stop = new AbortController();
  // The report shows the first error of each kind; a slow rejoin or a stall is explained only by the whole log.
  const agentLog: WriteStream | null = opts.agentLog === undefined ? null : createWriteStream(opts.agentLog, { flags: 'a' });
  // A file that cannot be written costs the log, never the soak.
  agentLog?.on('error', (err) => log(`agent log ${opts.agentLog ?? ''}: ${err.message}`));
  try {
    for (const host of [FIRST_PRIMARY, FIRST_STANDBY]) smallFs.set(host, await mountSmallFs(plan.standbyFsMb));
    const fsOf = (host: string): string => {
      const dir = smallFs.get(host)?.dir;
      if (dir === undefined) throw new Error(`no file system for host ${host}`);
      return dir;
    };
    labStarted = true;
    al = await AgentLab.create({
      // The agents' errors (the first of each message; all are counted for the report) and the lab's own trouble.
      log: (l) => {
        if (agentLog !== null && !agentLog.writableEnded) agentLog.write(`[${String(Math.round(now() / 1000)).padStart(4)} s] ${l}\n`);
        if (expectExits) return;
        // What an agent prints that is not a JSON log line (a start-up refusal on stderr) is always shown.
        const plain = /^\[([ab]) \S*node\] (?!\{)(.*)$/.exec(l);
        if (plain !== null) {
          plainLines.push(`${plain[1] ?? '?'}: ${plain[2] ?? ''}`);
          log(`  agent output: ${l.slice(0, 700)}`);
        } else if (l.includes('"level":"error"')) {
          const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? '?';
          agentErrors[msg] = (agentErrors[msg] ?? 0) + 1;
          if (agentErrors[msg] === 1) log(`  agent error (first of its kind): ${l.slice(0, 700)}`);
        } else if (/^lab .*(fail|incomplete)/.test(l)) {
          log(`  lab: ${l}`);
        }
      },
      waitMs: plan.agentStartMs,
      // 1 s adverts: with 0.1 s, a loaded 2-core machine (40 containers restarting after an engine kill) misses
      // enough of the MASTER's adverts that the standby's keepalived turns MASTER for a moment — a failover the
      // schedule did not ask for (the agent abandons the promotion when BACKUP follows within its settle time).
      advertIntSec: 1,
      faultProxies: true,
      // A host revived with 41 containers under their restart policy, on a machine shared with other jobs, took
      // over 30 s to answer /_ping (seed 20261206, load average 13).
      engineStartTimeoutMs: 180_000,
      engineBaseDirs: { [FIRST_PRIMARY]: fsOf(FIRST_PRIMARY), [FIRST_STANDBY]: fsOf(FIRST_STANDBY) },
      agentEnv: { TWINLAYER_FINALIZE_DEADLINE_MS: String(plan.finalizeDeadlineMs) },
    });
    if (interrupted.by !== null) throw new Fatal(`${interrupted.by} while the lab was being made: stopped`);
    const l = al;
    const jv = new JournalView(l.bucket, join(l.lab.dir, 'chaos-blobs'));
    journal = jv;
    for (const host of l.hosts) l.faultProxy(host).onAnswer((a) => jv.noteAnswer(a));
    const dockers = new Map<string, Docker>();
    const dockerOf = (host: string): Docker => {
      let d = dockers.get(host);
      if (d === undefined) dockers.set(host, (d = new Docker({ socketPath: l.engine(host).socketPath })));
      return d;
    };
    const roles: Roles = { primary: FIRST_PRIMARY, standby: FIRST_STANDBY, generation: 0 };
    log(`lab ${l.lab.id} up; each engine on a ${plan.standbyFsMb} MiB ext4 (${l.hosts.map((h) => `${h}: ${fsOf(h)}`).join(', ')})`);
    await importBusyboxImage(l.engine(FIRST_PRIMARY).socketPath, IMAGE, { cmd: [], hostFiles: await withLibraries('/usr/bin/setfattr') });
    await copyImage(l.engine(FIRST_PRIMARY).socketPath, l.engine(FIRST_STANDBY).socketPath, IMAGE);
    for (const name of names) {
      await dockerCli(l.engine(FIRST_PRIMARY), ['run', '-d', '--name', name, '--label', 'twinlayer.enable=true', '--restart', 'unless-stopped', '--network', 'none',
        IMAGE, 'sh', '-c', "trap 'exit 0' TERM; mkdir -p /data; while true; do sleep 1; done"]);
    }
    log(`${names.length} protected containers (+ ${WEB}) running on ${FIRST_PRIMARY}`);

    // --- agents: start, watch for deaths we did not cause, sample RSS and descriptors ---
    const lives = new Map<string, { run: AgentRun; series: Series; killedByUs: boolean }>();
    const agentDown = new Set<string>();
    /** Hosts whose engine the soak has killed and not started again yet, and when each was last started again. */
    const enginesDown = new Set<string>();
    const engineUpAt = new Map<string, number>();
    const startAgent = async (host: string): Promise<void> => {
      // An agent refuses to start while its Docker engine does not answer (exit 2); systemd's Restart=always
      // (RestartSec=1s, infra/systemd) starts it again until it does. So does the soak, while it has the engine down.
      let run: AgentRun;
      let retrying = false;
      for (const deadline = Date.now() + plan.agentStartMs; ;) {
        const attempt = Date.now();
        try {
          run = await l.startAgent(host);
          break;
        } catch (err) {
          const engineWasDown = enginesDown.has(host) || (engineUpAt.get(host) ?? 0) >= attempt;
          if (!engineWasDown || Date.now() > deadline) throw err;
          if (!retrying) log(`agent on ${host} refused to start while its engine is down; starting it again every second (as systemd would)`);
          retrying = true;
          await sleep(1000);
        }
      }
      const s: Series = { name: `agent-${host}#${series.filter((x) => x.name.startsWith(`agent-${host}#`)).length + 1}`, pid: run.proc.pid, host, startedAt: now(), samples: [] };
      series.push(s);
      const life = { run, series: s, killedByUs: false };
      lives.set(host, life);
      agentDown.delete(host);
      void run.proc.exited.then((x) => {
        if (life.killedByUs || expectExits) return;
        const msg = `agent on ${host} (pid ${run.proc.pid}) exited by itself (${x.code ?? x.signal ?? '?'}) at ${Math.round(now() / 1000)} s; last lines:\n${run.lines.slice(-8).map((z) => JSON.stringify(z)).join('\n')}`;
        unexpectedExits.push(msg);
        fail(msg);
      });
    };
    await Promise.all([startAgent(FIRST_PRIMARY), startAgent(FIRST_STANDBY)]);
    await l.startKeepalived();
    const first = await waitFor(`${FIRST_PRIMARY} primary`, 60_000, async () => {
      const st = await l.status(FIRST_PRIMARY);
      return st?.claim?.status === 'owner' ? st : undefined;
    }, 100);
    roles.generation = first.generation ?? 0;
    const setupConverge = Date.now();
    // A container without changes (web) has an empty first full commit; its twin is made from its spec.
    await waitFor('the first full sync of every container on the standby', 120_000, async () => {
      const st = await l.converged(FIRST_STANDBY);
      return st !== undefined && protectedNames.every((n) => st.containers.some((c) => c.name === n && c.twin === 'stopped')) ? true : undefined;
    }, 500).catch(async (err: unknown) => {
      const st = await l.status(FIRST_STANDBY);
      throw new Fatal(`${(err as Error).message}; head ${JSON.stringify(await l.head())}; standby status ${JSON.stringify(st)}`);
    });
    log(`agents up, ${FIRST_PRIMARY} MASTER (generation ${roles.generation}), standby converged in ${Date.now() - setupConverge} ms; soak starts`);

    // --- writes go to whichever host is primary now; a failover pauses them while it checks the new primary ---
    const book = new MarkerBook(names, roles.primary);
    const inflight = new Set<Promise<unknown>>();
    let writeHost: string | null = roles.primary;
    const pauseWrites = async (): Promise<void> => {
      writeHost = null;
      await Promise.all([...inflight]);
    };
    const resumeWrites = (): void => {
      writeHost = roles.primary;
    };
    /** A command in a container of the primary, counted in flight (so a pause waits for it); null while paused. */
    const onPrimary = (name: string, script: string): Promise<number> | null => {
      const host = writeHost;
      if (host === null) return null;
      const p = dockerExec(dockerOf(host), name, script);
      const settled = p.catch(() => undefined).finally(() => inflight.delete(settled));
      inflight.add(settled);
      return p;
    };

    const sampler = setInterval(() => {
      for (const life of lives.values()) {
        if (!life.run.proc.running) continue;
        // The heap as the agent's last major GC left it, from its status (its answer may lag the /proc sample by the
        // status round trip).
        void Promise.all([sampleProcess(life.series.pid, now()), l.status(life.run.host)]).then(([x, st]) => {
          if (x === null) return;
          const memory = st?.memory;
          const gc = memory?.afterMajorGc;
          life.series.samples.push({
            ...x,
            // RSS less the garbage not yet collected (heap in use and external memory above what the last major GC
            // left), all from one process.memoryUsage() of the agent.
            ...(memory === undefined || gc === undefined ? {} : { rssLessGarbageMb: Math.round((memory.rssMb - Math.max(0, memory.heapUsedMb + memory.externalMb - gc.heapMb)) * 10) / 10 }),
            ...(gc === undefined ? {} : { heapMb: gc.heapMb, heapAt: Date.parse(gc.at) - t0 }),
          });
        });
      }
    }, plan.sampleMs);

    // --- probes: a counter written on the primary, read back from the twin's upper dir on the standby ---
    let probeWritten = 0;
    let probeSeen = 0;
    const probeWaiters = new Set<{ n: number; resolve: () => void }>();
    const probePoller = setInterval(() => {
      void (async () => {
        try {
          // Only a twin: the old primary's own container, still there after a failover, holds probes that never
          // reached the bucket.
          const upper = await upperDir(dockerOf(roles.standby), PROBE_CONTAINER, { twinOnly: true });
          if (upper === undefined) return;
          const v = Number.parseInt(await readFile(join(upper, 'probe'), 'utf8'), 10);
          if (Number.isFinite(v) && v > probeSeen) probeSeen = v;
          for (const w of [...probeWaiters]) if (probeSeen >= w.n) {
            probeWaiters.delete(w);
            w.resolve();
          }
        } catch {
          // the standby's engine is down, or the twin is being recreated
        }
      })();
    }, 200);
    const probeChain: Promise<void>[] = [];
    /** After fault `f` ended: writes a probe and waits until the standby staged it; records the time. */
    const probe = (f: FaultInterval): void => {
      const endedAt = f.end ?? now();
      probeChain.push((async () => {
        const n = ++probeWritten;
        // The write itself waits out a primary engine that is down, and a failover.
        for (let i = 0; ; i++) {
          try {
            if ((await onPrimary(PROBE_CONTAINER, `echo ${n} > /probe`)) === 0) break;
          } catch {
            // engine down
          }
          if (i > 600) return fail(`probe ${n} after ${f.kind} (${f.detail}) could not be written on ${roles.primary}/${PROBE_CONTAINER} for 5 min`);
          await sleep(500);
        }
        const seen = new Promise<void>((resolve) => probeWaiters.add({ n, resolve }));
        for (;;) {
          const done = await Promise.race([seen.then(() => true), sleep(1000).then(() => false)]);
          const ms = now() - endedAt;
          const attributableMs = ms - faults.blockedMs(endedAt, now(), f.id);
          if (done) {
            convergences.push({ faultId: f.id, kind: f.kind, detail: f.detail, ms, attributableMs });
            return;
          }
          if (attributableMs > plan.faultConvergeBoundMs) {
            return fail(`convergence timeout: ${PROBE_CONTAINER}'s probe ${n}, written after ${f.kind} (${f.detail}) ended at ${Math.round(endedAt / 1000)} s, not staged on ${roles.standby} after ${Math.round(ms / 1000)} s (${Math.round(attributableMs / 1000)} s not explained by other faults); standby has probe ${probeSeen}`);
          }
        }
      })());
    };

    // --- faults ---
    const targetBusy = new Set<string>();
    const killAgent = async (host: string, downMs: number, kind: KillKind): Promise<void> => {
      const life = lives.get(host);
      if (life === undefined || agentDown.has(host)) return;
      const f = faults.begin(kind, `${host}, down ${downMs} ms`);
      injected[kind]++;
      life.killedByUs = true;
      agentDown.add(host);
      const survivors = await killHard(await withDescendants([life.run.proc.pid]));
      if (survivors.length > 0) throw new Fatal(`agent on ${host}: pids ${survivors.join(' ')} survived SIGKILL`);
      await sleep(downMs);
      try {
        await startAgent(host);
      } catch (err) {
        throw new Fatal(`agent on ${host} did not start again after a SIGKILL: ${(err as Error).message}; its other output: ${plainLines.filter((x) => x.startsWith(`${host}:`)).slice(-5).join(' | ') || '(none)'}`);
      }
      agentRestarts[host] = (agentRestarts[host] ?? 0) + 1;
      faults.end(f);
      probe(f);
    };
    const killEngine = async (host: string, downMs: number, kind: KillKind): Promise<void> => {
      const engine = l.engine(host);
      const f = faults.begin(kind, `${host}, down ${downMs} ms`);
      injected[kind]++;
      enginesDown.add(host);
      const survivors = await killHard(await withDescendants([engine.pid, ...(await engine.containerPids())]));
      if (survivors.length > 0) throw new Fatal(`engine on ${host}: pids ${survivors.join(' ')} survived SIGKILL`);
      await sleep(downMs);
      // A full disk on the standby may keep its dockerd from starting: try again until it is freed (bounded).
      for (let i = 0; ; i++) {
        try {
          await engine.restart();
          break;
        } catch (err) {
          if (i >= 20) throw new Fatal(`engine on ${host} did not start again: ${(err as Error).message}`);
          log(`engine on ${host}: restart failed (${(err as Error).message.split('\n')[0] ?? ''}); again in 5 s`);
          await sleep(5_000);
        }
      }
      enginesDown.delete(host);
      engineUpAt.set(host, Date.now());
      if (host === roles.primary) {
        // Docker's restart policy brings the protected containers back: wait for them, as the end of this fault.
        await waitFor(`the protected containers running again on ${host}`, 120_000, async () => {
          const list = await dockerOf(host).listContainers({ filters: { label: ['twinlayer.enable=true'] } });
          return list.length === protectedNames.length ? true : undefined;
        }, 250).catch((err: unknown) => fail(`engine ${host} restarted but its containers did not all run again: ${(err as Error).message}`));
      }
      faults.end(f);
      probe(f);
    };
    let ballast: string | null = null;
    const diskFull = async (ms: number): Promise<void> => {
      const host = roles.standby;
      const f = faults.begin('disk-full', `${host}'s data root, ${Math.round(ms / 1000)} s`);
      injected['disk-full']++;
      ballast = join(fsOf(host), 'ballast');
      const st = await statfs(fsOf(host));
      const bytes = st.bavail * st.bsize - 64 * 1024;
      if (bytes > 0) await execFileP('fallocate', ['-l', String(bytes), ballast]).catch((err: unknown) => log(`fallocate: ${String(err)}`));
      log(`disk full on ${host}: ${Math.round(bytes / 1048576)} MiB of ballast, ${(await statfs(fsOf(host))).bavail * st.bsize} bytes left`);
      await sleep(ms, stop.signal);
      await rm(ballast, { force: true });
      ballast = null;
      faults.end(f);
      probe(f);
    };
    let outageActive = false;
    const outage = async (ms: number): Promise<void> => {
      const f = faults.begin('outage', `${Math.round(ms / 1000)} s`);
      injected.outage++;
      outageActive = true;
      for (const host of l.hosts) await l.cutBucket(host);
      await sleep(ms, stop.signal);
      for (const host of l.hosts) await l.healBucket(host);
      outageActive = false;
      faults.end(f);
      probe(f);
    };
    const netFault = (kind: NetKind, host: string, count: number): void => {
      const f = faults.begin(kind, `${host}, ${count} request(s)`, true);
      injected[kind]++;
      l.faultProxy(host).fail(NET_FAULT[kind], count);
      probe(f);
    };

    const running = new Set<Promise<void>>();
    const track = (what: string, p: Promise<void>): void => {
      const q = p.catch((err: unknown) => {
        if (err instanceof Fatal) {
          fail(err.message);
          stop.abort();
        } else {
          fail(`${what}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        }
      }).finally(() => running.delete(q));
      running.add(q);
    };

    // --- failovers: one at a time (the chain); from the moment one is due until the new primary is checked and the
    // old one's agent and keepalived run again, no kill, outage or full disk (they wait at the gate, and it waits for
    // those under way): a bucket out of reach at MASTER boots by design from what is staged, which is not what is
    // checked. Whoever passes the gate begins its fault in the same synchronous run (no await between), so a failover
    // that closes the gate next sees it as blocking ---
    let failoverGate: Promise<void> | null = null;
    let failoverChain: Promise<unknown> = Promise.resolve();
    const failoverDeps: FailoverDeps = {
      lab: l, plan, names, protectedNames, journal: jv, book, docker: dockerOf, roles, log, now, pauseWrites, resumeWrites,
      agentKilled: (host) => {
        const life = lives.get(host);
        if (life !== undefined) life.killedByUs = true;
        agentDown.add(host);
      },
      startAgent: async (host) => {
        await startAgent(host);
        agentRestarts[host] = (agentRestarts[host] ?? 0) + 1;
      },
      faultsBetween: (from, to) => faults.intervals.filter((f) => f.start >= from && f.start <= to).map((f) => `${f.kind} (${f.detail}) at ${Math.round(f.start / 1000)} s`),
    };
    const failover = (kind: FailoverKind | 'final-kill', keepVrrpStateFile: boolean): Promise<void> => {
      const run = failoverChain.then(() => failoverNow(kind, keepVrrpStateFile));
      failoverChain = run.catch(() => undefined);
      return run;
    };
    const failoverNow = async (kind: FailoverKind | 'final-kill', keepVrrpStateFile: boolean): Promise<void> => {
      let open = (): void => undefined;
      failoverGate = new Promise<void>((resolve) => (open = resolve));
      let over = false;
      const exclusiveOver = (): void => {
        if (over) return;
        over = true;
        failoverGate = null;
        open();
      };
      try {
        const longest = Math.max(0, ...plan.outagesMs, ...plan.diskFullsMs);
        await waitFor('no kill, outage or full disk in progress', longest + 120_000, () => Promise.resolve(faults.blocked() && !stop.signal.aborted ? undefined : true), 200);
        if (stop.signal.aborted && kind !== 'final-kill') return;
        // Named before the failover: it swaps the roles once the promotion is over, and a failure after that (the old
        // primary's rejoin) was named the wrong way round.
        const direction = `${roles.primary} → ${roles.standby}`;
        const f = faults.begin(kind === 'final-kill' ? 'failover-kill' : kind, `${direction}${keepVrrpStateFile ? ', VRRP state file kept' : ''}`);
        if (kind !== 'final-kill') injected[kind]++;
        let r: FailoverResult;
        const switchFrom = now();
        try {
          r = await runFailover(failoverDeps, failovers.length + 1, kind, {
            keepVrrpStateFile, exclusiveOver, unexplainedSince: (from) => now() - from - faults.blockedMs(from, now(), f.id),
          });
        } catch (err) {
          const what = `failover ${failovers.length + 1} (${kind}, ${direction})`;
          if (err instanceof FailoverAborted) {
            failovers.push(err.partial);
            for (const x of err.partial.failures) fail(x);
          }
          throw new Fatal(`${what}: ${(err as Error).message}`);
        }
        failovers.push(r);
        // Each host's switch ends when it reached its new role: the promoted one judged from its promotion on, not
        // from the old primary's rejoin a minute later (the quick soak then had no stretch long enough to judge).
        const promoted = r.triggerToBootedMs === null ? now() : Math.min(now(), switchFrom + r.triggerToBootedMs);
        roleSwitches.push({ host: r.to, from: switchFrom, to: promoted }, { host: r.from, from: switchFrom, to: now() });
        for (const x of r.failures) fail(x);
        faults.end(f);
        if (kind !== 'final-kill') probe(f);
      } finally {
        exclusiveOver();
      }
    };

    const play = async (ev: ScheduledFault): Promise<void> => {
      switch (ev.kind) {
        case 'failover-kill':
        case 'failover-keepalived':
          return failover(ev.kind, ev.keepVrrpStateFile);
        case 'kill-pusher':
        case 'kill-puller':
        case 'kill-engine-primary':
        case 'kill-engine-standby': {
          // The role is the host's at the moment of the kill. One kill of a target at a time: a kill that comes while
          // the target is still down waits (bounded), as one that comes during a failover does.
          let host: string;
          let target: string;
          for (let waited = 0; ; waited += 100) {
            if (stop.signal.aborted || waited > 120_000) return;
            if (failoverGate !== null) {
              await failoverGate;
              waited = 0;
              continue;
            }
            host = ev.kind === 'kill-pusher' || ev.kind === 'kill-engine-primary' ? roles.primary : roles.standby;
            target = ev.kind.startsWith('kill-engine') ? `engine-${host}` : `agent-${host}`;
            if (!targetBusy.has(target) && !(target.startsWith('agent') && agentDown.has(host))) break;
            await sleep(100);
          }
          targetBusy.add(target);
          try {
            await (target.startsWith('engine') ? killEngine(host, ev.downMs, ev.kind) : killAgent(host, ev.downMs, ev.kind));
          } finally {
            targetBusy.delete(target);
          }
          return;
        }
        case 'outage':
          while (failoverGate !== null) await failoverGate;
          if (outageActive || stop.signal.aborted) return;
          return outage(ev.ms);
        case 'disk-full':
          while (failoverGate !== null) await failoverGate;
          if (ballast !== null || stop.signal.aborted) return;
          return diskFull(ev.ms);
        default:
          netFault(ev.kind, ev.host === 'primary' ? roles.primary : roles.standby, ev.count);
      }
    };

    // --- the soak: writes and the schedule ---
    const soakStart = now();
    let writesOver = false;
    const writer = (async () => {
      const gap = 1000 / plan.writesPerSecond;
      while (!stop.signal.aborted && !writesOver) {
        const name = writePrng.pick(names);
        // One write per container at a time: its marker then exists only after every acknowledged one below it.
        const w = writeHost !== null && book.inFlight() < WRITES_IN_FLIGHT ? book.begin(name) : null;
        if (w !== null) {
          const { op, script } = drawOp(writePrng, markerScript(w.n));
          const p = onPrimary(name, script);
          if (p === null) {
            book.end(name, w, false);
          } else {
            void p.then((code) => {
              book.end(name, w, code === 0);
              if (code === 0) {
                writes.ok++;
                writes.byOp[op]++;
              } else {
                writes.failed++;
              }
            }, () => {
              book.end(name, w, false);
              writes.failed++;
            });
          }
        }
        await sleep(writePrng.range(0.5, 1.5) * gap, stop.signal);
      }
      await Promise.all([...inflight]);
    })();
    let lastReport = 0;
    for (const ev of schedule) {
      const wait = soakStart + ev.at - now();
      if (wait > 0) await sleep(wait, stop.signal);
      if (stop.signal.aborted) break;
      track(ev.kind, play(ev));
      if (now() - lastReport > 30_000) {
        lastReport = now();
        log(`${Math.round((now() - soakStart) / 1000)} s: writes ${writes.ok} ok / ${writes.failed} failed; injected ${JSON.stringify(Object.fromEntries(Object.entries(injected).filter(([, n]) => n > 0)))}; probes ${convergences.length}/${probeWritten}`);
      }
    }
    const rest = soakStart + plan.soakMs - now();
    if (rest > 0) await sleep(rest, stop.signal);
    // A failover still due (a slow machine stretched the one before it) runs before the soak ends, with the writes
    // going on: skipping it would leave its kind unchecked. Bounded: each may wait for its gate and take its room.
    const overdueBoundMs = plan.failovers * (plan.failoverRoomMs + Math.max(0, ...plan.outagesMs, ...plan.diskFullsMs) + 120_000);
    const bound = new AbortController();
    const endBound = (): void => bound.abort();
    stop.signal.addEventListener('abort', endBound, { once: true });
    const failoversDone = await Promise.race([failoverChain.then(() => true), sleep(overdueBoundMs, bound.signal).then(() => false)]);
    bound.abort();
    stop.signal.removeEventListener('abort', endBound);
    if (!failoversDone && !stop.signal.aborted) fail(`the failovers due in the soak did not end within ${Math.round(overdueBoundMs / 1000)} s after it`);
    const overrunS = Math.round((now() - soakStart - plan.soakMs) / 1000);
    if (overrunS > 1) log(`soak extended by ${overrunS} s for the failovers still due`);
    // The leak judge needs one stretch of a life in one role, a warm-up and a window long, and every failover
    // switches both hosts: a failover that waited for a kill, an outage or a full disk to end can leave the primary
    // too little of the soak after its promotion (CI: none judged). The writes go on until it has that much.
    const primaryLife = lives.get(roles.primary);
    const promotedAt = Math.max(primaryLife?.series.startedAt ?? 0, ...roleSwitches.filter((w) => w.host === undefined || w.host === roles.primary).map((w) => w.to));
    const judgeableAt = promotedAt + plan.leak.warmUpMs + plan.leak.minWindowMs + 2 * plan.sampleMs;
    if (!stop.signal.aborted && judgeableAt > now()) {
      log(`soak extended by ${Math.round((judgeableAt - now()) / 1000)} s: the primary ${roles.primary} has been in its role since ${Math.round((promotedAt - soakStart) / 1000)} s, too short a stretch to judge for leaks`);
      await sleep(judgeableAt - now(), stop.signal);
    }
    writesOver = true;
    await writer;
    soakS = Math.round((now() - soakStart) / 1000);
    log(`soak over after ${soakS} s: ${writes.ok} writes ok, ${writes.failed} failed; waiting for the faults in progress to end`);

    // --- everything stops, heals and converges ---
    stop.abort(); // ends the outage and disk-full waits early
    for (const host of l.hosts) l.faultProxy(host).pass();
    await Promise.all([...running]);
    for (const host of l.hosts) {
      await l.healBucket(host);
      l.faultProxy(host).pass();
      if (!lives.get(host)?.run.proc.running) await startAgent(host).catch((err: unknown) => fail(`agent on ${host} could not be started for the final convergence: ${String(err)}`));
    }
    if (failures.some((x) => x.startsWith('agent') || x.startsWith('engine'))) throw new Fatal('the lab is not whole after the soak (see the failures above)');
    const [P, S] = [roles.primary, roles.standby];
    const [dP, dS] = [dockerOf(P), dockerOf(S)];
    log(`${P} is the primary, ${S} the standby (generation ${roles.generation}) after ${failovers.length} failover(s)`);
    const token = `final-${seed}-${Date.now()}`;
    const finalStart = Date.now();
    for (const name of protectedNames) {
      await waitFor(`the final marker written in ${name} on ${P}`, 60_000, async () => ((await dockerExec(dP, name, `echo ${token} > /chaos-final`)) === 0 ? true : undefined), 500);
    }
    let lagging: string[] = [];
    try {
      await waitFor('every twin holding the final marker and the standby staged to the head', plan.finalConvergeMs, async () => {
        lagging = [];
        for (const name of protectedNames) {
          const upper = await upperDir(dS, name, { twinOnly: true }).catch(() => undefined);
          const v = upper === undefined ? null : await readFile(join(upper, 'chaos-final'), 'utf8').catch(() => null);
          if (v?.trim() !== token) lagging.push(name);
        }
        if (lagging.length > 0) return undefined;
        return (await l.converged(S)) !== undefined ? true : undefined;
      }, 500);
      finalConvergeMs = Date.now() - finalStart;
      log(`converged ${finalConvergeMs} ms after the last marker write`);
    } catch (err) {
      const detail = await l.standbyGap(S).catch((e: unknown) => String(e));
      throw new Fatal(`final convergence timeout after ${plan.finalConvergeMs} ms: ${lagging.length > 0 ? `twins without the final marker: ${lagging.join(', ')}` : 'the standby did not report every container staged to the head'}; ${detail} (${(err as Error).message})`);
    }
    clearInterval(probePoller);
    await Promise.race([Promise.all(probeChain), sleep(30_000)]);
    for (const w of probeWaiters) w.resolve();

    // --- the oracle: docker export of every twin equals its primary's ---
    const primaryTrees = new Map<string, Tree>();
    for (const name of protectedNames) {
      const [ta, tb] = await Promise.all([exportTree(dP, name), exportTree(dS, name)]);
      primaryTrees.set(name, ta);
      const diff = diffTrees(ta, tb, ['primary', 'twin']);
      if (diff.length > 0) {
        divergences.push({ container: name, phase: 'twin', differences: diff.slice(0, 20) });
        fail(`divergence: twin of ${name} on ${S} differs from its primary:\n${diff.slice(0, 10).join('\n')}`);
      }
    }
    log(`compared ${protectedNames.length} exports: ${divergences.length} divergent`);

    clearInterval(sampler);
    commits = await jv.refreshAll();
    generationCount = (await l.bucket.listGenerations()).length;
    for (const p of jv.problems) fail(`bucket: ${p}`);
    const head = await l.head();
    if (head.generation !== roles.generation) fail(`the newest generation is ${head.generation}, not ${roles.generation}: a failover happened outside the schedule`);
    for (const host of l.hosts) {
      const p = l.faultProxy(host);
      proxyStats[host] = { requests: p.stats.requests, faults: { ...p.stats.faults } };
    }

    // --- a failover at the end, checked as the others, and each promoted container equal to its primary before ---
    expectExits = true;
    await failover('final-kill', false);
    const last = failovers.at(-1);
    if (last?.kind === 'final-kill') {
      const dN = dockerOf(last.to);
      for (const name of protectedNames) {
        const diff = diffTrees(primaryTrees.get(name) ?? (new Map() as Tree), await exportTree(dN, name), ['primary before the kill', 'promoted']);
        if (diff.length > 0) {
          divergences.push({ container: name, phase: 'promoted', differences: diff.slice(0, 20) });
          fail(`failover: promoted ${name} on ${last.to} lacks what reached the bucket before MASTER:\n${diff.slice(0, 10).join('\n')}`);
        }
      }
    }
  } catch (err) {
    fail(err instanceof Fatal ? err.message : `soak aborted: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  } finally {
    stop.abort();
    expectExits = true;
    if (al !== null) await al.destroy().catch((err: unknown) => fail(`teardown: ${String(err)}`));
    await journal?.close();
    for (const fs of smallFs.values()) await fs.unmount().catch((err: unknown) => fail(`unmount ${fs.dir}: ${String(err)}`));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (agentLog !== null) await new Promise<void>((resolve) => agentLog.end(resolve));
  }

  const processes = series.map((s) => judgeLife(s, plan.leak, roleSwitches));
  for (const v of processes) if (v.leak) fail(`leak: ${v.name} (pid ${v.pid}): ${v.note}`);
  const killsByKind = { 'kill-pusher': injected['kill-pusher'], 'kill-puller': injected['kill-puller'], 'kill-engine-primary': injected['kill-engine-primary'], 'kill-engine-standby': injected['kill-engine-standby'] };
  const killTotal = Object.values(killsByKind).reduce((s, x) => s + x, 0);
  const outages = faults.intervals.filter((f) => f.kind === 'outage');
  const dur = (f: FaultInterval): number => ((f.end ?? f.start) - f.start) / 1000;
  const byKind: SoakResult['convergence']['byKind'] = {};
  for (const c of convergences) {
    const k = (byKind[c.kind] ??= { n: 0, maxMs: 0, maxAttributableMs: 0 });
    k.n++;
    k.maxMs = Math.max(k.maxMs, c.ms);
    k.maxAttributableMs = Math.max(k.maxAttributableMs, c.attributableMs);
  }
  const longest = convergences.reduce<Convergence | null>((m, c) => (m === null || c.attributableMs > m.attributableMs ? c : m), null);
  // Survived: after them, everything converged and every twin equals its primary.
  const survived = finalConvergeMs !== null && divergences.length === 0 && !failures.some((x) => x.startsWith('convergence timeout'));
  return {
    mode: plan.mode, seed, startedAt: new Date(t0).toISOString(), totalS: Math.round(now() / 1000), soakS, containers: plan.containers,
    scheduled: countKinds(schedule), injected,
    kills: { total: killTotal, survived: survived ? killTotal : 0, byKind: killsByKind },
    outage: { count: outages.length, seconds: Math.round(outages.reduce((s, f) => s + dur(f), 0)), longestS: Math.round(Math.max(0, ...outages.map(dur))) },
    diskFull: { count: injected['disk-full'], seconds: Math.round(faults.intervals.filter((f) => f.kind === 'disk-full').reduce((s, f) => s + dur(f), 0)) },
    proxy: proxyStats,
    writes: { ...writes, perSecond: soakS > 0 ? Math.round(((writes.ok + writes.failed) / soakS) * 10) / 10 : 0 },
    commits, generations: generationCount, finalConvergeMs,
    convergence: {
      probes: convergences.length, longestMs: Math.max(0, ...convergences.map((c) => c.ms)), longestAttributableMs: longest?.attributableMs ?? 0, longest, byKind, all: convergences,
    },
    divergences, failovers, processes, series, agentRestarts, agentErrors, unexpectedExits, failures,
  };
}
