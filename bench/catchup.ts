// How fast a standby catches up (issue 8's rejoin criterion, issue 13): one real engine, the embedded S3 server, N
// containers, and a puller in process (the daemon's loop, as the agent runs it) that finds a backlog in the bucket:
//   backlog  its twins hold commit k of the generation; M small deltas per container wait after it
//   rejoin   a new generation: a full checkpoint per container, then M small deltas each (a failed-over primary
//            rejoining as standby)
// Timed from the puller's start (after open) until every twin has staged its head. Commits are built by the pusher's
// own UpperTracker (one 4 KiB file rewritten per commit, in a tree of 100 small files) and published with the real
// JournalWriter, round robin over the containers as a busy primary publishes them. Counted per staged commit: Docker
// API requests (a counting relay in front of the engine's socket) and applied-state saves (renames onto applied.json).
// With --before=<dir of another src/>, both variants run in turns, on the same engine and bucket (their own groups
// and twins), the first one alternating, so the machine's mood affects each alike.
// Usage: node --import tsx bench/catchup.ts [--containers=20,40] [--commits=M] [--runs=R] [--before=dir] [--log=file] (root)
// Another revision's src/: git archive <rev> src | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
// Prints a table and writes bench/results/<date>-catchup.json.
import { createWriteStream, watch } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { UpperTracker, type BuiltChangeset } from '../src/changeset/index.js';
import { specDigest, twinSpecSchema, type TwinSpec } from '../src/docker/index.js';
import { importBusyboxImage } from '../src/lab/busybox-image.js';
import { startEngine, type Engine } from '../src/lab/engine.js';
import { createLogger, type Logger } from '../src/log/logger.js';
import { asDigest, Bucket, JournalWriter, type BlobStore, type Generation } from '../src/store/index.js';
import { testSignatures } from '../test/support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../test/support/s3.js';
import { startDockerCallCounter, type DockerCallCounter } from '../test/support/docker-calls.js';
import { summarize, type Summary } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const WRITER = 'bench-primary';
/** Set by SIGINT/SIGTERM: the bench stops at its next wait and cleans up (engine, S3 server, temp dirs). */
let interrupted: string | null = null;
const interrupt = (signal: string): void => {
  interrupted = signal;
};
const checkInterrupted = (): void => {
  if (interrupted !== null) throw new Error(`interrupted by ${interrupted}`);
};

/** What the bench uses of a src/ tree's puller side (another revision's classes, loaded at run time). */
interface PullerLike {
  open(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}
interface VariantModules {
  Puller: new (o: Record<string, unknown>) => PullerLike;
  DockerRuntime: new (o: { socketPath: string; mountInfoPath: string }) => unknown;
  Bucket: new (store: BlobStore, o: Record<string, unknown>) => unknown;
}

interface Variant { label: string; dir: string; mods: VariantModules }

function args(): { containers: number[]; commits: number; runs: number; before: string | null; log: string | null } {
  let containers = [20, 40];
  let log: string | null = null;
  let commits = 10;
  let runs = 3;
  let before: string | null = null;
  for (const a of process.argv.slice(2)) {
    const [k, v = ''] = a.split('=', 2);
    if (k === '--containers') containers = v.split(',').map(Number);
    else if (k === '--commits') commits = Number(v);
    else if (k === '--runs') runs = Number(v);
    else if (k === '--before') before = resolve(v);
    else if (k === '--log') log = resolve(v);
    else throw new Error(`unknown argument ${a}; expected --containers=20,40 --commits=M --runs=R --before=dir`);
  }
  for (const [what, n] of [['--commits', commits], ['--runs', runs], ...containers.map((c) => ['--containers', c] as const)] as const) {
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error(`Expected \`${what}\` to be an integer in 1..1000, got ${n}`);
  }
  return { containers, commits, runs, before, log };
}

async function load(label: string, dir: string): Promise<Variant> {
  const imp = async (unit: string): Promise<Record<string, unknown>> => (await import(pathToFileURL(join(dir, unit, 'index.ts')).href)) as Record<string, unknown>;
  const [puller, docker, store] = await Promise.all([imp('puller'), imp('docker'), imp('store')]);
  return { label, dir, mods: { Puller: puller['Puller'], DockerRuntime: docker['DockerRuntime'], Bucket: store['Bucket'] } as VariantModules };
}

function specOf(name: string, imageId: string): TwinSpec {
  return twinSpecSchema.parse({
    version: 1, name, image: 'tl-busybox:catchup', imageId, cmd: ['sh'], entrypoint: null, env: [], labels: {},
    workingDir: '', user: '', exposedPorts: [], portBindings: {}, networkMode: 'none', capturedAt: new Date().toISOString(),
  });
}

/** One logical container of the primary: its upper dir and the tracker that builds its changesets. */
class Source {
  readonly upper: string;
  readonly tracker: UpperTracker;
  #n = 0;
  constructor(readonly root: string) {
    this.upper = join(root, 'upper');
    this.tracker = new UpperTracker({ upperDir: this.upper, workDir: join(root, 'work') });
  }

  static async make(root: string): Promise<Source> {
    const s = new Source(root);
    await mkdir(join(root, 'work'), { recursive: true });
    for (let d = 0; d < 4; d++) {
      await mkdir(join(s.upper, `d${d}`), { recursive: true });
      for (let i = 0; i < 25; i++) await writeFile(join(s.upper, `d${d}`, `f${i}`), Buffer.alloc(512, `${d}.${i}`));
    }
    await mkdir(join(s.upper, 'data'));
    return s;
  }

  /** A small write (one 4 KiB file rewritten, another of a few), built; or the whole tree. */
  async next(kind: 'delta' | 'full'): Promise<BuiltChangeset> {
    if (kind === 'delta') {
      this.#n++;
      await writeFile(join(this.upper, 'data', 'state'), Buffer.alloc(4096, `${this.#n}`));
      await writeFile(join(this.upper, 'data', `log${this.#n % 8}`), `line ${this.#n}\n`);
    }
    const built = await this.tracker.build(kind === 'full' ? 'full' : 'reconcile');
    if (built === null) throw new Error(`nothing built in ${this.root}`);
    // Whole blobs only: the tracker chunks nothing here (no chunking options), and the records name no chunk list.
    if (built.chunks !== undefined) throw new Error(`${this.root}: a chunked build; the bench publishes whole blobs`);
    this.tracker.commit(built);
    return built;
  }
}

/** A batch of commits, built once and published into each variant's group: by container index, in publish order. */
type Batch = Array<{ index: number; built: BuiltChangeset }>;

async function buildBatch(sources: Source[], commits: number, withFull: boolean): Promise<Batch> {
  const out: Batch = [];
  if (withFull) for (const [index, s] of sources.entries()) out.push({ index, built: await s.next('full') });
  for (let m = 0; m < commits; m++) {
    checkInterrupted();
    for (const [index, s] of sources.entries()) out.push({ index, built: await s.next('delta') });
  }
  return out;
}

/** A variant's primary side: its group, its container names, the generation it writes. */
class Group {
  readonly bucket: Bucket;
  readonly names: string[];
  journal: JournalWriter;
  generation = 1;
  constructor(readonly id: string, store: BlobStore, n: number, prefix: string) {
    this.bucket = new Bucket(store, { signatures: testSignatures(), prefix: 'twinlayer', group: id });
    this.names = Array.from({ length: n }, (_, i) => `${prefix}-c${String(i).padStart(2, '0')}`);
    this.journal = new JournalWriter(this.bucket, { generation: 1 as Generation, writer: WRITER, head: null });
  }

  async publish(batch: Batch, imageId: string): Promise<Record<string, number>> {
    const heads: Record<string, number> = {};
    for (const { index, built } of batch) {
      const name = this.names[index]!;
      await this.bucket.uploadBlob(built.file, asDigest(built.digest));
      const rec = await this.journal.publish({
        container: name, digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts, firstWriteAt: new Date(),
        specDigest: asDigest(specDigest(specOf(name, imageId))),
      });
      heads[name] = rec.seq;
    }
    return heads;
  }

  /** A new generation, as a failed-over primary starts one. */
  nextGeneration(): void {
    this.generation++;
    this.journal = new JournalWriter(this.bucket, { generation: this.generation as Generation, writer: WRITER, head: null });
  }
}

interface Measure { ms: number; commits: number; dockerCalls: number; saves: number; byKind: Record<string, number> }

async function catchUp(v: Variant, g: Group, stateDir: string, engine: Engine, counter: DockerCallCounter, store: BlobStore, want: Record<string, number>, log: Logger): Promise<Measure> {
  const pullDir = join(stateDir, 'pull', g.id);
  await mkdir(pullDir, { recursive: true });
  const puller = new v.mods.Puller({
    runtime: new v.mods.DockerRuntime({ socketPath: counter.path, mountInfoPath: engine.mountInfoPath }),
    bucket: new v.mods.Bucket(store, { signatures: testSignatures(), prefix: 'twinlayer', group: g.id }),
    log, group: g.id, stateDir, pollIntervalMs: 250, downloadConcurrency: 4, startConcurrency: 4,
  });
  await puller.open();
  let saves = 0;
  const watcher = watch(pullDir, (event, file) => {
    if (event === 'rename' && file === 'applied.json') saves++;
  });
  counter.reset();
  const t0 = performance.now();
  try {
    puller.start();
    // Bounded: a standby that never catches up fails the bench, naming who is behind.
    for (let i = 0; ; i++) {
      const text = await readFile(join(pullDir, 'applied.json'), 'utf8').catch(() => '{}');
      const applied = (JSON.parse(text) as { containers?: Record<string, { generation: number; seq: number }> }).containers ?? {};
      const behind = Object.entries(want).filter(([name, seq]) => applied[name]?.generation !== g.generation || applied[name]?.seq !== seq);
      if (behind.length === 0) break;
      checkInterrupted();
      if (i >= 60_000 / 20 * 10) throw new Error(`${v.label}: not caught up after 600 s: ${behind.slice(0, 5).map(([n, s]) => `${n} at ${JSON.stringify(applied[n])} of ${s}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    watcher.close();
    await puller.stop();
  }
  const ms = performance.now() - t0;
  return { ms, commits: 0, dockerCalls: counter.total(), saves, byKind: Object.fromEntries(counter.counts()) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/catchup.ts: run as root (dockerd, overlayfs)');
  const a = args();
  process.once('SIGINT', interrupt).once('SIGTERM', interrupt);
  const variants: Variant[] = [];
  if (a.before !== null) variants.push(await load('before', a.before));
  variants.push(await load('this', join(here, '..', 'src')));
  const base = await mkdtemp(join(tmpdir(), 'tl-catchup-'));
  const lines: string[] = [];
  // --log=file: every puller line at debug level, for a timeline of where a catch-up waits.
  const debug = a.log === null ? null : createWriteStream(a.log);
  const log = createLogger({ level: debug === null ? 'warn' : 'debug', write: (l) => (debug === null ? lines.push(l) : debug.write(`${l}\n`)) });
  let s3: TestS3 | null = null;
  let engine: Engine | null = null;
  let counter: DockerCallCounter | null = null;
  const results: Array<{ containers: number; shape: string; variant: string; commitsPerS: Summary; dockerPerCommit: Summary; savesPerCommit: Summary; byKindPerCommit: Record<string, number> }> = [];
  try {
    s3 = await withS3();
    const store = testS3Store(s3);
    engine = await startEngine({ name: 'catchup' });
    counter = await startDockerCallCounter(join(base, 'docker.sock'), engine.socketPath);
    const imageId = await importBusyboxImage(engine.socketPath, 'tl-busybox:catchup');
    for (const n of a.containers) {
      const sources = await Promise.all(Array.from({ length: n }, (_, i) => Source.make(join(base, `src-${n}`, `c${i}`))));
      const groups = variants.map((v) => ({ v, g: new Group(`cu-${v.label}-${n}`, store, n, `${v.label.slice(0, 1)}${n}`), stateDir: join(base, `state-${v.label}-${n}`) }));
      for (const { g } of groups) for (const name of g.names) await g.bucket.putSpec(name, specOf(name, imageId));
      // Twins made and staged to a first full checkpoint: untimed.
      const first = await buildBatch(sources, 0, true);
      for (const { v, g, stateDir } of groups) await catchUp(v, g, stateDir, engine, counter, store, await g.publish(first, imageId), log);
      const samples = new Map<string, Measure[]>();
      for (let r = 0; r < a.runs; r++) {
        for (const shape of ['backlog', 'rejoin'] as const) {
          const batch = await buildBatch(sources, a.commits, shape === 'rejoin');
          // Each run the other variant goes first: what the one before leaves (dirty pages, a busier engine) is shared.
          for (const { v, g, stateDir } of r % 2 === 0 ? groups : [...groups].reverse()) {
            if (shape === 'rejoin') g.nextGeneration();
            const want = await g.publish(batch, imageId);
            const m = await catchUp(v, g, stateDir, engine, counter, store, want, log);
            m.commits = batch.length;
            const key = `${shape}\n${v.label}`;
            samples.set(key, [...(samples.get(key) ?? []), m]);
            console.error(`${n} containers, ${shape}, ${v.label}, run ${r + 1}: ${batch.length} commits in ${Math.round(m.ms)} ms (${(batch.length / m.ms * 1000).toFixed(1)}/s), ${(m.dockerCalls / batch.length).toFixed(2)} Docker calls and ${(m.saves / batch.length).toFixed(2)} state saves per commit`);
          }
          for (const b of batch) await rm(b.built.file, { force: true });
        }
      }
      for (const [key, ms] of samples) {
        const [shape = '', variant = ''] = key.split('\n');
        const commits = ms.reduce((s, m) => s + m.commits, 0);
        const byKind: Record<string, number> = {};
        for (const m of ms) for (const [k, c] of Object.entries(m.byKind)) byKind[k] = (byKind[k] ?? 0) + c;
        for (const k of Object.keys(byKind)) byKind[k] = Math.round((byKind[k]! / commits) * 100) / 100;
        results.push({
          containers: n, shape, variant,
          commitsPerS: summarize(ms.map((m) => (m.commits / m.ms) * 1000)),
          dockerPerCommit: summarize(ms.map((m) => m.dockerCalls / m.commits)),
          savesPerCommit: summarize(ms.map((m) => m.saves / m.commits)),
          byKindPerCommit: byKind,
        });
      }
      await rm(join(base, `src-${n}`), { recursive: true, force: true });
    }
    store.destroy();
  } finally {
    const errors: unknown[] = [];
    await counter?.close().catch((e: unknown) => errors.push(e));
    await engine?.stop().catch((e: unknown) => errors.push(e));
    await s3?.close().catch((e: unknown) => errors.push(e));
    await rm(base, { recursive: true, force: true }).catch((e: unknown) => errors.push(e));
    debug?.end();
    if (lines.length > 0) console.error(`puller warnings (last 10 of ${lines.length}):\n${lines.slice(-10).join('\n')}`);
    if (errors.length > 0) console.error('cleanup:', errors);
  }
  console.log(`| containers | shape | src | runs | commits/s median (min–max) | Docker calls / commit | state saves / commit |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.containers} | ${r.shape} | ${r.variant} | ${r.commitsPerS.n} | ${r.commitsPerS.median} (${r.commitsPerS.min}–${r.commitsPerS.max}) | ${r.dockerPerCommit.median} | ${r.savesPerCommit.median} |`);
  }
  for (const r of results) console.log(`${r.containers} ${r.shape} ${r.variant}: Docker calls per commit by kind ${JSON.stringify(r.byKindPerCommit)}`);
  const file = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-catchup.json`);
  await writeFile(file, JSON.stringify({ at: new Date().toISOString(), args: a, variants: variants.map((v) => ({ label: v.label, dir: v.dir })), results }, null, 1));
  console.log(`written ${file}`);
}

await main();
