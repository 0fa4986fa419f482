// `npm run bench:months [-- --minutes=5 --containers=40 --writes=4 --retention=60 --kib=16 --sample=15 --idle=60 --label=L]` (also part of
// `npm run bench`): months of operation compressed in time (issue 12). Does the bucket stay flat once retention
// applies, how many requests of each kind do a primary and a standby make, and what does a month of that cost at
// AWS S3 list prices?
//
// The two-host lab (src/lab): `twinlayer agent` on both hosts with keepalived, a Docker engine each, the embedded S3
// server behind one fault proxy per host (which sees every request and counts it). N protected busybox containers on
// the primary, written through the engine's exec API at `--writes` per second in all: each write replaces one of 8
// files of `--kib` KiB of random bytes in its container (a working set that stays the same size, as a database's or a
// spool's does). Time is compressed by k = 24 h / retention: retention `--retention` s (default 60 s, the config's
// floor: k = 1440, a bench minute is a day), and the primary's other periods scaled alike (gcIntervalMs 1 h / k,
// checkpointMaxAgeMs 6 h / k; gcGraceMs stays at its floor of 60 s). Polls, the fence and reconciles keep their
// defaults: they run on their own clocks whatever the workload.
//
// Every `--sample` s: the bucket's objects and bytes by kind (walked on the S3 server's disk, so the bench itself makes
// no request), the requests each host made since the last sample by kind and object, the standby's containers behind.
// Then, the standby caught up, `--idle` s without writes: what each host asks on its own clocks (the standby's head
// polls, generation probes and spec listings: isStandbyClock; the primary's fence). Per real hour, by kind: those idle
// rates as measured (a real deployment is idle between its rare writes), plus the workload's requests over the steady window
// (from retention + grace + 30 s on) divided by k, since in the bench commits, checkpoints and GC runs come k times as
// often as in the day they stand for: the standby's above its idle rate of the same request (busy, its polls are
// slower, and every head move lists the specs), the primary's all but its fence (bench/lib/s3-cost.ts isFenceProbe),
// which runs on its clock busy or not. The report says how many writes a container makes per real hour at that rate,
// and the requests per commit and per GC run, to scale to another write rate.
// Prints a table and writes bench/results/<date>-months[-label].json and .md; `--render=FILE.json` renders a saved run.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import PQueue from 'p-queue';
import { AGENT_LAB_BUCKET, AgentLab } from '../src/lab/agent-lab.js';
import { copyImage, importBusyboxImage } from '../src/lab/busybox-image.js';
import { dockerCli } from '../src/lab/engine.js';
import { waitFor } from '../src/lab/wait.js';
import { dockerExec } from './chaos/tools.js';
import { classifyRequest, isFenceProbe, isStandbyClock, monthlyRequestCost, monthlyStorageCost, objectClassOf, requestKinds, S3_PRICES, type RequestKind } from './lib/s3-cost.js';

const DAY_MS = 86_400_000;
const IMAGE = 'tl-months:lab';
const SLOTS = 8;
const resultsDir = join(import.meta.dirname, 'results');

export interface MonthsOptions {
  minutes: number;
  containers: number;
  /** Writes per second, over all containers. */
  writes: number;
  retentionS: number;
  sampleS: number;
  /** Seconds without writes at the end, for the requests on clocks. */
  idleS: number;
  kib: number;
  label: string;
  log?: (line: string) => void;
}

type Role = 'primary' | 'standby';

interface Sample {
  /** Seconds since the writes began. */
  t: number;
  writes: number;
  failedWrites: number;
  objects: number;
  bytes: number;
  /** Objects and bytes by object class (blob, record, head, spec, …). */
  byObject: Record<string, { objects: number; bytes: number }>;
  /** Requests since the previous sample: "role kind object status" → count. */
  requests: Record<string, number>;
  /** Containers whose twin on the standby has not staged the commit the head names yet; null without an answer. */
  standbyBehind: number | null;
  gcRuns: number;
}

export interface MonthsResult {
  at: string;
  label: string;
  options: Omit<MonthsOptions, 'log'>;
  compression: number;
  agentEnv: Record<string, string>;
  node: string;
  prices: typeof S3_PRICES;
  samples: Sample[];
  /** Requests of the set-up (agents started to the standby converged), not in any sample. */
  setupRequests: Record<string, number>;
  /** The idle window at the end: its length and requests ("role kind object status" → count). */
  idle: { seconds: number; requests: Record<string, number> };
  gc: { runs: number; deleted: Record<string, number> };
  rolesAtEnd: Record<string, string>;
  errors: string[];
  durationS: number;
}

/** The bucket on the S3 server's disk (s3rver: `<dir>/<bucket>/<key>._S3rver_object`). */
async function bucketOnDisk(dir: string): Promise<{ objects: number; bytes: number; byObject: Record<string, { objects: number; bytes: number }> }> {
  const suffix = '._S3rver_object';
  const out = { objects: 0, bytes: 0, byObject: {} as Record<string, { objects: number; bytes: number }> };
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 20) throw new Error(`bucket walk: deeper than 20 under ${dir}`);
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith(suffix)) {
        const size = (await stat(p).catch(() => null))?.size;
        if (size === undefined) continue;
        const cls = objectClassOf(relative(dir, p).slice(0, -suffix.length));
        const b = (out.byObject[cls] ??= { objects: 0, bytes: 0 });
        b.objects++;
        b.bytes += size;
        out.objects++;
        out.bytes += size;
      }
    }
  };
  await walk(dir, 0);
  return out;
}

function parseKey(key: string): { role: Role; kind: RequestKind; object: string; status: number } {
  const [role = '', kind = '', object = '', status = '0'] = key.split(' ');
  return { role: role as Role, kind: kind as RequestKind, object, status: Number(status) };
}

export async function runMonths(o: MonthsOptions): Promise<MonthsResult> {
  const t0 = Date.now();
  const log = o.log ?? ((m: string): void => { process.stderr.write(`[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${m}\n`); });
  const retentionMs = o.retentionS * 1000;
  const k = DAY_MS / retentionMs;
  const scaled = (realMs: number, floor: number): number => Math.max(floor, Math.round(realMs / k));
  const agentEnv: Record<string, string> = {
    TWINLAYER_RETENTION_MS: String(retentionMs),
    TWINLAYER_GC_INTERVAL_MS: String(scaled(3_600_000, 1000)),
    TWINLAYER_GC_GRACE_MS: String(scaled(3_600_000, 60_000)),
    TWINLAYER_CHECKPOINT_MAX_AGE_MS: String(scaled(6 * 3_600_000, 1000)),
    // The defaults (the lab's are a test's): these run on their own clocks, and the report counts them as they are.
    TWINLAYER_POLL_INTERVAL_MS: '250', TWINLAYER_FENCE_INTERVAL_MS: '500', TWINLAYER_RECONCILE_INTERVAL_MS: '60000', TWINLAYER_BACKUP_SETTLE_MS: '1000',
    TWINLAYER_LOG_LEVEL: 'info',
  };
  const gc = { runs: 0, deleted: {} as Record<string, number> };
  const errors: string[] = [];
  const l = await AgentLab.create({
    waitMs: 180_000,
    // VRRP adverts every second: run niced beside other work, a late advert must not hand over (not measured here).
    advertIntSec: 1,
    faultProxies: true,
    busyboxWeb: false,
    engineStartTimeoutMs: 120_000,
    agentEnv,
    onAgentLine: (_host, line) => {
      if (line.msg !== 'bucket garbage collected') return;
      gc.runs++;
      const deleted = line['deleted'];
      if (typeof deleted !== 'object' || deleted === null) return;
      for (const [kind, v] of Object.entries(deleted as Record<string, unknown>)) {
        const n = typeof v === 'number' ? v : typeof v === 'object' && v !== null && typeof (v as { objects?: unknown }).objects === 'number' ? (v as { objects: number }).objects : null;
        if (n !== null) gc.deleted[kind] = (gc.deleted[kind] ?? 0) + n;
      }
    },
  });
  // Ctrl-C ends the writes at once and still takes the lab down (engines, namespaces, keepalived, agents).
  let interrupted: string | null = null;
  const onSignal = (signal: string): void => {
    interrupted = signal;
    log(`${signal}: stopping, then cleaning up`);
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const [a, b] = l.hosts;
  const role: Record<string, Role> = { [a]: 'primary', [b]: 'standby' };
  let window = new Map<string, number>();
  for (const h of l.hosts) {
    l.faultProxy(h).onAnswer((ans) => {
      const r = classifyRequest(ans.method, ans.path);
      const key = `${role[h]} ${r.kind} ${r.object} ${ans.status}`;
      window.set(key, (window.get(key) ?? 0) + 1);
    });
  }
  const take = (): Record<string, number> => {
    const out = Object.fromEntries(window);
    window = new Map();
    return out;
  };
  const s3Dir = join(l.lab.dir, 's3', AGENT_LAB_BUCKET);
  const samples: Sample[] = [];
  let setupRequests: Record<string, number> | undefined;
  let idle: MonthsResult['idle'] | undefined;
  const rolesAtEnd: Record<string, string> = {};
  const names = Array.from({ length: o.containers }, (_, i) => `m${String(i).padStart(2, '0')}`);
  try {
    await importBusyboxImage(l.engine(a).socketPath, IMAGE);
    await copyImage(l.engine(a).socketPath, l.engine(b).socketPath, IMAGE);
    const q = new PQueue({ concurrency: 4 });
    await Promise.all(names.map((n) => q.add(() => dockerCli(l.engine(a), ['run', '-d', '--name', n, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE,
      'sh', '-c', "mkdir -p /data; trap 'exit 0' TERM; while true; do sleep 1; done"]))));
    await l.startAgent(a);
    await l.startAgent(b);
    await l.startKeepalived();
    await waitFor('b converged as the standby', 300_000, () => l.converged(b), 1000);
    log(`${o.containers} containers protected, the standby converged; writing for ${o.minutes} min at ${o.writes}/s (compression ${k}: a bench minute is ${(k / 60).toFixed(1)} h)`);
    setupRequests = take();
    const docker = new Docker({ socketPath: l.engine(a).socketPath });
    let writes = 0;
    let failedWrites = 0;
    let next = 0;
    const busy = new Set<string>();
    const inflight = new Set<Promise<void>>();
    const start = Date.now();
    const sample = async (): Promise<Sample> => {
      const disk = await bucketOnDisk(s3Dir);
      const st = await l.status(b);
      const head = await l.head().catch(() => null);
      const behind = st === null || head === null ? null
        : Object.entries(head.containers).filter(([n, seq]) => (st.containers.find((c) => c.name === n)?.stagedSeq ?? 0) < seq).length;
      return { t: Math.round((Date.now() - start) / 1000), writes, failedWrites, ...disk, requests: take(), standbyBehind: behind, gcRuns: gc.runs };
    };
    samples.push(await sample());
    let nextSample = start + o.sampleS * 1000;
    const end = start + o.minutes * 60_000;
    // Bounded: the loop ends at `end`; each write is bounded by dockerExec's timeout.
    while (Date.now() < end && interrupted === null) {
      // Round robin: a container's n-th write replaces its file n mod SLOTS.
      const name = names[next % names.length]!;
      const slot = Math.floor(next / names.length) % SLOTS;
      next++;
      if (!busy.has(name)) {
        busy.add(name);
        writes++;
        const script = `head -c ${o.kib * 1024} /dev/urandom > /data/.f${slot} && mv /data/.f${slot} /data/f${slot}`;
        const p = dockerExec(docker, name, script).then((code) => { if (code !== 0) failedWrites++; }, () => { failedWrites++; })
          .finally(() => { busy.delete(name); inflight.delete(p); });
        inflight.add(p);
      }
      if (Date.now() >= nextSample) {
        nextSample += o.sampleS * 1000;
        const s = await sample();
        samples.push(s);
        log(`t=${s.t}s writes ${s.writes} objects ${s.objects} bytes ${(s.bytes / 1e6).toFixed(2)} MB, standby behind on ${s.standbyBehind ?? '?'} containers, GC runs ${s.gcRuns}`);
      }
      await sleep(1000 / o.writes);
    }
    await Promise.all([...inflight]);
    if (interrupted !== null) throw new Error(`interrupted by ${String(interrupted)}`);
    samples.push(await sample());
    // The standby catches up to the head (bounded); its catch-up requests are not in the steady window.
    await waitFor('the standby caught up after the writes', 180_000, () => l.converged(b), 1000).catch((err: unknown) => errors.push(`standby: ${(err as Error).message}`));
    take();
    const idleFrom = Date.now();
    await sleep(o.idleS * 1000);
    idle = { seconds: (Date.now() - idleFrom) / 1000, requests: take() };
    log(`idle ${o.idleS} s: ${Object.values(idle.requests).reduce((x, y) => x + y, 0)} requests`);
    for (const h of l.hosts) rolesAtEnd[h] = (await l.status(h))?.role ?? '?';
    if (rolesAtEnd[a] !== 'primary' || rolesAtEnd[b] !== 'standby') errors.push(`the roles changed during the run: ${JSON.stringify(rolesAtEnd)}`);
    if (failedWrites > 0) errors.push(`${failedWrites} of ${writes} writes failed`);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await l.destroy();
  }
  return {
    at: new Date(t0).toISOString(), label: o.label, options: { minutes: o.minutes, containers: o.containers, writes: o.writes, retentionS: o.retentionS, sampleS: o.sampleS, idleS: o.idleS, kib: o.kib, label: o.label },
    compression: k, agentEnv, node: process.version, prices: S3_PRICES, samples, setupRequests: setupRequests ?? {}, idle: idle ?? { seconds: 0, requests: {} }, gc, rolesAtEnd, errors, durationS: Math.round((Date.now() - t0) / 1000),
  };
}

export interface MonthsSummary {
  /** The steady window: from `fromS` to `toS` (seconds since the writes began). */
  fromS: number;
  toS: number;
  objects: { min: number; max: number; mean: number };
  bytes: { min: number; max: number; mean: number };
  commits: number;
  gcRuns: number;
  /** Per host, by kind: per hour in the steady window of the bench; per real hour on its clocks (the idle window),
   *  of the workload (÷ k), and both. */
  perHour: Record<Role, { bench: Record<string, number>; clockReal: Record<string, number>; workloadReal: Record<string, number>; real: Record<string, number> }>;
  /** The primary's publishing PUTs and the standby's workload requests per commit; the primary's other (GC) requests
   *  per GC run. */
  perCommit: Record<Role, Record<string, number>>;
  perGcRun: Record<string, number>;
  monthly: { storage: number; primary: number; standby: number; total: number };
  /** One container's writes per real hour at this rate. */
  writesPerContainerPerRealHour: number;
}

const add = (m: Record<string, number>, k: string, v: number): void => {
  m[k] = (m[k] ?? 0) + v;
};

export function summarize(r: MonthsResult): MonthsSummary {
  const k = r.compression;
  const fromS = r.options.retentionS + Number(r.agentEnv['TWINLAYER_GC_GRACE_MS'] ?? 60_000) / 1000 + 30;
  const steady = r.samples.filter((s) => s.t > fromS && s.t <= r.options.minutes * 60 + r.options.sampleS);
  // The requests of a sample were made since the one before: a window starts at the sample before the first.
  const first = r.samples[r.samples.indexOf(steady[0]!) - 1];
  const last = steady.at(-1);
  if (steady.length < 2 || first === undefined || last === undefined) throw new Error(`no steady window: ${r.samples.length} samples, steady from ${fromS} s; run longer (--minutes)`);
  if (!(r.idle.seconds > 0)) throw new Error('no idle window: the requests on clocks are taken there (--idle)');
  const seconds = last.t - first.t;
  const stats = (xs: number[]): { min: number; max: number; mean: number } => ({ min: Math.min(...xs), max: Math.max(...xs), mean: Math.round(xs.reduce((s, x) => s + x, 0) / xs.length) });
  const busy = new Map<string, number>();
  for (const s of steady) for (const [key, n] of Object.entries(s.requests)) busy.set(key, (busy.get(key) ?? 0) + n);
  // The standby's workload is what it asks above its idle rate of the same request, whatever the answer (a poll is
  // answered 304 idle, 200 when the head moved).
  const byRequest = (m: Iterable<[string, number]>): Map<string, number> => {
    const out = new Map<string, number>();
    for (const [key, n] of m) {
      const q = parseKey(key);
      const req = `${q.role} ${q.kind} ${q.object}`;
      out.set(req, (out.get(req) ?? 0) + n);
    }
    return out;
  };
  // Its baseline: only what it asks on its clocks when idle (the checkpoints an idle primary still publishes are workload).
  const idleByRequest = byRequest(Object.entries(r.idle.requests).filter(([key]) => {
    const q = parseKey(key);
    return isStandbyClock({ kind: q.kind, object: q.object as never });
  }));
  const idleRate = (key: string): number => ((r.idle.requests[key] ?? 0) / r.idle.seconds) * 3600;
  let commits = 0;
  for (const [key, n] of busy) {
    const q = parseKey(key);
    if (q.role === 'primary' && q.kind === 'PUT' && q.object === 'record' && q.status === 200) commits += n;
  }
  const gcRuns = last.gcRuns - first.gcRuns;
  const perHour = {} as MonthsSummary['perHour'];
  const perCommit: MonthsSummary['perCommit'] = { primary: {}, standby: {} };
  const perGcRun: Record<string, number> = {};
  for (const role of ['primary', 'standby'] as const) {
    const bench: Record<string, number> = {};
    const clockReal: Record<string, number> = {};
    const workloadReal: Record<string, number> = {};
    for (const key of Object.keys(r.idle.requests)) {
      const q = parseKey(key);
      if (q.role !== role) continue;
      const r0 = { kind: q.kind, object: q.object as never };
      if (role === 'standby' ? isStandbyClock(r0) : isFenceProbe(r0, q.status)) add(clockReal, q.kind, idleRate(key));
    }
    for (const [key, n] of busy) {
      const q = parseKey(key);
      if (q.role !== role) continue;
      const h = (n / seconds) * 3600;
      add(bench, q.kind, h);
      if (role === 'primary') {
        if (isFenceProbe({ kind: q.kind, object: q.object as never }, q.status)) continue;
        add(workloadReal, q.kind, h / k);
        if (q.kind === 'PUT') add(perCommit.primary, q.kind, n / Math.max(1, commits));
        else add(perGcRun, q.kind, n / Math.max(1, gcRuns));
      }
    }
    if (role === 'standby') {
      for (const [req, n] of byRequest(busy)) {
        const [, kind = ''] = req.split(' ');
        if (!req.startsWith('standby ')) continue;
        const excess = Math.max(0, (n / seconds) * 3600 - ((idleByRequest.get(req) ?? 0) / r.idle.seconds) * 3600);
        add(workloadReal, kind, excess / k);
        add(perCommit.standby, kind, ((excess / 3600) * seconds) / Math.max(1, commits));
      }
    }
    const real: Record<string, number> = {};
    for (const kind of requestKinds) {
      const v = (clockReal[kind] ?? 0) + (workloadReal[kind] ?? 0);
      if (v > 0) real[kind] = v;
    }
    perHour[role] = { bench, clockReal, workloadReal, real };
  }
  const bytes = stats(steady.map((s) => s.bytes));
  const storage = monthlyStorageCost(bytes.mean);
  const primary = monthlyRequestCost(perHour.primary.real);
  const standby = monthlyRequestCost(perHour.standby.real);
  const writes = last.writes - first.writes;
  return {
    fromS: first.t, toS: last.t, objects: stats(steady.map((s) => s.objects)), bytes, commits, gcRuns,
    perHour, perCommit, perGcRun, monthly: { storage, primary, standby, total: storage + primary + standby },
    writesPerContainerPerRealHour: (writes / r.options.containers) / (seconds * k) * 3600,
  };
}

const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const usd = (n: number): string => `$${n < 0.01 && n > 0 ? n.toFixed(4) : n.toFixed(2)}`;

export function renderMonths(r: MonthsResult): string {
  const s = summarize(r);
  const k = r.compression;
  const o = r.options;
  const lines: string[] = [];
  lines.push(`# Months of operation, compressed (issue 12), ${r.at.slice(0, 10)}${r.label === '' ? '' : ` (${r.label})`}`, '');
  lines.push(`${o.containers} protected busybox containers on the primary of the two-host lab (\`twinlayer agent\` and keepalived on both, a`,
    `Docker engine each, the embedded S3 server behind a counting proxy per host), ${o.writes} writes/s in all for ${o.minutes} min, each`,
    `replacing one of ${SLOTS} files of ${o.kib} KiB of random bytes in its container. Retention ${o.retentionS} s against the default 24 h: time`,
    `compressed ${fmt(k)}×, one bench minute stands for ${fmt(k / 60, 1)} h. Agent settings: ${Object.entries(r.agentEnv).filter(([key]) => !key.endsWith('LOG_LEVEL')).map(([key, v]) => `${key.replace('TWINLAYER_', '')}=${v}`).join(', ')}`,
    `(gcIntervalMs and checkpointMaxAgeMs are the defaults ÷ ${fmt(k)}; gcGraceMs stays at its floor of 60 s, ${fmt(60_000 * k / 3_600_000, 0)} h of real time;`,
    `polls, the fence and reconciles run at their defaults). Node ${r.node}, ${r.durationS} s in all.`, '');
  if (r.errors.length > 0) lines.push(`**Errors:** ${r.errors.join('; ')}`, '');
  lines.push('## The bucket over time', '', '| t (s) | ≈ real time | writes | objects | MB | blobs | records | standby behind (containers) | GC runs |', '|---|---|---|---|---|---|---|---|---|');
  for (const x of r.samples) {
    lines.push(`| ${x.t} | ${fmt(x.t * k / 86_400, 1)} d | ${x.writes} | ${x.objects} | ${fmt(x.bytes / 1e6, 2)} | ${x.byObject['blob']?.objects ?? 0} | ${x.byObject['record']?.objects ?? 0} | ${x.standbyBehind ?? '?'} | ${x.gcRuns} |`);
  }
  lines.push('', `Steady window (from retention + grace + 30 s): t = ${s.fromS}-${s.toS} s (${fmt((s.toS - s.fromS) * k / 86_400, 1)} days of real time): ${fmt(s.objects.min)}-${fmt(s.objects.max)} objects`,
    `(mean ${fmt(s.objects.mean)}), ${fmt(s.bytes.min / 1e6, 2)}-${fmt(s.bytes.max / 1e6, 2)} MB (mean ${fmt(s.bytes.mean / 1e6, 2)} MB); ${s.commits} commits published, ${r.gc.runs} GC runs in the whole run`,
    `(deleted: ${Object.entries(r.gc.deleted).map(([kk, v]) => `${kk} ${v}`).join(', ') || 'nothing'}).`, '');
  lines.push('## Requests per hour', '',
    `Per real hour: what each host asks on its own clocks, measured in ${fmt(r.idle.seconds)} s without writes at the end (the standby: its head`,
    `polls, generation probes and spec listings; the primary: its fence probes, and GC's probe of the next generation at each`,
    `of its runs, up to ${fmt(60_000 / Number(r.agentEnv['TWINLAYER_GC_INTERVAL_MS'] ?? 3_600_000), 0)} a minute here, which look alike: an overestimate), plus the workload's requests of the steady`,
    `window ÷ ${fmt(k)} (commits, checkpoints, GC, staging: the bench makes them ${fmt(k)} times as often as the day it stands for; the`,
    `standby's counted above its idle rate of the same request). At this rate each container writes ${fmt(s.writesPerContainerPerRealHour, 2)} times per real hour.`, '',
    `| host | ${requestKinds.join(' | ')} | $/month |`, `|---|${requestKinds.map(() => '---').join('|')}|---|`);
  for (const role of ['primary', 'standby'] as const) {
    const p = s.perHour[role];
    lines.push(`| ${role}, bench (per hour) | ${requestKinds.map((kk) => fmt(p.bench[kk] ?? 0)).join(' | ')} | |`);
    lines.push(`| ${role}, on its clocks, idle (per real hour) | ${requestKinds.map((kk) => fmt(p.clockReal[kk] ?? 0)).join(' | ')} | ${usd(monthlyRequestCost(p.clockReal))} |`);
    lines.push(`| ${role}, workload ÷ ${fmt(k)} (per real hour) | ${requestKinds.map((kk) => fmt(p.workloadReal[kk] ?? 0, 1)).join(' | ')} | ${usd(monthlyRequestCost(p.workloadReal))} |`);
  }
  const list = (m: Record<string, number>): string => Object.entries(m).map(([kk, v]) => `${kk} ${fmt(v, 2)}`).join(', ') || 'none';
  lines.push('', `To scale to another write rate or GC interval: per commit, the primary ${list(s.perCommit.primary)} (blob, record, head) and the`,
    `standby ${list(s.perCommit.standby)} above its idle rate; per GC run (${s.gcRuns} in the steady window), the primary ${list(s.perGcRun)}.`, '');
  lines.push('## Monthly cost', '',
    `AWS ${r.prices.storageClass} list prices, ${r.prices.region}, as of ${r.prices.asOf}: storage $${r.prices.storagePerGbMonth}/GB-month (GB = 2^30 bytes), PUT/COPY/POST/LIST`,
    `$${r.prices.tier1Per1000} per 1000, GET/HEAD $${r.prices.tier2Per1000} per 1000, DELETE free (GC's DeleteObjects counted as DELETE); ${r.prices.hoursPerMonth} h a month; no data`,
    'transfer (same region).', '',
    '| | $/month |', '|---|---|',
    `| storage (mean of the steady window, ${fmt(s.bytes.mean / 1e6, 2)} MB) | ${usd(s.monthly.storage)} |`,
    `| primary's requests | ${usd(s.monthly.primary)} |`,
    `| standby's requests | ${usd(s.monthly.standby)} |`,
    `| **one primary and one standby** | **${usd(s.monthly.total)}** |`, '');
  lines.push(`## Requests by object (bench counts: steady window of ${s.toS - s.fromS} s, idle window of ${fmt(r.idle.seconds)} s)`, '', '| host | kind | object | status | steady | idle |', '|---|---|---|---|---|---|');
  const totals = new Map<string, number>();
  for (const x of r.samples.filter((y) => y.t > s.fromS && y.t <= s.toS)) for (const [key, n] of Object.entries(x.requests)) totals.set(key, (totals.get(key) ?? 0) + n);
  for (const key of Object.keys(r.idle.requests)) if (!totals.has(key)) totals.set(key, 0);
  for (const [key, n] of [...totals].sort()) {
    const q = parseKey(key);
    const fence = q.role === 'primary' && isFenceProbe({ kind: q.kind, object: q.object as never }, q.status) ? ' (fence)' : '';
    lines.push(`| ${q.role} | ${q.kind} | ${q.object} | ${q.status} | ${n}${fence} | ${r.idle.requests[key] ?? 0} |`);
  }
  return `${lines.join('\n')}\n`;
}

function intArg(argv: string[], name: string, dflt: number, min: number, max: number): number {
  const a = argv.find((x) => x.startsWith(`--${name}=`));
  const n = a === undefined ? dflt : Number(a.slice(name.length + 3));
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`Expected \`--${name}\` to be an integer in ${min}..${max}, got ${a}`);
  return n;
}

export function monthsOptions(argv: string[]): MonthsOptions {
  const known = ['minutes', 'containers', 'writes', 'retention', 'sample', 'idle', 'kib', 'label', 'render'];
  for (const a of argv) if (!known.some((k) => a.startsWith(`--${k}=`))) throw new Error(`unknown argument ${a}; expected --minutes= --containers= --writes= --retention= --sample= --idle= --kib= --label= --render=`);
  return {
    minutes: intArg(argv, 'minutes', 5, 3, 60),
    containers: intArg(argv, 'containers', 40, 1, 100),
    writes: intArg(argv, 'writes', 4, 1, 50),
    // The config's floor for retentionMs is 60 s.
    retentionS: intArg(argv, 'retention', 60, 60, 3600),
    sampleS: intArg(argv, 'sample', 15, 5, 300),
    idleS: intArg(argv, 'idle', 60, 10, 600),
    kib: intArg(argv, 'kib', 16, 1, 4096),
    label: argv.find((x) => x.startsWith('--label='))?.slice('--label='.length).replace(/[^\w-]/g, '') ?? '',
  };
}

/** Runs, prints the report and writes results/<date>-months[-label].json and .md; returns the file stem. */
export async function runAndWriteMonths(o: MonthsOptions): Promise<string> {
  const r = await runMonths(o);
  const stem = join(resultsDir, `${r.at.slice(0, 10)}-months${r.label === '' ? '' : `-${r.label}`}`);
  await writeFile(`${stem}.json`, `${JSON.stringify(r, null, 1)}\n`);
  const md = renderMonths(r);
  await writeFile(`${stem}.md`, md);
  process.stdout.write(md);
  process.stderr.write(`wrote ${stem}.json and .md\n`);
  if (r.errors.length > 0) throw new Error(`months: ${r.errors.join('; ')}`);
  return stem;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const render = argv.find((x) => x.startsWith('--render='))?.slice('--render='.length);
  if (render !== undefined) process.stdout.write(renderMonths(JSON.parse(await readFile(render, 'utf8')) as MonthsResult));
  else {
    if (process.getuid?.() !== 0) throw new Error('bench/months.ts: run as root (dockerd, network namespaces, keepalived)');
    await runAndWriteMonths(monthsOptions(argv));
  }
}
