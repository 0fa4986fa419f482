// `npm run bench` (full, < 60 min on 2 cores) and `npm run bench -- --quick` (< 20 min): twinlayer's sync and
// recovery on the workloads of the published reference, with floors and the lsyncd peer measured in the same run,
// then months of operation compressed in time (months.ts: 5 min of writes, quick 3), then 200 containers on one host
// (scale.ts; quick: 50) and process start → hook answering (startup.ts), and last the targets of issue 13 from all of
// it, each beside its floor and the figure before (targets.ts).
// Writes bench/results/<date>.json and .md (quick: <date>-quick.*) with the targets appended, <date>-months.*,
// <date>-scale-bench.*, <date>-startup-bench.json and <date>[-quick]-targets.json; a full run also updates latest.md.
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { resultsDir, withCluster } from './lib/bench-cluster.js';
import { imageSize, makeServiceImage, type Cluster } from './lib/cluster.js';
import { profileBulk } from './profile.js';
import { runRecoveryPoint } from './recovery.js';
import { attemptPart } from './lib/attempt.js';
import { renderReport, renderStdout, type BenchResult } from './report.js';
import { changeKinds, runSyncWorkload } from './sync.js';
import { parseScaleRun, parseStartupRun, renderTargets, targetRows } from './targets.js';
import { monthsOptions, runAndWriteMonths } from './months.js';
import { trixieDockerDir } from '../src/lab/engine.js';

const execFileP = promisify(execFile);


interface Plan {
  mode: 'full' | 'quick';
  sizes: number[];
  samples: number;
  bulkSamples: Record<number, number>;
  lsyncdBulkSamples: number;
  profileSizes: number[];
  recoveryRuns: number;
  counts: number[];
  idleWindowMs: number;
  pollIntervalMs: number;
  headPollMs: number;
}

/** Runs with engines of their own, on dockerd 20.10 and overlay2 only. */
const OVERLAY2_ONLY = ['months', 'scale', 'startup'];

function planFor(argv: string[]): { plan: Plan; only: Set<string>; store: 'overlay2' | 'containerd' } {
  const quick = argv.includes('--quick');
  const onlyArg = argv.find((a) => a.startsWith('--only='));
  const storeArg = argv.find((a) => a.startsWith('--store='))?.slice('--store='.length) ?? 'overlay2';
  if (storeArg !== 'overlay2' && storeArg !== 'containerd') throw new Error(`--store=${storeArg}: expected overlay2 or containerd`);
  const only = new Set(onlyArg ? onlyArg.slice('--only='.length).split(',') : ['sync', 'recovery', ...(storeArg === 'overlay2' ? OVERLAY2_ONLY : [])]);
  for (const a of argv) if (a !== '--quick' && !a.startsWith('--only=') && !a.startsWith('--store=')) throw new Error(`unknown argument ${a}; expected --quick, --only=sync,recovery,months,scale,startup, --store=overlay2|containerd`);
  for (const o of only) if (!['sync', 'recovery', 'months', 'scale', 'startup'].includes(o)) throw new Error(`--only=${o}: expected sync, recovery, months, scale or startup`);
  for (const o of OVERLAY2_ONLY) if (only.has(o) && storeArg !== 'overlay2') throw new Error(`--only=${o} runs on overlay2 engines only`);
  const plan: Plan = quick
    ? { mode: 'quick', sizes: [46, 107, 206], samples: 5, bulkSamples: { 46: 2, 107: 2, 206: 1 }, lsyncdBulkSamples: 1, profileSizes: [46], recoveryRuns: 2, counts: [10], idleWindowMs: 10_000, pollIntervalMs: 20, headPollMs: 5 }
    : { mode: 'full', sizes: [46, 107, 206], samples: 30, bulkSamples: { 46: 30, 107: 15, 206: 10 }, lsyncdBulkSamples: 5, profileSizes: [46, 107, 206], recoveryRuns: 5, counts: [10, 20, 40], idleWindowMs: 30_000, pollIntervalMs: 20, headPollMs: 5 };
  return { plan, only, store: storeArg };
}

async function machine(store: 'overlay2' | 'containerd'): Promise<Record<string, string>> {
  const run = async (cmd: string, args: string[]): Promise<string> => (await execFileP(cmd, args).catch(() => ({ stdout: '?' }))).stdout.trim();
  return {
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    kernel: await run('uname', ['-r']),
    dockerd: await run(store === 'overlay2' ? 'dockerd' : join(trixieDockerDir(), 'root/usr/sbin/dockerd'), ['--version']),
    store,
    node: process.version,
    lsyncd: (await run('lsyncd', ['--version'])).split('\n')[0] ?? '?',
    rsync: (await run('rsync', ['--version'])).split('\n')[0] ?? '?',
  };
}

/** Between workloads (nothing talks to S3 then): see startS3Process on s3rver's descriptor leak. */
async function restartS3(c: Cluster, log: (line: string) => void): Promise<void> {
  const fds = await c.s3.openFds();
  await c.s3.restart();
  log(`S3 server restarted (it held ${fds} descriptors)`);
}

/** Runs another bench script (its own engines) to its end; resolves to the JSON result it wrote (`<date>-<name>-bench.json`:
 *  `args` give it the tag `bench`). */
async function runScript(script: string, args: string[], name: string): Promise<unknown> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(dirname(fileURLToPath(import.meta.url)), script), ...args], { stdio: 'inherit' });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}`);
  // Its date is that of its end: the newest file of this name written since it started.
  const files = (await readdir(resultsDir)).filter((f) => f.endsWith(`-${name}-bench.json`));
  const fresh = (await Promise.all(files.map(async (f) => ({ f, at: (await stat(join(resultsDir, f))).mtimeMs })))).filter((x) => x.at >= t0).sort((a, b) => b.at - a.at)[0];
  if (fresh === undefined) throw new Error(`${script} wrote no bench/results/<date>-${name}-bench.json`);
  return JSON.parse(await readFile(join(resultsDir, fresh.f), 'utf8'));
}

async function main(): Promise<void> {
  const { plan, only, store } = planFor(process.argv.slice(2));
  const months = only.delete('months');
  const scale = only.delete('scale');
  const startup = only.delete('startup');
  const bench = only.size > 0 ? await clusterBench(plan, only, store) : null;
  // After the engines of the cluster are gone: the lab and the other scripts start their own.
  let failed = bench === null ? false : bench.result.errors.length > 0;
  /** A part that fails is reported and the run goes on to the next: the targets table says what is missing. */
  const attempt = <T>(what: string, work: () => Promise<T>): Promise<T | null> => attemptPart(what, work, (part, message) => {
    failed = true;
    process.stdout.write(`FAILED ${part}: ${message}\n`);
  });
  if (months) await attempt('months', () => runAndWriteMonths({ ...monthsOptions([]), minutes: plan.mode === 'quick' ? 3 : 5 }));
  const scaleRun = scale
    ? await attempt('scale', async () => parseScaleRun(await runScript('scale.ts', plan.mode === 'quick' ? ['--containers=50', '--samples=5', '--idle-seconds=20', '--tag=bench'] : ['--containers=200', '--samples=10', '--idle-seconds=60', '--tag=bench'], 'scale')))
    : null;
  const startupRun = startup ? await attempt('startup', async () => parseStartupRun(await runScript('startup.ts', ['--runs', plan.mode === 'quick' ? '3' : '7', '--variants', 'bin', '--tag', 'bench'], 'startup'))) : null;
  if (bench !== null && (scale || startup)) {
    const rows = targetRows(bench.result, scaleRun, startupRun);
    const sources = `From this run: ${bench.stem}.json (${bench.parts.join(', ')})${scale ? `, ${bench.stem.slice(0, 10)}-scale-bench.json (\`bench/scale.ts\`)` : ''}${startup ? `, ${bench.stem.slice(0, 10)}-startup-bench.json (\`bench/startup.ts\`)` : ''}. "Before": the issue's figures, measured on 2026-11-27 (bench/results/2026-11-27.md) and by trying the CLI.`;
    const md = renderTargets(rows, sources);
    await writeFile(join(resultsDir, `${bench.stem}-targets.json`), JSON.stringify({ date: bench.result.date, rows }, null, 2) + '\n');
    await writeFile(join(resultsDir, `${bench.stem}.md`), `${bench.md}\n${md}`);
    if (bench.latest) await writeFile(join(resultsDir, 'latest.md'), `${bench.md}\n${md}`);
    process.stdout.write(`\n${md}\n`);
  }
  if (failed) process.exitCode = 1;
}

async function clusterBench(plan: Plan, only: Set<string>, store: 'overlay2' | 'containerd'): Promise<{ result: BenchResult; stem: string; md: string; latest: boolean; parts: string[] }> {
  const started = performance.now();
  const startedAt = new Date();
  const log = (line: string): void => {
    process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  };
  log(`twinlayer bench, ${plan.mode} mode, ${store === 'overlay2' ? 'dockerd 20.10 on overlay2' : 'dockerd 26 on the containerd image store'}`);
  return withCluster({ prefix: 'tlb-', log, kind: store }, async (cluster) => {
    log('engines A and B and the S3 server up');
    const sizesNeeded = [...new Set([...plan.sizes, 46])];
    const images: Record<number, number> = {};
    for (const mb of sizesNeeded) {
      await makeServiceImage(cluster, mb);
      images[mb] = await imageSize(cluster, mb);
      log(`image ${mb} MB ready (${(images[mb] / 1e6).toFixed(1)} MB)`);
    }
    const day = startedAt.toISOString().slice(0, 10);
    const stem = `${plan.mode === 'quick' ? `${day}-quick` : day}${store === 'containerd' ? '-containerd' : ''}`;
    const result: BenchResult = {
      date: startedAt.toISOString(),
      mode: plan.mode,
      durationSeconds: 0,
      machine: await machine(store),
      plan: { ...plan },
      images,
      sync: [],
      profile: [],
      recovery: [],
      errors: [],
    };
    // Written after every workload, so a failure late in the run keeps what was measured.
    const save = async (): Promise<void> => {
      result.durationSeconds = Math.round((performance.now() - started) / 1000);
      await writeFile(join(resultsDir, `${stem}.json`), JSON.stringify(result, null, 2) + '\n');
    };
    /** A failed workload is recorded and the run goes on: the report names it. */
    const attempt = async (what: string, work: () => Promise<void>): Promise<void> => {
      await attemptPart(what, work, (part, message) => {
        result.errors.push(`${part}: ${message}`);
        log(`FAILED ${part}: ${message}`);
      });
      await save();
    };
    if (only.has('sync')) {
      for (const mb of plan.sizes) {
        await attempt(`sync ${mb} MB`, async () => {
          await restartS3(cluster, log);
          const changes = changeKinds(mb, plan.samples, plan.bulkSamples[mb] ?? 3, plan.lsyncdBulkSamples);
          const points = await runSyncWorkload(cluster, mb, { pollIntervalMs: plan.pollIntervalMs, headPollMs: plan.headPollMs, changes, log });
          result.sync.push(...points);
          for (const p of points) log(`  ${mb} MB ${p.change}: bucket ${p.bucket.median} ms, twin ${p.twin.median} ms, floor ${p.floorPut.median} ms, lsyncd ${p.lsyncd.median} ms`);
        });
      }
      await attempt('bulk profile', async () => {
        await restartS3(cluster, log);
        for (const mb of plan.profileSizes) {
          result.profile.push(await profileBulk(cluster.s3.endpoint, cluster.base, mb * 1_000_000));
          log(`  profile of a ${mb} MB change: ${JSON.stringify(result.profile.at(-1))}`);
        }
      });
    }
    if (only.has('recovery')) {
      const points: Array<[number, number]> = [...plan.sizes.map((mb): [number, number] => [mb, 1]), ...plan.counts.map((n): [number, number] => [46, n])];
      const largest = Math.max(...plan.counts);
      for (const [mb, n] of points) {
        await attempt(`recovery ${n} x ${mb} MB`, async () => {
          await restartS3(cluster, log);
          result.recovery.push(await runRecoveryPoint(cluster, mb, n, {
            runs: plan.recoveryRuns,
            pollIntervalMs: plan.pollIntervalMs,
            ...(n === largest ? { idleWindowMs: plan.idleWindowMs } : {}),
            log,
          }));
        });
      }
    }
    await save();
    const md = renderReport(result);
    await writeFile(join(resultsDir, `${stem}.md`), md);
    const latest = plan.mode === 'full' && store === 'overlay2' && only.has('sync') && only.has('recovery') && result.errors.length === 0;
    if (latest) await writeFile(join(resultsDir, 'latest.md'), md);
    process.stdout.write('\n' + renderStdout(result) + '\n');
    log(`wrote bench/results/${stem}.json and .md in ${result.durationSeconds} s${result.errors.length > 0 ? `; ${result.errors.length} workload(s) FAILED` : ''}`);
    return { result, stem, md, latest, parts: [...only] };
  });
}

await main();
