// `npm run bench:scale [-- --containers=100,200 --samples=10 --idle-seconds=60 --tag=T]`: twinlayer with many
// protected containers on one host (issue 13 item 5). For each N (and N = 1 first, the reference), on the bench's two
// engines (bench/lib/cluster.ts: `twinlayer push` on A, `twinlayer pull` with its hook on B, the embedded S3 server,
// a counting proxy in front of it per side), N busybox httpd containers each serving its own loopback port:
//   - all N staged from the first sync (pusher start → every twin stopped and current);
//   - per-change sync latency: one 4 KiB write in one container → staged in its twin's upper dir (write clock:
//     inotify on the primary's upper dir, as bench/sync.ts), `--samples` writes spread over the containers, the
//     puller polling every 20 ms (the bench poll); CPU of both processes over these writes;
//   - a quiet minute (`--idle-seconds`) with the puller at its default 250 ms poll, after the pusher's first bucket
//     GC run (reported apart: its CPU ms): bucket requests per minute of each
//     side (at the proxies), CPU % of a core (/proc/<pid>/stat utime + stime) and VmRSS of each process;
//   - the inotify watches and instances the pusher holds;
//   - MASTER posted to that idle puller's hook (primaries stopped) → every twin answering 200 with its latest
//     content, beside the Docker API floor measured as bench/recovery.ts does (the same stopped containers started
//     through the API at the same concurrency); how many twins answered and what the hook reported.
// Prints a table and writes bench/results/<date>-scale[-T].json and .md. Root; run it under the heavy lock.
// `--cpu-prof=DIR`: CPU profiles of the pusher and the idle puller (they include the MASTER run and the pusher's
// writes: look at the idle minute in the timeline).
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { dockerCli } from '../src/lab/engine.js';
import { startFaultProxy, type FaultProxy, type ProxyAnswer } from '../src/lab/fault-proxy.js';
import { freePort, type TwinlayerProcess } from '../test/support/twinlayer.js';
import { intOption, option, resultsDir, withCluster } from './lib/bench-cluster.js';
import {
  makeServiceImage, removeContainers, runServices, spawnPuller, spawnPusher, upperDir, waitAllStaged,
  type Cluster, type GroupOptions, type Service,
} from './lib/cluster.js';
import { inotifyInstances, inotifyWatches, ProcMeter, rssMB } from './lib/proc-meter.js';
import { summarize, ratio, type Summary } from './lib/stats.js';
import { ContainerShell, fileHolds, pollUntil, WriteClock, writeCommand } from './lib/writer.js';
import { stopAll, timeFloor, timeMaster } from './recovery.js';

for (const a of process.argv.slice(2)) {
  if (!/^--(containers|samples|idle-seconds|tag|cpu-prof)=/.test(a)) throw new Error(`unknown argument ${a}; expected --containers=100,200 --samples=10 --idle-seconds=60 --tag=T --cpu-prof=DIR`);
}
const counts = [...new Set([1, ...(option('containers') ?? '100,200').split(',').map((x) => {
  const n = Number(x);
  if (!Number.isInteger(n) || n < 1 || n > 400) throw new RangeError(`--containers: integers 1..400, got ${x}`);
  return n;
})])].sort((a, b) => a - b);
const samples = intOption('samples', 10, 100);
const idleSeconds = intOption('idle-seconds', 60, 600);
const tag = option('tag') ?? '';
/** `--cpu-prof=DIR`: the pusher and the idle puller of each point write V8 CPU profiles there when they exit
 *  (node --cpu-prof; open them in Chrome's DevTools): what an idle process does, per poll and per container. */
const cpuProfDir = option('cpu-prof');
function profEnv(n: number, side: string): Record<string, string> {
  if (cpuProfDir === undefined) return {};
  const dir = join(resolve(cpuProfDir), `${side}-${n}`);
  mkdirSync(dir, { recursive: true });
  return { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` };
}
if (!/^[a-z0-9-]*$/.test(tag)) throw new Error(`--tag: letters, digits and dashes, got ${JSON.stringify(tag)}`);

/** A busybox image of about this many MB (bench/lib/cluster.ts makeServiceImage): small, the count is what is measured. */
const IMAGE_MB = 3;
/** The bench's poll for the latency samples (as bench/run.ts), and the puller's default for the idle minute and MASTER. */
const LATENCY_POLL_MS = 20;
const DEFAULT_POLL_MS = 250;
const CHANGE_BYTES = 4096;
const CHANGE_PATH = '/etc/app.conf';

interface ProcFigures { cpuPercent: number; rssMB: number; peakRssMB: number }

export interface ScalePoint {
  containers: number;
  /** Pusher start → every twin stopped and current (ms). */
  stageAllMs: number;
  /** 4 KiB write → staged in the twin (ms), puller poll 20 ms. */
  sync: Summary;
  syncSamples: number[];
  /** Over the sync samples (wall time of the samples, writes one at a time). */
  underWrites: { seconds: number; pusher: ProcFigures; puller: ProcFigures };
  /** A quiet window, the puller at its default poll. */
  idle: {
    seconds: number; pollIntervalMs: number; standbyRequestsPerMinute: number; primaryRequestsPerMinute: number; pusher: ProcFigures; puller: ProcFigures;
    /** Requests answered over the window by method and key pattern (numbers and digests folded). */
    requestKinds: { primary: Record<string, number>; standby: Record<string, number> };
  };
  /** The pusher's first bucket GC run, before the idle window: `spanCpuMs` its CPU from the idle puller's start to the
   *  run's log line (`spanSeconds`), `cpuMs` that less the idle window's rate over the span. */
  firstGc: { collected: boolean; spanSeconds: number; spanCpuMs: number; cpuMs: number };
  inotify: { watches: number; instances: number };
  master: {
    /** MASTER posted → every twin answered 200 with its latest content (ms); NaN when some never did. */
    totalMs: number;
    answered: number;
    hookOutcome: string;
    hookTimedOut: boolean;
    hookStarted: number;
    hookFailed: number;
    hookMs: number;
    floorMs: number;
    floorAnswered: number;
    /** twinlayer / floor. */
    ratio: number;
  };
}

const token = (): string => `tok-${randomBytes(8).toString('hex')}`;

async function figures(m: ProcMeter, seconds: number): Promise<ProcFigures> {
  const u = await m.end();
  return { cpuPercent: Math.round((u.cpuSeconds / seconds) * 1000) / 10, rssMB: await rssMB(m.pid), peakRssMB: u.peakRssMB };
}

async function runPoint(c: Cluster, n: number, log: (line: string) => void): Promise<ScalePoint> {
  const group = `scale${n}`;
  const label = `bench.${group}`;
  const names = Array.from({ length: n }, (_, i) => `${group}-${i}`);
  const hookPort = await freePort();
  const procs: TwinlayerProcess[] = [];
  const shells = new Map<string, ContainerShell>();
  const clocks = new Map<string, WriteClock>();
  let proxies: { pusher: FaultProxy; puller: FaultProxy } | null = null;
  try {
    const t0 = performance.now();
    const services: Service[] = await runServices(c, IMAGE_MB, label, names);
    const tokens = new Map(names.map((nm) => [nm, `latest-${randomBytes(6).toString('hex')}`]));
    const q = new PQueue({ concurrency: 4 });
    await Promise.all(names.map((nm) => q.add(() => dockerCli(c.a, ['exec', nm, 'sh', '-c', `echo ${tokens.get(nm)} > /var/www/index.html`]))));
    log(`  ${n}: ${n} containers running on A in ${Math.round((performance.now() - t0) / 1000)} s`);
    proxies = { pusher: await startFaultProxy(c.s3.endpoint), puller: await startFaultProxy(c.s3.endpoint) };
    const g: GroupOptions = { group, label, pollIntervalMs: LATENCY_POLL_MS, hookPort };
    const s0 = performance.now();
    const pusher = spawnPusher(c, { ...g, endpoint: proxies.pusher.endpoint, env: profEnv(n, 'pusher') });
    procs.push(pusher);
    let puller = await spawnPuller(c, { ...g, endpoint: proxies.puller.endpoint, hookPort });
    procs.push(puller);
    await waitAllStaged(c, hookPort, names, 600_000);
    const stageAllMs = Math.round(performance.now() - s0);
    log(`  ${n}: all staged in ${stageAllMs} ms`);
    const inotify = { watches: await inotifyWatches(pusher.child.pid!), instances: await inotifyInstances(pusher.child.pid!) };

    // Sync latency: writes spread over the containers, one at a time.
    const sampled = Array.from({ length: samples }, (_, i) => names[Math.floor((i * n) / samples)]!);
    const targets = new Map<string, { upperA: string; upperB: string; clock: WriteClock }>();
    for (const name of new Set(sampled)) {
      const shell = new ContainerShell(c.a, name);
      shells.set(name, shell);
      // Warm-up: /etc copied up on the primary (so it can be watched) and the change's file staged once.
      const w = token();
      await shell.run(writeCommand('/etc/.bench-warm', 64, w));
      const upperA = (await c.runtimeA.resolveLayers(name)).upperDir;
      const upperB = await upperDir(c.runtimeB, name);
      await pollUntil(`warm-up staged in ${name}`, 120_000, 10, () => fileHolds(join(upperB, 'etc/.bench-warm'), w, 64));
      const clock = new WriteClock(join(upperA, 'etc'));
      clocks.set(name, clock);
      targets.set(name, { upperA, upperB, clock });
    }
    await sleep(1_000);
    const writeMeters = { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) };
    for (const m of Object.values(writeMeters)) await m.begin();
    const w0 = performance.now();
    const syncSamples: number[] = [];
    for (const name of sampled) {
      const t = token();
      const { upperB, clock } = targets.get(name)!;
      clock.reset('app.conf');
      const staged = pollUntil(`4 KiB staged in the twin of ${name}`, 120_000, 2, () => fileHolds(join(upperB, CHANGE_PATH), t, CHANGE_BYTES));
      staged.catch(() => undefined); // awaited below; a failed write must not leave it unhandled
      await shells.get(name)!.run(writeCommand(CHANGE_PATH, CHANGE_BYTES, t));
      const tTwin = await staged;
      const tWrite = clock.last('app.conf');
      if (tWrite === undefined) throw new Error(`sample in ${name}: no write event`);
      syncSamples.push(Math.round((tTwin - tWrite) * 10) / 10);
      await sleep(300); // past the pusher's quiet debounce: each sample is a first write after a quiet period
    }
    const writeSeconds = (performance.now() - w0) / 1000;
    const underWrites = { seconds: Math.round(writeSeconds), pusher: await figures(writeMeters.pusher, writeSeconds), puller: await figures(writeMeters.puller, writeSeconds) };
    log(`  ${n}: sync ${JSON.stringify(summarize(syncSamples))}; under writes ${JSON.stringify(underWrites)}`);

    // The quiet window, the puller at its default poll.
    await puller.kill('SIGTERM');
    puller = await spawnPuller(c, { ...g, endpoint: proxies.puller.endpoint, hookPort, pollIntervalMs: DEFAULT_POLL_MS, env: profEnv(n, 'puller') });
    procs.push(puller);
    await waitAllStaged(c, hookPort, names, 120_000);
    await sleep(5_000); // the new puller's first checks, anything in flight
    // The pusher's first bucket GC run (GcLoop: a minute after its start, then hourly) is one-off work, not idling:
    // the window starts after it, and the run is reported apart (the pusher's CPU from here to its log line, less
    // what the idle window's rate gives for that span).
    const gcMeter = new ProcMeter(pusher.child.pid!);
    await gcMeter.begin();
    const g0 = performance.now();
    const gcLine = await pusher.waitForLine(/"msg":"bucket garbage collect(ed|ion failed|ion stopped)/, 180_000);
    const gcSpanSeconds = (performance.now() - g0) / 1000;
    const gcCpuSeconds = (await gcMeter.end()).cpuSeconds;
    log(`  ${n}: first bucket GC run over (${gcLine.includes('"bucket garbage collected"') ? 'collected' : 'not collected'}) after ${Math.round(gcSpanSeconds)} s, ${Math.round(gcCpuSeconds * 1000)} ms CPU`);
    await sleep(2_000);
    const idleMeters = { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) };
    for (const m of Object.values(idleMeters)) await m.begin();
    const p0 = proxies.pusher.stats.requests;
    const l0 = proxies.puller.stats.requests;
    const kinds = { primary: new Map<string, number>(), standby: new Map<string, number>() };
    const countKind = (m: Map<string, number>) => (a: ProxyAnswer): void => {
      // One kind per request of the same sort: containers, sequence numbers and digests folded.
      const k = `${a.method} ${a.path.replace(/\?.*$/, '').replace(new RegExp(`${group}-\\d+`, 'g'), 'C').replace(/[0-9a-f]{16,}/g, '*').replace(/\d+/g, 'N')}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    };
    const unhear = [proxies.pusher.onAnswer(countKind(kinds.primary)), proxies.puller.onAnswer(countKind(kinds.standby))];
    await sleep(idleSeconds * 1000);
    for (const u of unhear) u();
    const perMin = (x: number): number => Math.round((x / idleSeconds) * 60);
    const idle = {
      seconds: idleSeconds, pollIntervalMs: DEFAULT_POLL_MS,
      standbyRequestsPerMinute: perMin(proxies.puller.stats.requests - l0),
      primaryRequestsPerMinute: perMin(proxies.pusher.stats.requests - p0),
      pusher: await figures(idleMeters.pusher, idleSeconds), puller: await figures(idleMeters.puller, idleSeconds),
      requestKinds: { primary: Object.fromEntries(kinds.primary), standby: Object.fromEntries(kinds.standby) },
    };
    const firstGc = {
      collected: gcLine.includes('"bucket garbage collected"'), spanSeconds: Math.round(gcSpanSeconds * 10) / 10, spanCpuMs: Math.round(gcCpuSeconds * 1000),
      cpuMs: Math.max(0, Math.round(gcCpuSeconds * 1000 - idle.pusher.cpuPercent * 10 * gcSpanSeconds)),
    };
    log(`  ${n}: idle ${JSON.stringify(idle)}; inotify ${JSON.stringify(inotify)}`);

    // MASTER on the idle puller, the primaries stopped; then the floor.
    await pusher.kill('SIGTERM');
    await dockerCli(c.a, ['stop', '-t', '0', ...names], 600_000);
    const probe = { probeEveryMs: n === 1 ? 5 : 20, timeoutMs: 120_000, lenient: true };
    const m = await timeMaster(c, hookPort, puller, services, tokens, probe);
    await puller.kill('SIGTERM');
    await stopAll(c, names);
    const f = await timeFloor(c, services, tokens, probe);
    await stopAll(c, names);
    const master = {
      totalMs: m.answered === n ? Math.round(m.totalMs) : Number.NaN, answered: m.answered,
      hookOutcome: m.hookAnswer.outcome, hookTimedOut: m.hookAnswer.timedOut === true,
      hookStarted: m.hookAnswer.totals.started, hookFailed: m.hookAnswer.totals.failed, hookMs: m.hookAnswer.totals.ms,
      floorMs: f.answered === n ? Math.round(f.totalMs) : Number.NaN, floorAnswered: f.answered,
      ratio: ratio(m.totalMs, f.totalMs),
    };
    log(`  ${n}: MASTER ${JSON.stringify(master)}`);
    return { containers: n, stageAllMs, sync: summarize(syncSamples), syncSamples, underWrites, idle, firstGc, inotify, master };
  } catch (err) {
    for (const p of procs) log(`${p.lines.slice(-8).join('\n')}`);
    throw err;
  } finally {
    for (const s of shells.values()) s.close();
    for (const cl of clocks.values()) cl.close();
    await Promise.allSettled(procs.map((p) => p.kill('SIGTERM')));
    await removeContainers(c.a, names).catch(() => undefined);
    await removeContainers(c.b, names).catch(() => undefined);
    await proxies?.pusher.close();
    await proxies?.puller.close();
  }
}

function render(points: ScalePoint[], meta: { date: string; load: string }): string {
  const ref = points.find((p) => p.containers === 1)?.sync.median ?? Number.NaN;
  const f = (x: number): string => (Number.isFinite(x) ? String(x) : '–');
  const header = ['containers', 'all staged (s)', '4 KiB → twin, median (min–max) ms', '/ 1 container', 'standby idle requests/min', 'idle CPU % push / pull', 'bucket GC run: CPU ms', 'idle RSS MB push / pull',
    'CPU % under writes push / pull', 'MASTER → all answering (ms)', 'Docker API floor (ms)', 'ratio', 'twins answering', 'hook: outcome, started', 'inotify watches (instances)'];
  const rows = points.map((p) => [
    String(p.containers), f(Math.round(p.stageAllMs / 100) / 10), `${p.sync.median} (${p.sync.min}–${p.sync.max})`, f(ratio(p.sync.median, ref)),
    String(p.idle.standbyRequestsPerMinute), `${p.idle.pusher.cpuPercent} / ${p.idle.puller.cpuPercent}`, `${p.firstGc.cpuMs}${p.firstGc.collected ? '' : ' (failed)'}`, `${p.idle.pusher.rssMB} / ${p.idle.puller.rssMB}`,
    `${p.underWrites.pusher.cpuPercent} / ${p.underWrites.puller.cpuPercent}`, f(p.master.totalMs), f(p.master.floorMs), f(p.master.ratio),
    `${p.master.answered} / ${p.containers}`, `${p.master.hookOutcome}${p.master.hookTimedOut ? ' (answered at the boot timeout)' : ''}, ${p.master.hookStarted}`,
    `${p.inotify.watches} (${p.inotify.instances})`,
  ]);
  return [
    `# twinlayer with many containers per host (${meta.date})`,
    '',
    `\`npm run bench:scale -- --containers=${points.map((p) => p.containers).filter((x) => x !== 1).join(',')} --samples=${samples} --idle-seconds=${idleSeconds}${tag ? ` --tag=${tag}` : ''}\`${process.env['TWINLAYER_BENCH_BIN'] === undefined ? '' : ` (twinlayer: ${process.env['TWINLAYER_BENCH_BIN']})`}; load before the run: ${meta.load}.`,
    `Busybox httpd containers of a ${IMAGE_MB} MB image; sync samples with the puller polling every ${LATENCY_POLL_MS} ms, the idle window and MASTER at its default ${DEFAULT_POLL_MS} ms;`,
    'CPU as % of one core (utime + stime over the window), RSS = VmRSS at its end; the floor starts the same stopped containers through the Docker API',
    'at the puller\'s start concurrency (bench/recovery.ts); "twins answering": 200 with the latest content within 120 s.',
    'The idle window starts 2 s after the pusher\'s first bucket GC run (a minute after its start) ended: "bucket GC run" is the pusher\'s CPU from',
    'the idle puller\'s start to that run\'s log line, less the idle window\'s rate over that span.',
    '',
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  const log = (m: string): void => void process.stderr.write(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s] ${m}\n`);
  const { execFileSync } = await import('node:child_process');
  const load = execFileSync('uptime', { encoding: 'utf8' }).trim();
  await withCluster({ prefix: 'tl-scale-', log, engineLog: log }, async (cluster) => {
    await makeServiceImage(cluster, IMAGE_MB);
    const points: ScalePoint[] = [];
    for (const n of counts) {
      log(`${n} containers`);
      points.push(await runPoint(cluster, n, log));
      // s3rver leaks a descriptor per 304 (bench/lib/s3.ts): a fresh server for each point.
      await cluster.s3.restart();
    }
    const date = new Date().toISOString();
    const md = render(points, { date: date.slice(0, 16).replace('T', ' ') + ' UTC', load });
    const stem = join(resultsDir, `${date.slice(0, 10)}-scale${tag ? `-${tag}` : ''}`);
    await mkdir(resultsDir, { recursive: true });
    await writeFile(`${stem}.json`, `${JSON.stringify({ date, load, node: process.version, samples, idleSeconds, imageMB: IMAGE_MB, latencyPollMs: LATENCY_POLL_MS, defaultPollMs: DEFAULT_POLL_MS, points }, null, 1)}\n`);
    await writeFile(`${stem}.md`, md);
    process.stdout.write(`\n${md}\nwrote ${stem}.json and .md in ${Math.round((Date.now() - started) / 1000)} s\n`);
  });
}

await main();
