// Recovery workload: N twins pre-staged through the real pipeline (push on A, pull on B), the primaries stopped,
// then MASTER posted to a fresh puller's hook and the time taken until every twin answers HTTP 200 with the
// latest content on its own loopback port. The floor: the same stopped containers started through the Docker
// API with the same concurrency and nothing else, measured to the same end condition.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import { dockerCli } from '../src/lab/engine.js';
import { startFaultProxy, type FaultProxy } from '../src/lab/fault-proxy.js';
import { freePort } from '../test/support/twinlayer.js';
import {
  removeContainers, runServices, spawnPuller, spawnPusher, waitAllStaged, type Cluster, type GroupOptions, type Service,
} from './lib/cluster.js';
import type { TwinlayerProcess } from '../test/support/twinlayer.js';
import { ProcMeter, rssMB, type ProcUsage } from './lib/proc-meter.js';
import { summarize, type Summary } from './lib/stats.js';

/** The puller's default `startConcurrency`; the floor uses the same. */
export const START_CONCURRENCY = 8;

export interface RecoveryRun {
  /** MASTER posted (or first start call) -> every twin answered 200 with the latest content. */
  totalMs: number;
  /** Mean over containers of the time to their first good answer. */
  meanMs: number;
  perContainerMs: number[];
  /** The hook's own report (twinlayer runs): finalize, start, total, and each container's start call. */
  hook?: { finalizeMs: number; startMs: number; totalMs: number; startCallMs: Summary; outcome: string };
  /** Floor runs: when startContainers resolved. */
  apiMs?: number;
  puller?: ProcUsage;
}

export interface IdleRate {
  pollIntervalMs: number;
  windowSeconds: number;
  pusherRequestsPerMinute: number;
  pullerRequestsPerMinute: number;
  pusherCpuSeconds: number;
  pullerCpuSeconds: number;
  /** VmRSS of each process at the window's end (MB; absent in results before 2026-12-07). */
  pusherRssMB?: number;
  pullerRssMB?: number;
}

export interface RecoveryPoint {
  imageMB: number;
  containers: number;
  total: Summary;
  mean: Summary;
  floorTotal: Summary;
  floorMean: Summary;
  runs: RecoveryRun[];
  floorRuns: RecoveryRun[];
  /** Initial sync of all N containers (pusher start -> all staged). */
  stageAllMs: number;
  staging: Record<string, ProcUsage>;
  idle?: IdleRate[];
}

export interface RecoveryOptions {
  runs: number;
  pollIntervalMs: number;
  /** When set, idle S3 request rates are measured over this window (at the bench and the default poll interval). */
  idleWindowMs?: number;
  log: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function getBody(port: number): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/index.html', agent: false, timeout: 1_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(null));
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

/** ms from t0 until the service answers 200 with `token`; bounded: throws after timeoutMs, or (lenient) gives NaN. */
async function firstGood(s: Service, token: string, t0: number, everyMs: number, timeoutMs: number, lenient = false): Promise<number> {
  const deadline = t0 + timeoutMs;
  while (performance.now() < deadline) {
    const r = await getBody(s.port);
    if (r && r.status === 200 && r.body.trim() === token) return performance.now() - t0;
    await sleep(everyMs);
  }
  if (lenient) return Number.NaN;
  throw new Error(`${s.name} did not answer 200 with the latest content within ${timeoutMs} ms`);
}

/** One timed recovery: each service's first good answer from t0; lenient runs count the ones that never answered. */
function runOf(per: number[], extra: Partial<RecoveryRun> = {}): RecoveryRun & { answered: number } {
  const good = per.filter((x) => Number.isFinite(x));
  return {
    totalMs: good.length === 0 ? Number.NaN : Math.max(...good),
    meanMs: good.reduce((a, b) => a + b, 0) / good.length,
    perContainerMs: per.map((x) => Math.round(x)),
    answered: good.length,
    ...extra,
  };
}

/** The hook's answer to MASTER (src/vrrp-hook/boot.ts MasterAnswer). */
interface MasterAnswer {
  outcome: string;
  timedOut?: boolean;
  totals: { ms: number; started: number; failed: number };
  finalize: { ms: number };
  start: { ms: number; containers: Array<{ ms: number; ok: boolean }> };
}

export interface ProbeOptions {
  probeEveryMs: number;
  timeoutMs: number;
  /** Twins that never answer within timeoutMs are counted (`answered`), not thrown on. */
  lenient?: boolean;
}

/** MASTER posted to a standing puller's hook (it promotes once per process) → every twin answers 200 with its latest
 *  content; the hook's own report beside it. */
export async function timeMaster(c: Cluster, hookPort: number, puller: TwinlayerProcess, services: Service[], tokens: Map<string, string>, o: ProbeOptions): Promise<RecoveryRun & { answered: number; hookAnswer: MasterAnswer }> {
  await assertNothingAnswers(services);
  const meter = new ProcMeter(puller.child.pid!);
  await meter.begin();
  const m0 = performance.now();
  const answer = fetch(`http://127.0.0.1:${hookPort}/v1/vrrp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'INSTANCE', name: 'VI_BENCH', state: 'MASTER', priority: 100 }),
    signal: AbortSignal.timeout(o.timeoutMs),
  }).then(async (res) => (await res.json()) as MasterAnswer);
  answer.catch(() => undefined);
  const per = await Promise.all(services.map((s) => firstGood(s, tokens.get(s.name)!, m0, o.probeEveryMs, o.timeoutMs, o.lenient)));
  const hook = await answer;
  const usage = await meter.end();
  return {
    ...runOf(per, {
      hook: { finalizeMs: hook.finalize.ms, startMs: hook.start.ms, totalMs: hook.totals.ms, startCallMs: summarize(hook.start.containers.map((x) => x.ms)), outcome: hook.outcome },
      puller: usage,
    }),
    hookAnswer: hook,
  };
}

/** The floor: the same stopped containers started through the Docker API, same concurrency, nothing else. */
export async function timeFloor(c: Cluster, services: Service[], tokens: Map<string, string>, o: ProbeOptions): Promise<RecoveryRun & { answered: number }> {
  await assertNothingAnswers(services);
  const f0 = performance.now();
  const api = c.runtimeB.startContainers(services.map((s) => s.name), START_CONCURRENCY).then((res) => {
    const failed = res.filter((x) => !x.ok);
    if (failed.length > 0) throw new Error(`floor start failed: ${failed.map((x) => `${x.name}: ${x.error}`).join('; ')}`);
    return performance.now() - f0;
  });
  api.catch(() => undefined);
  const per = await Promise.all(services.map((s) => firstGood(s, tokens.get(s.name)!, f0, o.probeEveryMs, o.timeoutMs, o.lenient)));
  return runOf(per, { apiMs: await api });
}

async function assertNothingAnswers(services: Service[]): Promise<void> {
  for (const s of services) {
    if ((await getBody(s.port)) !== null) throw new Error(`port ${s.port} (${s.name}) answers before recovery: a primary or twin still runs`);
  }
}

export async function stopAll(c: Cluster, names: string[]): Promise<void> {
  const q = new PQueue({ concurrency: START_CONCURRENCY });
  await Promise.all(names.map((n) => q.add(() => c.runtimeB.stopContainer(n, 0))));
}

async function countDuring(proxies: { pusher: FaultProxy; puller: FaultProxy }, meters: Record<string, ProcMeter>, windowMs: number, pollIntervalMs: number): Promise<IdleRate> {
  await sleep(2_000); // let anything in flight finish
  for (const m of Object.values(meters)) await m.begin();
  const p0 = proxies.pusher.stats.requests;
  const l0 = proxies.puller.stats.requests;
  await sleep(windowMs);
  const perMin = (n: number): number => Math.round((n / windowMs) * 60_000);
  return {
    pollIntervalMs,
    windowSeconds: windowMs / 1000,
    pusherRequestsPerMinute: perMin(proxies.pusher.stats.requests - p0),
    pullerRequestsPerMinute: perMin(proxies.puller.stats.requests - l0),
    pusherCpuSeconds: (await meters['pusher']!.end()).cpuSeconds,
    pullerCpuSeconds: (await meters['puller']!.end()).cpuSeconds,
    pusherRssMB: await rssMB(meters['pusher']!.pid),
    pullerRssMB: await rssMB(meters['puller']!.pid),
  };
}

export async function runRecoveryPoint(c: Cluster, imageMB: number, n: number, o: RecoveryOptions): Promise<RecoveryPoint> {
  const group = `rec${imageMB}x${n}`;
  const names = Array.from({ length: n }, (_, i) => `${group}-${i}`);
  const hookPort = await freePort();
  const probeEvery = n === 1 ? 5 : 20;
  let proxies: { pusher: FaultProxy; puller: FaultProxy } | null = null;
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const services = await runServices(c, imageMB, `bench.${group}`, names);
    const tokens = new Map(names.map((nm) => [nm, `latest-${randomBytes(6).toString('hex')}`]));
    const q = new PQueue({ concurrency: 4 });
    await Promise.all(names.map((nm) => q.add(() => dockerCli(c.a, ['exec', nm, 'sh', '-c', `echo ${tokens.get(nm)} > /var/www/index.html`]))));
    if (o.idleWindowMs !== undefined) {
      proxies = { pusher: await startFaultProxy(c.s3.endpoint), puller: await startFaultProxy(c.s3.endpoint) };
    }
    const base: GroupOptions = { group, label: `bench.${group}`, pollIntervalMs: o.pollIntervalMs, hookPort };
    const t0 = performance.now();
    const pusher = spawnPusher(c, proxies ? { ...base, endpoint: proxies.pusher.endpoint } : base);
    cleanups.push(() => pusher.kill('SIGTERM'));
    let puller = await spawnPuller(c, { ...(proxies ? { ...base, endpoint: proxies.puller.endpoint } : base), hookPort });
    cleanups.push(() => puller.kill('SIGTERM'));
    const stagingMeters = { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) };
    for (const m of Object.values(stagingMeters)) await m.begin();
    await waitAllStaged(c, hookPort, names, 300_000);
    const stageAllMs = Math.round(performance.now() - t0);
    const staging: Record<string, ProcUsage> = { pusher: await stagingMeters.pusher.end(), puller: await stagingMeters.puller.end() };
    o.log(`  recovery ${n} x ${imageMB} MB: ${n} twins staged in ${stageAllMs} ms`);

    let idle: IdleRate[] | undefined;
    if (proxies && o.idleWindowMs !== undefined) {
      idle = [await countDuring(proxies, { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) }, o.idleWindowMs, o.pollIntervalMs)];
      await puller.kill('SIGTERM');
      const defaults = 250;
      puller = await spawnPuller(c, { ...base, endpoint: proxies.puller.endpoint, hookPort, pollIntervalMs: defaults });
      await waitAllStaged(c, hookPort, names, 60_000);
      idle.push(await countDuring(proxies, { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) }, o.idleWindowMs, defaults));
      o.log(`  idle S3 requests/min: ${idle.map((r) => `poll ${r.pollIntervalMs} ms: pusher ${r.pusherRequestsPerMinute}, puller ${r.pullerRequestsPerMinute}`).join('; ')}`);
    }
    await puller.kill('SIGTERM');
    await pusher.kill('SIGTERM');
    await dockerCli(c.a, ['stop', '-t', '0', ...names], 120_000);

    const runs: RecoveryRun[] = [];
    const floorRuns: RecoveryRun[] = [];
    for (let r = 0; r < o.runs; r++) {
      // twinlayer: a fresh puller (the hook promotes once per process), MASTER, every twin good.
      puller = await spawnPuller(c, { ...base, hookPort });
      await waitAllStaged(c, hookPort, names, 60_000);
      const { answered: _a, hookAnswer: hook, ...run } = await timeMaster(c, hookPort, puller, services, tokens, { probeEveryMs: probeEvery, timeoutMs: 120_000 });
      runs.push(run);
      if (hook.outcome !== 'booted') throw new Error(`MASTER outcome ${hook.outcome}`);
      await puller.kill('SIGTERM');
      await stopAll(c, names);

      const { answered: _f, ...floorRun } = await timeFloor(c, services, tokens, { probeEveryMs: probeEvery, timeoutMs: 120_000 });
      floorRuns.push(floorRun);
      await stopAll(c, names);
      o.log(`  recovery ${n} x ${imageMB} MB run ${r + 1}: twinlayer ${Math.round(runs.at(-1)!.totalMs)} ms, floor ${Math.round(floorRuns.at(-1)!.totalMs)} ms`);
    }
    return {
      imageMB, containers: n,
      total: summarize(runs.map((x) => x.totalMs)),
      mean: summarize(runs.map((x) => x.meanMs)),
      floorTotal: summarize(floorRuns.map((x) => x.totalMs)),
      floorMean: summarize(floorRuns.map((x) => x.meanMs)),
      runs, floorRuns, stageAllMs, staging,
      ...(idle ? { idle } : {}),
    };
  } finally {
    for (const f of cleanups) await f().catch(() => undefined);
    await removeContainers(c.a, names).catch(() => undefined);
    await removeContainers(c.b, names).catch(() => undefined);
    await proxies?.pusher.close();
    await proxies?.puller.close();
  }
}
