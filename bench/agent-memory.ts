// `npm run bench:agent-memory [-- --minutes=N --containers=N --writes=N --failover=S --malloc=NAME=N --snapshots
// --label=L]`: does an agent's memory stay flat under the chaos soak's writes? The two-host lab (src/lab) with
// `twinlayer agent` on both hosts and keepalived; N protected busybox containers on the primary written like the soak
// writes them (bench/chaos: one operation and a new marker file per write, one write per container at a time,
// `--writes` per second in all), for `--minutes`; no fault but the failover `--failover` asks for. Every 20 s each
// agent's RSS, V8 heap (heapUsed + external, from its status, as the soak judges it; and V8's total) and inotify
// watches are sampled. With `--snapshots`, each agent writes a V8 heap snapshot a minute in (a minute after the
// failover) and at the end (SIGUSR2, into a directory under the system's tmp, named on stderr):
// `node --max-old-space-size=8000 --import tsx bench/heap-compare.ts OLD NEW` says what grew between them.
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { AgentLab } from '../src/lab/agent-lab.js';
import { importBusyboxImage, copyImage } from '../src/lab/busybox-image.js';
import { dockerCli } from '../src/lab/engine.js';
import { waitFor } from '../src/lab/wait.js';
import { sampleProcess } from './chaos/leak.js';
import { inotifyWatches } from './lib/proc-meter.js';
import { markerScript } from './chaos/markers.js';
import { Prng } from './chaos/prng.js';
import { dockerExec } from './chaos/tools.js';
import { drawOp } from './chaos/workload.js';

const arg = (name: string, dflt: number, max: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const n = a === undefined ? dflt : Number(a.slice(name.length + 3));
  if (!Number.isInteger(n) || n < 1 || n > max) throw new RangeError(`--${name}: an integer 1..${max}, got ${a}`);
  return n;
};
const minutes = arg('minutes', 5, 60);
const containers = arg('containers', 16, 100);
const writesPerSecond = arg('writes', 8, 50);
const snapshots = process.argv.includes('--snapshots');
/** `--failover=S`: keepalived is stopped on the primary S seconds in, and the writes go on in the promoted twins (the
 *  chaos soak's primaries are mostly promoted standbys); the first heap snapshot is then a minute after it. */
/** `--malloc=NAME=N,…`: glibc malloc tunables for the agents (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_
 *  …): what glibc keeps of freed memory shows in RSS, not in the heap. */
const mallocEnv: Record<string, string> = Object.fromEntries<string>((process.argv.find((x) => x.startsWith('--malloc='))?.slice('--malloc='.length).split(',') ?? []).map((kv) => {
  const m = /^(MALLOC_[A-Z_]+)=(\d+)$/.exec(kv);
  if (m === null) throw new RangeError(`--malloc: NAME=N pairs with MALLOC_* names, got ${kv}`);
  return [m[1] ?? '', m[2] ?? ''] as const;
}));
const failoverAtS = process.argv.some((x) => x.startsWith('--failover=')) ? arg('failover', 60, 3600) : 0;
/** Names the results file (`--label=before`): runs of one day kept apart. */
const label = process.argv.find((x) => x.startsWith('--label='))?.slice('--label='.length).replace(/[^\w-]/g, '') ?? '';
const SEED = 3430849210;
const IMAGE = 'tl-agentmem:lab';
const SAMPLE_MS = 20_000;

interface Row {
  t: number;
  writes: number;
  rssMb: Record<string, number>;
  /** V8's heap in use plus external memory (Buffers): what the soak judges. */
  heapMb: Record<string, number | null>;
  /** What V8 holds from the system for its heap, in use or not. */
  heapTotalMb: Record<string, number | null>;
  /** inotify watches the process holds (one per watched directory, and per file where files are watched). */
  watches: Record<string, number>;
  role: Record<string, string>;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const log = (m: string): void => { process.stderr.write(`[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${m}\n`); };
  const snapDir = join(tmpdir(), `agent-memory-heap-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  if (snapshots) await mkdir(snapDir, { recursive: true });
  const l = await AgentLab.create({
    waitMs: 120_000,
    // VRRP adverts every second, not every 0.1 s: run niced beside other work, keepalived on the primary can be late
    // by a few tenths of a second and hand over, and a role switch is not what this measures.
    advertIntSec: 1,
    agentEnv: {
      ...(snapshots ? { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapDir}` } : {}),
      ...mallocEnv,
    },
  });
  const rows: Row[] = [];
  const names = Array.from({ length: containers }, (_, i) => `m${i}`);
  try {
    const [a, b] = l.hosts;
    await importBusyboxImage(l.engine(a).socketPath, IMAGE);
    await copyImage(l.engine(a).socketPath, l.engine(b).socketPath, IMAGE);
    for (const n of names) {
      await dockerCli(l.engine(a), ['run', '-d', '--name', n, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE,
        'sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"]);
    }
    await l.startAgent(a);
    await l.startAgent(b);
    await l.startKeepalived();
    await waitFor('b converged as the standby', 180_000, () => l.converged(b), 500);
    let docker = new Docker({ socketPath: l.engine(a).socketPath });
    const prng = new Prng(SEED);
    let writes = 0;
    let failed = 0;
    const busy = new Set<string>();
    const inflight = new Set<Promise<void>>();
    const sample = async (): Promise<Row> => {
      const rssMb: Record<string, number> = {};
      const heapMb: Record<string, number | null> = {};
      const heapTotalMb: Record<string, number | null> = {};
      const watches: Record<string, number> = {};
      const role: Record<string, string> = {};
      for (const h of l.hosts) {
        const pid = l.agent(h)?.proc.pid;
        const s = pid === undefined ? null : await sampleProcess(pid, 0);
        rssMb[h] = s?.rssMb ?? NaN;
        watches[h] = pid === undefined ? NaN : await inotifyWatches(pid);
        const st = await l.status(h);
        role[h] = st?.role ?? '?';
        const m = st?.memory;
        heapMb[h] = m === undefined ? null : Math.round((m.heapUsedMb + m.externalMb) * 10) / 10;
        heapTotalMb[h] = m?.heapTotalMb ?? null;
      }
      return { t: Math.round((Date.now() - start) / 1000), writes, rssMb, heapMb, heapTotalMb, watches, role };
    };
    const snapshot = async (when: string): Promise<void> => {
      if (!snapshots) return;
      for (const h of l.hosts) {
        const pid = l.agent(h)?.proc.pid;
        if (pid !== undefined) process.kill(pid, 'SIGUSR2');
      }
      // The agent is busy for seconds while it writes one; let both finish before the next sample.
      await sleep(20_000);
      log(`heap snapshots ${when} asked for in ${snapDir}`);
    };
    const start = Date.now();
    rows.push(await sample());
    let nextSample = start + SAMPLE_MS;
    let snapped = false;
    let snapAt = start + 60_000;
    let failedOver = failoverAtS === 0;
    const end = start + minutes * 60_000;
    while (Date.now() < end) {
      if (!failedOver && Date.now() - start >= failoverAtS * 1000) {
        // keepalived stopped on a: b is promoted and boots the twins, the writes go on there (a demotes itself).
        failedOver = true;
        await Promise.all([...inflight]);
        const g = (await l.status(b))?.generation ?? 0;
        await l.lab.stopKeepalivedOn(a);
        await waitFor('b promoted', 120_000, async () => {
          const st = await l.status(b);
          return st?.role === 'primary' && st.generation !== null && st.generation > g ? st : undefined;
        }, 200);
        docker = new Docker({ socketPath: l.engine(b).socketPath });
        log(`failover: b promoted after ${writes} writes`);
        if (!snapped) snapAt = Date.now() + 60_000;
      }
      const name = prng.pick(names);
      if (!busy.has(name)) {
        busy.add(name);
        const { script } = drawOp(prng, markerScript(++writes));
        const p = dockerExec(docker, name, script).then((code) => { if (code !== 0) failed++; }, () => { failed++; })
          .finally(() => { busy.delete(name); inflight.delete(p); });
        inflight.add(p);
      }
      if (Date.now() >= nextSample) {
        nextSample += SAMPLE_MS;
        rows.push(await sample());
        log(JSON.stringify(rows.at(-1)));
        if (!snapped && failedOver && Date.now() >= snapAt) {
          snapped = true;
          await snapshot(`at ${Math.round((Date.now() - start) / 1000)} s`);
        }
      }
      await sleep(prng.range(0.5, 1.5) * (1000 / writesPerSecond));
    }
    await Promise.all([...inflight]);
    await sleep(10_000);
    rows.push(await sample());
    log(`${writes} writes (${failed} failed); last ${JSON.stringify(rows.at(-1))}`);
    await snapshot('at the end');
  } finally {
    await l.destroy();
  }
  const hosts = Object.keys(rows[0]?.rssMb ?? {});
  const lines = [
    `| t (s) | writes | ${hosts.map((h) => `RSS ${h} (MB) | heap ${h} (MB) | V8 total ${h} (MB) | inotify ${h}`).join(' | ')} |`,
    `|---|---|${hosts.map(() => '---|---|---|---').join('|')}|`,
    ...rows.map((r) => `| ${r.t} | ${r.writes} | ${hosts.map((h) => `${r.rssMb[h]} | ${r.heapMb[h] ?? '?'} | ${r.heapTotalMb[h] ?? '?'} | ${r.watches[h]}`).join(' | ')} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const switched = rows.filter((r) => JSON.stringify(r.role) !== JSON.stringify(rows[0]?.role));
  if (switched.length > 0 && failoverAtS === 0) process.stdout.write(`the roles changed during the run (first at ${switched[0]?.t} s): the rows after it measure other roles\n`);
  const dir = join(import.meta.dirname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().slice(0, 10)}-agent-memory${label === '' ? '' : `-${label}`}.json`);
  await writeFile(file, JSON.stringify({ label, minutes, failoverAtS, mallocEnv, containers, writesPerSecond, seed: SEED, node: process.version, rows }, null, 2));
  process.stderr.write(`wrote ${file}\n`);
}

await main();
