// The chaos soak itself: the agent lab (two hosts, a Docker engine and `twinlayer agent` in each, keepalived, the
// embedded S3 server behind a fault proxy per host), the standby's Docker data root on a small loop-mounted file
// system, N protected containers written to at random, and the seeded fault schedule (plan.ts) played against
// them. Then writes and faults stop, everything must converge, every twin must equal its primary (`docker
// export`), and the primary is killed: the promoted containers must hold everything that reached the bucket.
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { AgentLab, WEB, type AgentRun } from '../../src/lab/agent-lab.js';
import { copyImage, importBusyboxImage } from '../../src/lab/busybox-image.js';
import { dockerCli } from '../../src/lab/engine.js';
import type { Fault } from '../../src/lab/fault-proxy.js';
import { killHard, withDescendants } from '../../src/lab/processes.js';
import { waitFor } from '../../src/lab/wait.js';
import { diffTrees, readExport, type Tree } from '../../test/support/export-tree.js';
import { FaultLog, type Convergence, type FaultInterval } from './faults.js';
import { judgeSeries, sampleProcess, type LeakVerdict, type Series } from './leak.js';
import { countKinds, drawSchedule, type ChaosPlan, type FaultKind, type KillKind, type NetKind, type ScheduledFault } from './plan.js';
import { Prng } from './prng.js';
import { drawOp, OPS, type Op } from './workload.js';

const execFileP = promisify(execFile);
const PRIMARY = 'a';
const STANDBY = 'b';
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
  failover: { headBeforeKill: Record<string, number>; commitsBeforeMaster: number; outcome: string | null; promoted: number; masterToBootedMs: number | null } | null;
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
}

class Fatal extends Error {}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
async function dockerExec(docker: Docker, name: string, script: string, timeoutMs = 30_000): Promise<number> {
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

async function upperDir(docker: Docker, name: string): Promise<string | undefined> {
  const info = (await docker.getContainer(name).inspect()) as { GraphDriver: { Data: Record<string, string> | null } };
  return info.GraphDriver.Data?.['UpperDir'];
}

async function exportTree(docker: Docker, name: string): Promise<Tree> {
  return readExport(await docker.getContainer(name).export());
}

/** A loop-mounted ext4 of `sizeMb` under a fresh temp dir; the standby's engine lives on it. */
async function mountSmallFs(sizeMb: number): Promise<{ dir: string; unmount(): Promise<void> }> {
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
async function withLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execFileP('ldd', [binary]);
  const libs = [...stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]).filter((p): p is string => p !== undefined);
  return [binary, ...libs];
}

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
  const unexpectedExits: string[] = [];
  const injected = Object.fromEntries(Object.keys(countKinds([])).map((k) => [k, 0])) as Record<FaultKind, number>;
  const agentRestarts: Record<string, number> = { [PRIMARY]: 0, [STANDBY]: 0 };
  const writes = { ok: 0, failed: 0, byOp: Object.fromEntries(OPS.map((o) => [o, 0])) as Record<Op, number> };
  let finalConvergeMs: number | null = null;
  let soakS = 0;
  const divergences: Divergence[] = [];
  let failover: SoakResult['failover'] = null;
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
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!labStarted) process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const fs = await mountSmallFs(plan.standbyFsMb);
  let al: AgentLab | null = null;
  const stop = new AbortController();
  try {
    labStarted = true;
    al = await AgentLab.create({
      // The agents' errors (the first of each message; all are counted for the report) and the lab's own trouble.
      log: (l) => {
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
      engineBaseDirs: { [STANDBY]: fs.dir },
    });
    const l = al;
    const dockerOf = (host: string): Docker => new Docker({ socketPath: l.engine(host).socketPath });
    const dA = dockerOf(PRIMARY);
    const dB = dockerOf(STANDBY);
    log(`lab ${l.lab.id} up; the standby's engine on a ${plan.standbyFsMb} MiB ext4 at ${fs.dir}`);
    await importBusyboxImage(l.engine(PRIMARY).socketPath, IMAGE, { cmd: [], hostFiles: await withLibraries('/usr/bin/setfattr') });
    await copyImage(l.engine(PRIMARY).socketPath, l.engine(STANDBY).socketPath, IMAGE);
    for (const name of names) {
      await dockerCli(l.engine(PRIMARY), ['run', '-d', '--name', name, '--label', 'twinlayer.enable=true', '--restart', 'unless-stopped', '--network', 'none',
        IMAGE, 'sh', '-c', "trap 'exit 0' TERM; mkdir -p /data; while true; do sleep 1; done"]);
    }
    log(`${names.length} protected containers (+ ${WEB}) running on ${PRIMARY}`);

    // --- agents: start, watch for deaths we did not cause, sample RSS and descriptors ---
    const lives = new Map<string, { run: AgentRun; series: Series; killedByUs: boolean }>();
    const agentDown = new Set<string>();
    const startAgent = async (host: string): Promise<void> => {
      const run = await l.startAgent(host);
      const s: Series = { name: `agent-${host}#${series.filter((x) => x.name.startsWith(`agent-${host}#`)).length + 1}`, pid: run.proc.pid, startedAt: now(), samples: [] };
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
    await Promise.all([startAgent(PRIMARY), startAgent(STANDBY)]);
    await l.startKeepalived();
    await waitFor(`${PRIMARY} primary`, 60_000, async () => ((await l.status(PRIMARY))?.claim?.status === 'owner' ? true : undefined), 100);
    const setupConverge = Date.now();
    // A container without changes (web) has no commit; its twin is made from its spec all the same.
    await waitFor('the first full sync of every container on the standby', 120_000, async () => {
      const st = await l.converged(STANDBY);
      return st !== undefined && protectedNames.every((n) => st.containers.some((c) => c.name === n && c.twin === 'stopped')) ? true : undefined;
    }, 500).catch(async (err: unknown) => {
      const st = await l.status(STANDBY);
      throw new Fatal(`${(err as Error).message}; head ${JSON.stringify(await l.head())}; standby status ${JSON.stringify(st)}`);
    });
    log(`agents up, ${PRIMARY} MASTER, standby converged in ${Date.now() - setupConverge} ms; soak starts`);

    const sampler = setInterval(() => {
      for (const life of lives.values()) {
        if (!life.run.proc.running) continue;
        void sampleProcess(life.series.pid, now()).then((x) => { if (x !== null) life.series.samples.push(x); });
      }
    }, plan.sampleMs);

    // --- probes: a counter written on the primary, read back from the twin's upper dir on the standby ---
    let probeWritten = 0;
    let probeSeen = 0;
    const probeWaiters = new Set<{ n: number; resolve: () => void }>();
    const probePoller = setInterval(() => {
      void (async () => {
        try {
          const upper = await upperDir(dB, PROBE_CONTAINER);
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
        // The write itself waits out a primary engine that is down.
        for (let i = 0; ; i++) {
          try {
            if ((await dockerExec(dA, PROBE_CONTAINER, `echo ${n} > /probe`)) === 0) break;
          } catch {
            // engine down
          }
          if (i > 600) return fail(`probe ${n} after ${f.kind} (${f.detail}) could not be written on ${PRIMARY}/${PROBE_CONTAINER} for 5 min`);
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
            return fail(`convergence timeout: ${PROBE_CONTAINER}'s probe ${n}, written after ${f.kind} (${f.detail}) ended at ${Math.round(endedAt / 1000)} s, not staged on ${STANDBY} after ${Math.round(ms / 1000)} s (${Math.round(attributableMs / 1000)} s not explained by other faults); standby has probe ${probeSeen}`);
          }
        }
      })());
    };

    // --- faults ---
    const enginesDown = new Set<string>();
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
      if (host === PRIMARY) {
        // Docker's restart policy brings the protected containers back: wait for them, as the end of this fault.
        await waitFor(`the protected containers running again on ${host}`, 120_000, async () => {
          const list = await dA.listContainers({ filters: { label: ['twinlayer.enable=true'] } });
          return list.length === protectedNames.length ? true : undefined;
        }, 250).catch((err: unknown) => fail(`engine ${host} restarted but its containers did not all run again: ${(err as Error).message}`));
      }
      faults.end(f);
      probe(f);
    };
    let ballast: string | null = null;
    const diskFull = async (ms: number): Promise<void> => {
      const f = faults.begin('disk-full', `${STANDBY}'s data root, ${Math.round(ms / 1000)} s`);
      injected['disk-full']++;
      ballast = join(fs.dir, 'ballast');
      const st = await statfs(fs.dir);
      const bytes = st.bavail * st.bsize - 64 * 1024;
      if (bytes > 0) await execFileP('fallocate', ['-l', String(bytes), ballast]).catch((err: unknown) => log(`fallocate: ${String(err)}`));
      log(`disk full on ${STANDBY}: ${Math.round(bytes / 1048576)} MiB of ballast, ${(await statfs(fs.dir)).bavail * st.bsize} bytes left`);
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
      await l.cutBucket(PRIMARY);
      await l.cutBucket(STANDBY);
      await sleep(ms, stop.signal);
      await l.healBucket(PRIMARY);
      await l.healBucket(STANDBY);
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
    const play = async (ev: ScheduledFault): Promise<void> => {
      switch (ev.kind) {
        case 'kill-pusher':
        case 'kill-puller':
        case 'kill-engine-primary':
        case 'kill-engine-standby': {
          const host = ev.kind === 'kill-pusher' || ev.kind === 'kill-engine-primary' ? PRIMARY : STANDBY;
          const target = ev.kind.startsWith('kill-engine') ? `engine-${host}` : `agent-${host}`;
          // One kill of a target at a time: a kill that comes while the target is still down waits (bounded).
          for (let i = 0; targetBusy.has(target) || (target.startsWith('agent') && agentDown.has(host)); i++) {
            if (i > 1200 || stop.signal.aborted) return;
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
          if (outageActive) return;
          return outage(ev.ms);
        case 'disk-full':
          if (ballast !== null) return;
          return diskFull(ev.ms);
        default:
          netFault(ev.kind, ev.host === 'primary' ? PRIMARY : STANDBY, ev.count);
      }
    };

    // --- the soak: writes and the schedule ---
    const soakStart = now();
    const writer = (async () => {
      const inflight = new Set<Promise<void>>();
      const gap = 1000 / plan.writesPerSecond;
      while (!stop.signal.aborted && now() - soakStart < plan.soakMs) {
        if (inflight.size < 6) {
          const name = writePrng.pick(names);
          const { op, script } = drawOp(writePrng);
          const p = dockerExec(dA, name, script).then((code) => {
            if (code === 0) {
              writes.ok++;
              writes.byOp[op]++;
            } else {
              writes.failed++;
            }
          }, () => {
            writes.failed++;
          }).finally(() => inflight.delete(p));
          inflight.add(p);
        }
        await sleep(writePrng.range(0.5, 1.5) * gap, stop.signal);
      }
      await Promise.all(inflight);
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
    await writer;
    soakS = Math.round((now() - soakStart) / 1000);
    log(`soak over after ${soakS} s: ${writes.ok} writes ok, ${writes.failed} failed; waiting for the faults in progress to end`);

    // --- everything stops, heals and converges ---
    stop.abort(); // ends the outage and disk-full waits early
    for (const host of [PRIMARY, STANDBY]) l.faultProxy(host).pass();
    await Promise.all([...running]);
    for (const host of [PRIMARY, STANDBY]) {
      await l.healBucket(host);
      l.faultProxy(host).pass();
      if (!lives.get(host)?.run.proc.running) await startAgent(host).catch((err: unknown) => fail(`agent on ${host} could not be started for the final convergence: ${String(err)}`));
    }
    if (failures.some((x) => x.startsWith('agent') || x.startsWith('engine'))) throw new Fatal('the lab is not whole after the soak (see the failures above)');
    const token = `final-${seed}-${Date.now()}`;
    const finalStart = Date.now();
    for (const name of protectedNames) {
      await waitFor(`the final marker written in ${name} on ${PRIMARY}`, 60_000, async () => ((await dockerExec(dA, name, `echo ${token} > /chaos-final`)) === 0 ? true : undefined), 500);
    }
    let lagging: string[] = [];
    try {
      await waitFor('every twin holding the final marker and the standby staged to the head', plan.finalConvergeMs, async () => {
        lagging = [];
        for (const name of protectedNames) {
          const upper = await upperDir(dB, name).catch(() => undefined);
          const v = upper === undefined ? null : await readFile(join(upper, 'chaos-final'), 'utf8').catch(() => null);
          if (v?.trim() !== token) lagging.push(name);
        }
        if (lagging.length > 0) return undefined;
        return (await l.converged(STANDBY)) !== undefined ? true : undefined;
      }, 500);
      finalConvergeMs = Date.now() - finalStart;
      log(`converged ${finalConvergeMs} ms after the last marker write`);
    } catch (err) {
      const st = await l.status(STANDBY);
      const detail = (st?.containers ?? []).filter((c) => lagging.includes(c.name) || c.lastError).map((c) => `${c.name}: staged ${c.stagedSeq ?? '?'} twin ${c.twin ?? '?'} error ${c.lastError ?? '-'}`).join('; ');
      throw new Fatal(`final convergence timeout after ${plan.finalConvergeMs} ms: ${lagging.length > 0 ? `twins without the final marker: ${lagging.join(', ')}` : 'the standby did not report every container staged to the head'}; ${detail} (${(err as Error).message})`);
    }
    clearInterval(probePoller);
    await Promise.race([Promise.all(probeChain), sleep(30_000)]);
    for (const w of probeWaiters) w.resolve();

    // --- the oracle: docker export of every twin equals its primary's ---
    const primaryTrees = new Map<string, Tree>();
    for (const name of protectedNames) {
      const [ta, tb] = await Promise.all([exportTree(dA, name), exportTree(dB, name)]);
      primaryTrees.set(name, ta);
      const diff = diffTrees(ta, tb, ['primary', 'twin']);
      if (diff.length > 0) {
        divergences.push({ container: name, phase: 'twin', differences: diff.slice(0, 20) });
        fail(`divergence: twin of ${name} on ${STANDBY} differs from its primary:\n${diff.slice(0, 10).join('\n')}`);
      }
    }
    log(`compared ${protectedNames.length} exports: ${divergences.length} divergent`);

    clearInterval(sampler);
    const gens = await l.bucket.listGenerations();
    generationCount = gens.length;
    for (const g of gens) for await (const item of l.bucket.listRecords(g, 0)) if ('record' in item) commits++;
    for (const host of [PRIMARY, STANDBY]) {
      const p = l.faultProxy(host);
      proxyStats[host] = { requests: p.stats.requests, faults: { ...p.stats.faults } };
    }

    // --- a failover at the end: everything that reached the bucket before MASTER must be in the promoted containers ---
    const before = await l.head();
    const commitsBeforeMaster = commits;
    expectExits = true;
    const killedAt = Date.now();
    await l.kill(PRIMARY);
    const promoted = await waitFor(`${STANDBY} promoted`, 120_000, async () => {
      const st = await l.status(STANDBY);
      return st?.role === 'primary' && (st.lastPromotion?.ms ?? 0) > 0 ? st : undefined;
    }, 100).catch((err: unknown) => {
      fail(`failover: ${STANDBY} was not promoted: ${String(err)}`);
      return null;
    });
    if (promoted !== null) {
      const started = (promoted.lastPromotion?.start?.containers ?? []).filter((c) => c.ok).map((c) => c.name);
      for (const name of protectedNames) {
        if (!started.includes(name)) {
          divergences.push({ container: name, phase: 'promoted', differences: ['not started at MASTER'] });
          fail(`failover: ${name} was not started on ${STANDBY} at MASTER (outcome ${promoted.lastPromotion?.outcome ?? '?'})`);
          continue;
        }
        const diff = diffTrees(primaryTrees.get(name) ?? (new Map() as Tree), await exportTree(dB, name), ['primary before the kill', 'promoted']);
        if (diff.length > 0) {
          divergences.push({ container: name, phase: 'promoted', differences: diff.slice(0, 20) });
          fail(`failover: promoted ${name} on ${STANDBY} lacks what reached the bucket before MASTER:\n${diff.slice(0, 10).join('\n')}`);
        }
      }
      failover = {
        headBeforeKill: before.containers,
        commitsBeforeMaster,
        outcome: promoted.lastPromotion?.outcome ?? null,
        promoted: started.length,
        masterToBootedMs: promoted.lastPromotion?.ms ?? null,
      };
      log(`failover: ${STANDBY} ${failover.outcome ?? '?'} ${started.length} containers in ${Date.now() - killedAt} ms after the kill; ${divergences.filter((d) => d.phase === 'promoted').length} differ from the primary`);
    }
  } catch (err) {
    fail(err instanceof Fatal ? err.message : `soak aborted: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  } finally {
    stop.abort();
    expectExits = true;
    if (al !== null) await al.destroy().catch((err: unknown) => fail(`teardown: ${String(err)}`));
    await fs.unmount().catch((err: unknown) => fail(`unmount ${fs.dir}: ${String(err)}`));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const processes = series.map((s) => judgeSeries(s, plan.leak));
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
    divergences, failover, processes, series, agentRestarts, agentErrors, unexpectedExits, failures,
  };
}
