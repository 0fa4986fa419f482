// What content-defined chunks (issue 10) save, in process: the pusher's UpperTracker builds each commit from a real
// overlay upper dir (written through the mount), commits go to the embedded S3 server as the pusher sends them
// (packs of the chunks the bucket lacks, the chunk list, the changeset), and a twin's upper dir stages them as the
// puller does (ranged GETs of the packs for the chunks it lacks).
// Each workload runs twice: `whole` is the tracker without chunking (the code path of every file before issue 10:
// the changeset carries each changed file whole) and `chunks` the tracker with the default threshold (1 MiB).
//   append   a 50 MB log, then 5 KB appended as 50 lines of 100 bytes, shipped in 14 commits (the issue's run
//            published 14 commits over those 10 s; the lines are written without waiting, the bytes are the same)
//   edit     4 KiB overwritten in the middle of a 206 MB file, one commit
//   same40   the same 20 MB file written in 40 containers (40 overlays, one bucket), one commit each
//   new206   a new 206 MB file: ship (build + upload) and stage (download + validate + apply) times
//   small    a 4 KiB file rewritten: ship and stage times
//   edits    the chunker alone, no bucket: 4 KiB overwritten at a random place of 6 MiB of pseudo-random data, many
//            times (--edit-trials=N, default 2000); the spread of the bytes of the chunks cut anew (what an edit
//            uploads) against 2 x the average and 2 x the maximum chunk size (the issue's "<= 2 x the chunk size")
// Shipped = stored bytes sent in PUTs (changesets, lists, packs); stored = the bucket's objects after the workload;
// twin fetched = changesets, lists and the pack bytes of the twin's ranged GETs.
// The embedded S3 server runs as its own process (`twinlayer s3`, from dist/: `npm run build` first), so its CPU does
// not share the bench's event loop.
// Usage: node --import tsx bench/chunking.ts [--only=append,edit,same40,new206,small,edits] [--pack-mib=16] [--tag=T]   (root: overlay mounts). Prints a table, writes
// bench/results/<date>-chunking[-T].json. The large files are pseudo-random (AES-CTR of zeros): they do not compress.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { avgChunkBytes, Chunker, maxChunkBytes, stageChangeset, UpperTracker } from '../src/changeset/index.js';
import { openChunkedCommit } from '../src/puller/chunked-commit.js';
import { downloadValidated } from '../src/puller/validated-download.js';
import { silentLogger } from '../src/log/logger.js';
import { uploadChunks } from '../src/pusher/chunk-upload.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { fillRandom } from './lib/random-file.js';
import { BUCKET, startS3Process } from './lib/s3.js';
import {
  asDigest, Bucket, PackStore, S3BlobStore, Signatures, SigningKey, type BlobStore, type CommitRecord, type BodyObserver, type GetOptions, type RangeOptions,
} from '../src/store/index.js';
import { defaultLimits } from '../src/changeset/limits.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const MB = 1_000_000;
const MiB = 1024 * 1024;

/** Counts the stored bytes of every PUT, and what each key holds now. */
class CountingStore implements BlobStore {
  sent = 0;
  /** Requests that send or fetch bytes (PUT, GET, ranged GET). */
  puts = 0;
  gets = 0;
  readonly sizes = new Map<string, number>();
  constructor(readonly inner: S3BlobStore) {}
  #note(key: string, n: number): void {
    this.puts++;
    this.sent += n;
    this.sizes.set(key, n);
  }
  async put(key: string, body: Buffer | { file: string }): Promise<void> {
    await this.inner.put(key, body);
    const { stat } = await import('node:fs/promises');
    this.#note(key, Buffer.isBuffer(body) ? body.length : (await stat(body.file)).size);
  }
  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    const ok = await this.inner.putIfAbsent(key, body);
    if (ok) this.#note(key, body.length);
    return ok;
  }
  async putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean> {
    const ok = await this.inner.putIfMatch(key, body, etag);
    if (ok) this.#note(key, body.length);
    return ok;
  }
  getBuffer(key: string, maxBytes: number): Promise<Buffer | null> { this.gets++; return this.inner.getBuffer(key, maxBytes); }
  getToFile(key: string, file: string, maxBytes?: number, opts?: GetOptions): Promise<boolean> { this.gets++; return this.inner.getToFile(key, file, maxBytes, opts); }
  getRangeToFile(key: string, start: number, length: number, file: string) { this.gets++; return this.inner.getRangeToFile(key, start, length, file); }
  observeRange(key: string, start: number, length: number, observe: BodyObserver, opts?: RangeOptions) { this.gets++; return this.inner.observeRange(key, start, length, observe, opts); }
  getIfNoneMatch(key: string, etag: string | undefined, maxBytes: number) { return this.inner.getIfNoneMatch(key, etag, maxBytes); }
  exists(key: string): Promise<boolean> { return this.inner.exists(key); }
  list(prefix: string, startAfter?: string): AsyncIterable<string> { return this.inner.list(prefix, startAfter); }
  delete(key: string): Promise<void> { return this.inner.delete(key); }
  listObjects(prefix: string, startAfter?: string) { return this.inner.listObjects(prefix, startAfter); }
  deleteMany(keys: readonly string[]): Promise<void> { return this.inner.deleteMany(keys); }
  stored(): number {
    let n = 0;
    for (const v of this.sizes.values()) n += v;
    return n;
  }
}

interface Overlay { lower: string; upper: string; work: string; merged: string }

async function overlay(base: string, name: string, lower: string): Promise<Overlay> {
  const o = { lower, upper: join(base, name, 'upper'), work: join(base, name, 'work'), merged: join(base, name, 'merged') };
  for (const d of [o.upper, o.work, o.merged]) await mkdir(d, { recursive: true });
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${o.upper},workdir=${o.work},redirect_dir=off,index=off,metacopy=off`, o.merged]);
  return o;
}

/** One container replicated to one twin upper dir, in one mode. */
class Pair {
  readonly tracker: UpperTracker;
  #first = true;
  #seq = 0;
  constructor(readonly env: Env, readonly name: string, readonly primary: Overlay, readonly twinUpper: string, chunked: boolean) {
    this.tracker = new UpperTracker({
      upperDir: primary.upper, workDir: join(env.base, name, 'push-work'),
      ...(chunked ? { chunking: { thresholdBytes: MiB, openSink: env.pushPacks.openSink } } : {}),
    });
  }

  /** Builds and uploads a commit; returns its record and the seconds it took. */
  async ship(): Promise<{ record: CommitRecord; s: number } | null> {
    const t = performance.now();
    const built = await this.tracker.build(this.#first ? 'full' : 'reconcile');
    if (built === null) return null;
    const c = built.chunks;
    const up = c === undefined ? undefined : await uploadChunks(c, this.env.bucket);
    await this.env.bucket.uploadBlob(built.file, asDigest(built.digest));
    this.tracker.commit(built);
    await rm(built.file, { force: true });
    if (c !== undefined) {
      await c.sink.abandon();
      await rm(c.spoolDir, { recursive: true, force: true });
    }
    this.#first = false;
    this.#seq++;
    const now = new Date().toISOString();
    const record = {
      version: 1, seq: this.#seq, parentSeq: this.#seq - 1, generation: 1, container: this.name, digest: asDigest(built.digest), size: built.size,
      kind: built.kind, counts: built.counts, firstWriteAt: now, publishedAt: now, writer: 'bench',
      ...(up === undefined ? {} : { chunks: up.declared }),
    } as CommitRecord;
    return { record, s: (performance.now() - t) / 1000 };
  }

  /** Downloads and stages a record into the twin's upper dir; the seconds it took. */
  async stage(record: CommitRecord): Promise<number> {
    const t = performance.now();
    const blob = join(this.env.base, this.name, `dl-${record.seq}`);
    // As the stager: the chunk list, then the blob hashed and validated as it downloads, then the apply.
    const chunked = await openChunkedCommit({ bucket: this.env.bucket, packs: this.env.pullPacks, limits: defaultLimits, indexDir: join(this.env.base, 'chunk-index') }, this.name, 'twin', record, blob);
    const target = { upperDir: this.twinUpper, tmpDir: join(this.env.base, this.name, 'twin-tmp') };
    const validated = await downloadValidated(this.env.bucket, record, blob, { kind: record.kind, target, limits: defaultLimits, chunks: chunked.stage?.list, log: silentLogger, signal: new AbortController().signal });
    const r = await stageChangeset(blob, record.kind, target, { ...(chunked.stage === undefined ? {} : { chunks: chunked.stage }), ...(validated === null ? {} : { validated }) });
    this.env.twinFetched += record.size + (record.chunks?.size ?? 0) + (r.chunks?.rangeBytes ?? 0);
    await chunked.adopt();
    await rm(blob, { force: true });
    return (performance.now() - t) / 1000;
  }

  async shipAndStage(): Promise<{ shipS: number; stageS: number }> {
    const r = await this.ship();
    if (r === null) throw new Error(`${this.name}: nothing to ship`);
    return { shipS: r.s, stageS: await this.stage(r.record) };
  }
}

interface Env { twinFetched: number; base: string; store: CountingStore; bucket: Bucket; pushPacks: PackStore; pullPacks: PackStore; lower: string; mounts: Overlay[] }

/** `--pack-mib=N`: the pusher's pack size (PackStore packBytes); default the pusher's. */
const packMiB = Number(process.argv.find((a) => a.startsWith('--pack-mib='))?.slice('--pack-mib='.length) ?? '16');

async function withEnv<T>(mode: string, fn: (env: Env) => Promise<T>): Promise<T> {
  const base = await mkdtemp(join(tmpdir(), `tl-bench-chunk-${mode}-`));
  await mkdir(join(base, 's3'), { recursive: true });
  const server = await startS3Process(join(base, 's3'));
  const s3 = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: server.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
  const store = new CountingStore(s3);
  const key = SigningKey.generate(null);
  const bucket = new Bucket(store, { prefix: 'twinlayer', group: 'bench', signatures: new Signatures({ signer: key, trusted: [key.trusted], acceptUnsigned: false }) });
  const lower = join(base, 'lower');
  await mkdir(join(lower, 'var/log'), { recursive: true });
  const env: Env = { twinFetched: 0, base, store, bucket, pushPacks: new PackStore(store, bucket.layout, { packBytes: packMiB * MiB }), pullPacks: new PackStore(store, bucket.layout), lower, mounts: [] };
  try {
    return await fn(env);
  } finally {
    for (const m of env.mounts) await run('umount', ['-l', m.merged]).catch(() => undefined);
    s3.destroy();
    await server.stop();
    await rm(base, { recursive: true, force: true });
  }
}

async function pair(env: Env, name: string, chunked: boolean): Promise<Pair> {
  const o = await overlay(env.base, name, env.lower);
  env.mounts.push(o);
  const twin = join(env.base, name, 'twin-upper');
  await mkdir(twin, { recursive: true });
  return new Pair(env, name, o, twin, chunked);
}

interface Row { workload: string; mode: string; commits: number; shippedBytes: number; storedBytes: number; twinFetchedBytes?: number; shipS?: number; stageS?: number; puts?: number; gets?: number }

async function appendWorkload(mode: string, chunked: boolean): Promise<Row> {
  return withEnv(mode, async (env) => {
    const p = await pair(env, 'log', chunked);
    const log = join(p.primary.merged, 'var/log/app.log');
    // 50 MB of log lines: a counter and random hex (about half the entropy of random bytes).
    const fh = await open(log, 'w');
    for (let n = 0, i = 0; n < 50 * MB; i++) {
      const line = Buffer.from(`${new Date(1_700_000_000_000 + i * 10).toISOString()} req=${i} ${randomBytes(40).toString('hex')}\n`);
      await fh.write(line);
      n += line.length;
    }
    await fh.close();
    await p.shipAndStage();
    const sentBefore = env.store.sent;
    const fetchedBefore = env.twinFetched;
    let commits = 0;
    let lastCommit = -1;
    for (let i = 0; i < 50; i++) {
      const a = await open(log, fsc.O_WRONLY | fsc.O_APPEND);
      await a.write(Buffer.from(`${'x'.repeat(90)} ${String(i).padStart(8, '0')}\n`));
      await a.close();
      const slot = Math.floor(((i + 1) * 14) / 50);
      if (slot !== lastCommit && slot > 0) {
        lastCommit = slot;
        await p.shipAndStage();
        commits++;
      }
    }
    return { workload: 'append 5 KB to a 50 MB log', mode, commits, shippedBytes: env.store.sent - sentBefore, storedBytes: env.store.stored(), twinFetchedBytes: env.twinFetched - fetchedBefore };
  });
}

async function editWorkload(mode: string, chunked: boolean): Promise<Row> {
  return withEnv(mode, async (env) => {
    const p = await pair(env, 'db', chunked);
    const file = join(p.primary.merged, 'data.db');
    await fillRandom(file, 206 * MB, 'edit');
    await p.shipAndStage();
    const sentBefore = env.store.sent;
    const fetchedBefore = env.twinFetched;
    const fh = await open(file, fsc.O_WRONLY);
    await fh.write(randomBytes(4096), 0, 4096, 103 * MB);
    await fh.close();
    const t = await p.shipAndStage();
    return { workload: '4 KiB edited in a 206 MB file', mode, commits: 1, shippedBytes: env.store.sent - sentBefore, storedBytes: env.store.stored(), twinFetchedBytes: env.twinFetched - fetchedBefore, ...t };
  });
}

async function same40Workload(mode: string, chunked: boolean): Promise<Row> {
  return withEnv(mode, async (env) => {
    const source = join(env.base, 'same.bin');
    await fillRandom(source, 20 * MB, 'same');
    const { readFile } = await import('node:fs/promises');
    const bytes = await readFile(source);
    for (let i = 0; i < 40; i++) {
      const p = await pair(env, `c${i}`, chunked);
      await writeFile(join(p.primary.merged, 'blob.bin'), bytes);
      await p.shipAndStage();
      await run('umount', [p.primary.merged]);
      env.mounts.pop();
      await rm(join(env.base, `c${i}`), { recursive: true, force: true });
    }
    return { workload: 'the same 20 MB file in 40 containers', mode, commits: 40, shippedBytes: env.store.sent, storedBytes: env.store.stored() };
  });
}

async function new206Workload(mode: string, chunked: boolean): Promise<Row> {
  return withEnv(mode, async (env) => {
    const p = await pair(env, 'new', chunked);
    await writeFile(join(p.primary.merged, 'seed'), 'x');
    await p.shipAndStage();
    const sentBefore = env.store.sent;
    await fillRandom(join(p.primary.merged, 'new.bin'), 206 * MB, 'new');
    const [puts, gets] = [env.store.puts, env.store.gets];
    const t = await p.shipAndStage();
    return { workload: '206 MB of new data', mode, commits: 1, shippedBytes: env.store.sent - sentBefore, storedBytes: env.store.stored(), ...t, puts: env.store.puts - puts, gets: env.store.gets - gets };
  });
}

async function smallWorkload(mode: string, chunked: boolean): Promise<Row> {
  return withEnv(mode, async (env) => {
    const p = await pair(env, 'small', chunked);
    const f = join(p.primary.merged, 'app.conf');
    await writeFile(f, randomBytes(4096));
    await p.shipAndStage();
    const sentBefore = env.store.sent;
    await writeFile(f, randomBytes(4096));
    const t = await p.shipAndStage();
    return { workload: '4 KiB change to a small file', mode, commits: 1, shippedBytes: env.store.sent - sentBefore, storedBytes: env.store.stored(), ...t };
  });
}

interface EditSpread {
  trials: number;
  /** Bytes of the chunks cut anew by one 4 KiB edit: quantiles and the largest. */
  bytes: { median: number; p90: number; p99: number; p999: number; max: number };
  /** How many edits cut 1, 2, ... new chunks. */
  chunksHistogram: Record<string, number>;
  /** Share of edits whose new chunks exceed 2 x the average chunk size, and 2 x the maximum. */
  over2xAvg: number;
  over2xMax: number;
}

/** The chunks of `buf` (digest -> size). */
async function cut(buf: Buffer): Promise<Map<string, number>> {
  const c = new Chunker();
  await c.update(buf);
  return new Map((await c.end()).map((k) => [k.digest, k.size]));
}

/** The chunker alone: what one 4 KiB edit in the middle of a file makes new, over many edits (deterministic). */
async function editSpread(trials: number): Promise<EditSpread> {
  const data = Buffer.alloc(6 * MiB);
  const sizes: number[] = [];
  const hist: Record<string, number> = {};
  for (let t = 0; t < trials; t++) {
    // Fresh pseudo-random data each trial (AES-CTR keyed by the trial), edited past the first 2 MiB: the cuts before
    // the edit are those of any file, and 4 MiB after it leave room for the cuts to come back in step.
    const cipher = createCipheriv('aes-256-ctr', createHashKey(`spread ${t}`), Buffer.alloc(16));
    cipher.update(data.fill(0)).copy(data);
    const before = await cut(data);
    const at = 2 * MiB + ((t * 7919) % MiB);
    cipher.update(Buffer.alloc(4096)).copy(data, at);
    const after = await cut(data);
    const fresh = [...after].filter(([d]) => !before.has(d)).map(([, n]) => n);
    sizes.push(fresh.reduce((a, b) => a + b, 0));
    hist[String(fresh.length)] = (hist[String(fresh.length)] ?? 0) + 1;
  }
  const sorted = [...sizes].sort((a, b) => a - b);
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  return {
    trials,
    bytes: { median: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: sorted.at(-1) ?? 0 },
    chunksHistogram: hist,
    over2xAvg: sizes.filter((n) => n > 2 * avgChunkBytes).length / trials,
    over2xMax: sizes.filter((n) => n > 2 * maxChunkBytes).length / trials,
  };
}

function createHashKey(seed: string): Buffer {
  return createHash('sha256').update(seed).digest();
}

const fmt = (n: number): string => (n >= MB ? `${(n / MB).toFixed(2)} MB` : `${(n / 1000).toFixed(1)} kB`);

async function main(): Promise<void> {
  const rows: Row[] = [];
  const all = { append: appendWorkload, edit: editWorkload, same40: same40Workload, new206: new206Workload, small: smallWorkload };
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
  if (process.getuid?.() !== 0 && Object.keys(all).some((id) => only === undefined || only.includes(id))) throw new Error('bench/chunking.ts needs root (overlay mounts)');
  let spread: EditSpread | undefined;
  if (only === undefined || only.includes('edits')) {
    const trials = Number(process.argv.find((a) => a.startsWith('--edit-trials='))?.slice('--edit-trials='.length) ?? 2000);
    if (!Number.isSafeInteger(trials) || trials < 1) throw new Error(`--edit-trials: expected a positive integer, got ${trials}`);
    spread = await editSpread(trials);
    const b = spread.bytes;
    console.log(`4 KiB edits, chunker alone (${trials}): new chunk bytes median ${fmt(b.median)}, p90 ${fmt(b.p90)}, p99 ${fmt(b.p99)}, p99.9 ${fmt(b.p999)}, max ${fmt(b.max)}; over 2 x avg (${fmt(2 * avgChunkBytes)}) ${(spread.over2xAvg * 100).toFixed(2)} %, over 2 x max (${fmt(2 * maxChunkBytes)}) ${(spread.over2xMax * 100).toFixed(3)} %; new chunks per edit ${JSON.stringify(spread.chunksHistogram)}`);
  }
  for (const [id, w] of Object.entries(all)) {
    if (only !== undefined && !only.includes(id)) continue;
    for (const [mode, chunked] of [['whole', false], ['chunks', true]] as const) {
      const r = await w(mode, chunked);
      rows.push(r);
      console.log(`${r.workload.padEnd(38)} ${mode.padEnd(6)} commits ${String(r.commits).padStart(2)}  shipped ${fmt(r.shippedBytes).padStart(10)}  stored ${fmt(r.storedBytes).padStart(10)}${r.twinFetchedBytes === undefined ? '' : `  twin fetched ${fmt(r.twinFetchedBytes)}`}${r.shipS === undefined ? '' : `  ship ${r.shipS.toFixed(2)} s  stage ${(r.stageS ?? 0).toFixed(2)} s`}${r.puts === undefined ? '' : `  PUTs ${r.puts} GETs ${r.gets}`}`);
    }
  }
  const tag = process.argv.find((a) => a.startsWith('--tag='))?.slice('--tag='.length);
  const out = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-chunking${tag === undefined ? '' : `-${tag}`}.json`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, packMiB, rows, ...(spread === undefined ? {} : { editSpread: spread }) }, null, 1) + '\n');
  console.log(`wrote ${out}`);
}

await main();
