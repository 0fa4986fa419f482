// Process start → hook answering: how long a (re)started `twinlayer agent` (or `pull`) takes from its spawn until
// its VRRP hook answers (GET /healthz 200: keepalived's calls are taken from then on, held until the daemon is open),
// until the daemon behind it is open (GET /v1/status 200) and until its first role is decided ("agent started"), the
// CPU time it used until the hook answered, and its RSS then and once started, for each way of running the sources.
// The process talks to a private Docker engine (so: run it under the heavy lock) and the embedded S3 server (in
// processes of their own), with a fresh state dir per run; runs alternate between the variants so drift of the
// machine hits them alike.
// Prints a table (median, min, max) and writes bench/results/<date>-startup[-<tag>].json.
//
//   node --import tsx bench/startup.ts [--runs 7] [--variants bin,strip,tsx] [--command agent|pull] [--node PATH]
//                                      [--bin PATH] [--before PATH] [--tag NAME]
//
// Variants: `bin` is the production entry (bin/twinlayer.js: the compiled JavaScript in dist/; --bin names another
// tree's); `before` is another tree's bin/twinlayer.js (--before PATH, e.g. an older checkout built with
// `npm run build`), measured in the same run for a before/after; `strip` runs src/ on Node's own type stripping
// (bench/lib/strip-types-entry.js); `tsx` runs src/ through the tsx loader (how bin/twinlayer.js ran before).
// --node runs the variants on another Node binary (the bench itself stays on this one).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { startEngine, type Engine } from '../src/lab/engine.js';
import { GroupKeys } from '../src/lab/group-keys.js';
import { freePort } from '../test/support/twinlayer.js';
import { BUCKET, PREFIX, S3_ENV, startS3Process, type S3Process } from './lib/s3.js';
import { summarize, type Summary } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const resultsDir = join(here, 'results');

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}
const runs = Number(flag('runs') ?? 7);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs: expected 1-50, got ${flag('runs')}`);
const node = resolve(flag('node') ?? process.execPath);
const bin = resolve(flag('bin') ?? join(repoRoot, 'bin', 'twinlayer.js'));
const before = flag('before');
const command = flag('command') ?? 'agent';
if (command !== 'agent' && command !== 'pull') throw new Error(`--command: agent or pull, got ${JSON.stringify(command)}`);
/** The line that says the first role is decided (the agent) or the puller polls (pull). */
const startedLine = command === 'agent' ? '"msg":"agent started"' : '"msg":"hook listening"';
const tag = flag('tag') ?? '';
if (!/^[a-z0-9-]*$/.test(tag)) throw new Error(`--tag: letters, digits and dashes, got ${JSON.stringify(tag)}`);

const entries = {
  bin: { argv: [bin], what: `bin/twinlayer.js (${bin === join(repoRoot, 'bin', 'twinlayer.js') ? 'dist/, compiled by tsc' : bin})` },
  before: { argv: [before === undefined ? '' : resolve(before)], what: `before: ${before ?? '(--before PATH)'}` },
  strip: { argv: [join(here, 'lib', 'strip-types-entry.js')], what: 'src/ on Node\'s type stripping' },
  tsx: { argv: ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts')], what: 'src/ through the tsx loader' },
} as const;
type Variant = keyof typeof entries;
const variants = (flag('variants') ?? 'bin,strip,tsx').split(',') as Variant[];
for (const v of variants) if (!(v in entries)) throw new Error(`--variants: unknown ${JSON.stringify(v)} (bin, before, strip, tsx)`);
if (variants.includes('before') && before === undefined) throw new Error('--variants before needs --before PATH (another tree\'s bin/twinlayer.js)');

const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
/** Type stripping without a flag came with Node 22.18 / 23.6. */
const [major = 0, minor = 0] = nodeVersion.slice(1).split('.').map(Number);
const canStrip = major > 22 || (major === 22 && minor >= 18);

interface Sample {
  /** spawn → its first log line (ms). */
  firstLineMs: number;
  /** spawn → GET /healthz answered 200 (ms): the hook takes keepalived's calls from then on. */
  hookMs: number;
  /** spawn → GET /v1/status answered 200 (ms): the daemon behind the hook is open. */
  readyMs: number;
  /** spawn → the log line "agent started" (first role decided and converged; `pull`: "hook listening") (ms). */
  startedMs: number;
  /** CPU time (user + system) the process had used when the hook first answered (ms): unlike the wall times, it
   *  does not grow when other work shares the machine's cores. */
  cpuAtHookMs: number;
  /** VmRSS when the hook first answered, and 2 s after the agent started (MB); VmHWM then (MB). */
  rssAtHookMB: number;
  rssIdleMB: number;
  peakMB: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number): number => Math.round(kb / 102.4) / 10;

/** getconf CLK_TCK on Linux x86-64 and arm64. */
const TICKS_PER_SECOND = 100;

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at the closing parenthesis; utime and stime are
  // fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

async function memKb(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

function hookStatus(port: number, token: string, path: '/healthz' | '/v1/status'): Promise<number | null> {
  return new Promise((resolveStatus) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 1_000, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolveStatus(res.statusCode ?? 0));
      res.on('error', () => resolveStatus(null));
    });
    req.on('error', () => resolveStatus(null));
    req.on('timeout', () => req.destroy());
  });
}

const children = new Set<ChildProcess>();

async function once(variant: Variant, engine: Engine, s3: S3Process, keys: GroupKeys, base: string, run: number): Promise<Sample> {
  const dir = join(base, `${variant}-${run}`);
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const token = randomBytes(16).toString('hex');
  const env = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env['HOME'] ?? '/root', ...S3_ENV,
    TWINLAYER_ENDPOINT: s3.endpoint, TWINLAYER_BUCKET: BUCKET, TWINLAYER_PREFIX: PREFIX, TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: `startup-${command}-${variant}-${run}`, TWINLAYER_HOST_ID: 'startup', TWINLAYER_DOCKER_SOCKET: engine.socketPath,
    TWINLAYER_STATE_DIR: join(dir, 'state'), TWINLAYER_VRRP_STATE_FILE: join(dir, 'vrrp-state'),
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port}`, TWINLAYER_HOOK_TOKEN: token, TWINLAYER_LOG_LEVEL: 'info', ...keys.env('startup'),
  };
  const t0 = performance.now();
  const child = spawn(node, [...entries[variant].argv, command], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const lines: string[] = [];
  let startedAt: number | null = null;
  let firstLineAt: number | null = null;
  const onData = (buf: Buffer): void => {
    firstLineAt ??= performance.now();
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line) continue;
      lines.push(line);
      if (startedAt === null && line.includes(startedLine)) startedAt = performance.now();
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const fail = (what: string): Error => new Error(`${variant} run ${run}: ${what}; last lines:\n${lines.slice(-10).join('\n')}`);
  try {
    /** Polls `path` every 2 ms until it answers 200; spawn → then (ms). */
    const until200 = async (path: '/healthz' | '/v1/status'): Promise<number> => {
      for (const deadline = t0 + 30_000; ; await sleep(2)) {
        if (child.exitCode !== null) throw fail(`exited (${child.exitCode}) before ${path} answered 200`);
        if (performance.now() > deadline) throw fail(`${path} did not answer 200 within 30 s`);
        if ((await hookStatus(port, token, path)) === 200) return performance.now() - t0;
      }
    };
    const hookMs = await until200('/healthz');
    const [atHook, cpuAtHookMs] = await Promise.all([memKb(child.pid!), cpuMs(child.pid!)]);
    const readyMs = await until200('/v1/status');
    for (const deadline = t0 + 30_000; startedAt === null; await sleep(10)) {
      if (child.exitCode !== null || performance.now() > deadline) throw fail(`no ${startedLine} line within 30 s`);
    }
    const startedMs = (startedAt as number) - t0;
    await sleep(2_000);
    const idle = await memKb(child.pid!);
    const r = (x: number): number => Math.round(x * 10) / 10;
    return { firstLineMs: r((firstLineAt as number | null ?? Number.NaN) - t0), hookMs: r(hookMs), readyMs: r(readyMs), startedMs: r(startedMs), cpuAtHookMs, rssAtHookMB: mb(atHook.rss), rssIdleMB: mb(idle.rss), peakMB: mb(idle.hwm) };
  } finally {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
    children.delete(child);
  }
}

interface VariantResult { variant: Variant; what: string; samples: Sample[]; firstLineMs: Summary; hookMs: Summary; readyMs: Summary; cpuAtHookMs: Summary; startedMs: Summary; rssAtHookMB: Summary; rssIdleMB: Summary; peakMB: Summary }

const base = await mkdtemp(join(tmpdir(), 'tl-startup-'));
let engine: Engine | null = null;
let s3: S3Process | null = null;
const cleanup = async (): Promise<void> => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.allSettled([engine?.stop(), s3?.stop()]);
  await rm(base, { recursive: true, force: true });
};
const onSignal = (): void => void cleanup().finally(() => process.exit(130));
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  const active = variants.filter((v) => v !== 'strip' || canStrip);
  if (active.length < variants.length) process.stdout.write(`strip skipped: ${nodeVersion} has no type stripping without a flag\n`);
  const keys = await GroupKeys.create(join(base, 'keys'), ['startup']);
  s3 = await startS3Process(join(base, 's3'));
  engine = await startEngine({ name: 'startup' });
  const samples = new Map<Variant, Sample[]>(active.map((v) => [v, []]));
  // One unmeasured start per variant first: the OS page cache, not the variant, would decide the first figure.
  for (const v of active) await once(v, engine, s3, keys, base, 0);
  for (let run = 1; run <= runs; run++) {
    for (const v of active) {
      const s = await once(v, engine, s3, keys, base, run);
      samples.get(v)!.push(s);
      process.stdout.write(`run ${run} ${v}: first line ${s.firstLineMs} ms, hook ${s.hookMs} ms (CPU ${s.cpuAtHookMs} ms), ready ${s.readyMs} ms, started ${s.startedMs} ms, RSS ${s.rssAtHookMB} MB at the hook, ${s.rssIdleMB} MB idle, peak ${s.peakMB} MB\n`);
    }
  }
  const results: VariantResult[] = active.map((v) => {
    const xs = samples.get(v)!;
    const of = (k: keyof Sample): Summary => summarize(xs.map((s) => s[k]));
    return { variant: v, what: entries[v].what, samples: xs, firstLineMs: of('firstLineMs'), hookMs: of('hookMs'), readyMs: of('readyMs'), cpuAtHookMs: of('cpuAtHookMs'), startedMs: of('startedMs'), rssAtHookMB: of('rssAtHookMB'), rssIdleMB: of('rssIdleMB'), peakMB: of('peakMB') };
  });
  const cell = (s: Summary): string => `${s.median} (${s.min}–${s.max})`;
  const header = ['variant', 'spawn → first line, ms', 'spawn → hook answers, ms', 'CPU used by then, ms', 'spawn → daemon open, ms', `spawn → ${command === 'agent' ? 'agent started' : 'puller polls'}, ms`, 'RSS at the hook, MB', 'RSS idle, MB', 'peak RSS, MB'];
  const rows = results.map((r) => [`${r.variant}: ${r.what}`, cell(r.firstLineMs), cell(r.hookMs), cell(r.cpuAtHookMs), cell(r.readyMs), cell(r.startedMs), cell(r.rssAtHookMB), cell(r.rssIdleMB), cell(r.peakMB)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  process.stdout.write(`\ntwinlayer ${command} start-up on ${nodeVersion}, median (min–max) of ${runs} runs\n${fmt(header)}\n${widths.map((w) => '-'.repeat(w)).join('-|-')}\n${rows.map(fmt).join('\n')}\n`);
  const date = new Date().toISOString();
  const file = join(resultsDir, `${date.slice(0, 10)}-startup${command === 'pull' ? '-pull' : ''}${tag ? `-${tag}` : ''}.json`);
  await writeFile(file, JSON.stringify({ date, command, node: nodeVersion, nodePath: node, bin, before: before ?? null, runs, results }, null, 2) + '\n');
  process.stdout.write(`wrote ${file.slice(repoRoot.length + 1)}\n`);
} finally {
  await cleanup();
}
