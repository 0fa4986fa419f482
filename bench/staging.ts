// What staging one commit costs in process (validate, apply, sync; with atomic staging also the intent's fsync, the
// undo log and the discard of the undo area), for one or more copies of src/ side by side, runs interleaved so that
// the disk's mood affects each alike. Commits are built by the pusher's own UpperTracker:
//   4KiB   one 4 KiB file rewritten, in a twin of 1,000 files
//   2000   2,000 files of 1 KiB rewritten (20 dirs)
//   full   a full checkpoint naming 2,500 of the twin's 5,000 files (the rest pruned); the twin is reset between runs
// The twins live on an ext4 of their own (a loop-mounted image), so the sync that ends each commit waits for this
// bench's writes only, not for whatever else the machine is writing.
//   --bulk one ~200 MB incompressible file, from the bucket (the embedded S3 server) to staged, alone: wall time,
//          bytes read per byte staged, peak RSS, and the GetObject floor (staging-bulk.ts); --mb=N sets the size
// Usage: node --import tsx bench/staging.ts [--src=label:dir ...] [--runs=N] [--bulk [--mb=200]]   (root; default --src=this:src)
// Another revision's src/: git archive <rev> src | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
// Prints a table and writes bench/results/<date>-staging.json (--bulk: <date>-staging-bulk.json).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { summarize, type Summary } from './lib/stats.js';
import { runBulk } from './staging-bulk.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

interface ChangesetModule {
  /** `record` is called once the commit is applied and synced (revisions before atomic staging ignore it). */
  stageChangeset(blob: string, kind: 'full' | 'delta', target: { upperDir: string; tmpDir: string }, opts?: { record?: () => Promise<void> }): Promise<unknown>;
  UpperTracker: new (o: { upperDir: string; workDir: string; excludes?: string[] }) => {
    build(scope: 'full' | 'reconcile'): Promise<{ file: string; kind: 'full' | 'delta' } | null>;
    commit(b: unknown): void;
  };
}

interface Workload { id: string; runs: number; blob: string; kind: 'full' | 'delta'; twinSeed: string; reset: boolean }

function args(): { srcs: Array<{ label: string; dir: string }>; runs: number; bulk: boolean; mb: number } {
  const srcs: Array<{ label: string; dir: string }> = [];
  let runs = 30;
  let bulk = false;
  let mb = 200;
  for (const a of process.argv.slice(2)) {
    if (a.startsWith('--src=')) {
      const v = a.slice('--src='.length);
      const i = v.indexOf(':');
      if (i <= 0) throw new Error(`Expected \`--src\` to be label:dir, got ${v}`);
      srcs.push({ label: v.slice(0, i), dir: resolve(v.slice(i + 1)) });
    } else if (a.startsWith('--runs=')) runs = Number(a.slice('--runs='.length));
    else if (a === '--bulk') bulk = true;
    else if (a.startsWith('--mb=')) mb = Number(a.slice('--mb='.length));
    else throw new Error(`unknown argument ${a}; expected --src=label:dir, --runs=N, --bulk and --mb=N`);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`Expected \`--runs\` to be an integer >= 1, got ${runs}`);
  if (!(mb > 0)) throw new Error(`Expected \`--mb\` to be a positive number, got ${mb}`);
  if (srcs.length === 0) srcs.push({ label: 'this', dir: join(here, '..', 'src') });
  return { srcs, runs, bulk, mb };
}

async function writeFiles(root: string, dirs: number, perDir: number, size: number, tag: string): Promise<void> {
  for (let d = 0; d < dirs; d++) {
    await mkdir(join(root, `d${d}`), { recursive: true });
    for (let i = 0; i < perDir; i++) await writeFile(join(root, `d${d}`, `f${i}`), Buffer.alloc(size, `${tag}${d}.${i}`));
  }
}

/** Builds each workload's blob on a primary upper dir, and the twin state it applies to (a copy staged from full). */
async function prepare(cs: ChangesetModule, base: string, runs: number): Promise<Workload[]> {
  const out: Workload[] = [];
  const primary = async (name: string): Promise<{ upper: string; tracker: InstanceType<ChangesetModule['UpperTracker']> }> => {
    const upper = join(base, 'primary', name, 'upper');
    await mkdir(upper, { recursive: true });
    await mkdir(join(base, 'primary', name, 'work'), { recursive: true });
    return { upper, tracker: new cs.UpperTracker({ upperDir: upper, workDir: join(base, 'primary', name, 'work'), excludes: [] }) };
  };
  /** The twin's starting point: the primary's full checkpoint staged into a fresh dir, kept as a seed to copy. */
  const seedOf = async (name: string, tracker: InstanceType<ChangesetModule['UpperTracker']>): Promise<string> => {
    const full = await tracker.build('full');
    if (full === null) throw new Error('nothing built');
    tracker.commit(full);
    const seed = join(base, 'seeds', name);
    await mkdir(seed, { recursive: true });
    await cs.stageChangeset(full.file, 'full', { upperDir: seed, tmpDir: join(base, 'seeds', `${name}-tmp`) });
    return seed;
  };
  const keep = async (b: { file: string } | null, name: string): Promise<string> => {
    if (b === null) throw new Error('nothing built');
    const blob = join(base, `${name}.tar.gz`);
    await run('cp', [b.file, blob]);
    return blob;
  };

  const small = await primary('4KiB');
  await writeFiles(small.upper, 10, 100, 512, 'a');
  await mkdir(join(small.upper, 'etc'));
  await writeFile(join(small.upper, 'etc', 'app.conf'), Buffer.alloc(4096, 'a'));
  const smallSeed = await seedOf('4KiB', small.tracker);
  await writeFile(join(small.upper, 'etc', 'app.conf'), Buffer.alloc(4096, 'b'));
  out.push({ id: '4KiB', runs, blob: await keep(await small.tracker.build('reconcile'), '4KiB'), kind: 'delta', twinSeed: smallSeed, reset: false });

  const many = await primary('2000');
  await writeFiles(many.upper, 20, 100, 1024, 'a');
  const manySeed = await seedOf('2000', many.tracker);
  await writeFiles(many.upper, 20, 100, 1024, 'b');
  out.push({ id: '2000', runs: Math.max(1, Math.ceil(runs / 3)), blob: await keep(await many.tracker.build('reconcile'), '2000'), kind: 'delta', twinSeed: manySeed, reset: false });

  const pruned = await primary('full');
  await writeFiles(pruned.upper, 50, 100, 256, 'a');
  const prunedSeed = await seedOf('full', pruned.tracker);
  for (let d = 25; d < 50; d++) await rm(join(pruned.upper, `d${d}`), { recursive: true });
  out.push({ id: 'full', runs: Math.max(1, Math.ceil(runs / 6)), blob: await keep(await pruned.tracker.build('full'), 'full'), kind: 'full', twinSeed: prunedSeed, reset: true });
  return out;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/staging.ts: run as root (chown, xattrs)');
  const { srcs, runs, bulk, mb } = args();
  const mods = await Promise.all(srcs.map(async (s) => ({ ...s, cs: (await import(pathToFileURL(join(s.dir, 'changeset', 'index.ts')).href)) as ChangesetModule })));
  const outer = await mkdtemp(join(tmpdir(), 'tl-stagebench-'));
  const base = join(outer, 'fs');
  /** `ms`: the whole call; `recordedMs`: until the commit could be recorded as staged (applied and synced; the undo
   *  area is discarded after that, off the path of the staged seq). */
  const results: Array<{ workload: string; src: string; ms: Summary; recordedMs: Summary }> = [];
  await mkdir(base);
  await run('truncate', ['-s', bulk ? `${Math.ceil((mb * 7) / 1000) + 1}G` : '2G', join(outer, 'fs.img')]);
  await run('mkfs.ext4', ['-q', '-F', join(outer, 'fs.img')], { timeout: 120_000 });
  await run('mount', ['-o', 'loop', join(outer, 'fs.img'), base]);
  try {
    if (bulk) {
      const out = await runBulk(srcs, base, join(outer, 's3'), runs, mb);
      console.log(`${(out.fileBytes / 1e6).toFixed(0)} MB file, ${(out.blobBytes / 1e6).toFixed(1)} MB blob; GetObject floor median ${out.floorMs.median} ms (min ${out.floorMs.min})`);
      console.log('| src | N | bucket → staged median / p90 / min | of it until downloaded (median) | bytes read per byte staged | RSS rise median / max |');
      console.log('|---|---|---|---|---|---|');
      for (const r of out.results) {
        console.log(`| ${r.src}${r.streamed ? ' (streamed)' : ''} | ${r.ms.n} | ${r.ms.median} / ${r.ms.p90} / ${r.ms.min} ms | ${r.downloadMs.median} ms | ${r.readPerByte.median} | ${r.rssGrowthMb.median} / ${r.rssGrowthMb.max} MB |`);
      }
      const file = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-staging-bulk.json`);
      await writeFile(file, JSON.stringify({ at: new Date().toISOString(), fs: 'ext4 on a loop device (image on the root disk); S3: twinlayer s3 on 127.0.0.1, its own process', srcs, runs, ...out }, null, 1));
      console.log(`written ${file}`);
      return;
    }
    const first = mods[0];
    if (first === undefined) throw new Error('no src');
    const workloads = await prepare(first.cs, base, runs);
    for (const w of workloads) {
      const twins = new Map<string, string>();
      for (const m of mods) {
        const twin = join(base, 'twins', `${w.id}-${m.label}`);
        await mkdir(dirname(twin), { recursive: true });
        await run('cp', ['-a', w.twinSeed, twin]);
        twins.set(m.label, twin);
      }
      const samples = new Map<string, number[]>(mods.map((m) => [m.label, []]));
      const recorded = new Map<string, number[]>(mods.map((m) => [m.label, []]));
      // One warm-up per src, then runs interleaved: A B A B ...
      for (let r = -1; r < w.runs; r++) {
        for (const m of mods) {
          const twin = twins.get(m.label)!;
          if (w.reset) {
            await rm(twin, { recursive: true, force: true });
            await run('cp', ['-a', w.twinSeed, twin]);
            await run('sync', ['-f', twin]);
          }
          const t0 = performance.now();
          let tRecord: number | null = null;
          await m.cs.stageChangeset(w.blob, w.kind, { upperDir: twin, tmpDir: `${twin}-tmp` }, {
            record: () => {
              tRecord = performance.now();
              return Promise.resolve();
            },
          });
          const t1 = performance.now();
          if (r >= 0) {
            samples.get(m.label)!.push(t1 - t0);
            recorded.get(m.label)!.push((tRecord ?? t1) - t0);
          }
        }
      }
      for (const m of mods) results.push({ workload: w.id, src: m.label, ms: summarize(samples.get(m.label)!), recordedMs: summarize(recorded.get(m.label)!) });
    }
  } finally {
    // umount of a `-o loop` mount detaches its loop device (autoclear).
    await run('umount', [base]).catch((err: unknown) => console.error(`umount ${base}: ${(err as Error).message}`));
    await rm(outer, { recursive: true, force: true });
  }
  console.log('| commit | src | N | → recorded median / p90 / min | whole call median / p90 / min |');
  console.log('|---|---|---|---|---|');
  for (const r of results) {
    const f = (x: Summary): string => `${x.median} / ${x.p90} / ${x.min} ms`;
    console.log(`| ${r.workload} | ${r.src} | ${r.ms.n} | ${f(r.recordedMs)} | ${f(r.ms)} |`);
  }
  const file = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-staging.json`);
  await writeFile(file, JSON.stringify({ at: new Date().toISOString(), fs: 'ext4 on a loop device (2 GiB image on the root disk)', srcs, runs, results }, null, 1));
  console.log(`written ${file}`);
}

await main();
