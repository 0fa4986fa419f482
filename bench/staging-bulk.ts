// bench/staging.ts --bulk: one commit of a ~200 MB incompressible file, from the bucket to staged, per revision of
// src/: the blob downloaded from the embedded S3 server (its own process, 127.0.0.1), checked, validated and applied
// in process, as the stager does it (a revision with downloadValidated validates while downloading; an older one
// downloads, hashes, validates and applies, each a pass over the file). Per run: wall time, the bytes this process
// read (/proc/self/io rchar: the download's socket reads and every read of a file) per byte staged, and how far the
// RSS rose above where the run began (VmHWM, reset before each run through /proc/self/clear_refs, less VmRSS then). The GetObject floor: the same GET
// into a file, nothing else.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { BUCKET, startS3Process } from './lib/s3.js';
import { summarize, type Summary } from './lib/stats.js';

type Kind = 'full' | 'delta';
interface Target { upperDir: string; tmpDir: string }
interface StoreModule {
  S3BlobStore: new (o: { bucket: string; region: string; endpoint: string; pathStyle: boolean; credentials: { accessKeyId: string; secretAccessKey: string } }) => {
    put(key: string, body: { file: string }): Promise<void>;
    getToFile(key: string, file: string): Promise<boolean>;
  };
  Bucket: new (store: unknown, o: { prefix: string; group: string; signatures: unknown }) => {
    blobKey(digest: string): string;
    downloadBlob(digest: string, size: number, file: string): Promise<void>;
  };
  Signatures: new (o: { signer: unknown; trusted: unknown[]; acceptUnsigned: boolean }) => unknown;
  SigningKey: { generate(host: null): { trusted: unknown } };
}
interface Record { digest: string; size: number; kind: Kind; counts: { files: number; deletions: number; bytes: number } }
interface PullerModule {
  downloadValidated?: (bucket: unknown, record: Record & { seq: number }, file: string, o: { kind: Kind; target: Target; limits: unknown; log: unknown; signal: AbortSignal }) => Promise<unknown>;
}
interface ChangesetModule {
  stageChangeset(blob: string, kind: Kind, target: Target, opts?: { validated?: unknown }): Promise<unknown>;
  defaultLimits: unknown;
  UpperTracker: new (o: { upperDir: string; workDir: string; excludes?: string[] }) => {
    build(scope: 'full' | 'reconcile'): Promise<{ file: string; kind: Kind; digest: string; size: number; counts: Record['counts'] } | null>;
    commit(b: unknown): void;
  };
}
export interface BulkResult {
  src: string;
  /** Bucket → staged, and the part until the download (with hashing, and validation when streamed) returned. */
  ms: Summary;
  downloadMs: Summary;
  readPerByte: Summary;
  /** The run's peak RSS above the RSS it started with (the bench's own buffers and both revisions' modules are not counted). */
  rssGrowthMb: Summary;
  streamed: boolean;
}

const run = promisify(execFile);
const MB = 1e6;
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => silent };

async function procIo(): Promise<number> {
  const m = /^rchar: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'));
  if (m?.[1] === undefined) throw new Error('no rchar in /proc/self/io');
  return Number(m[1]);
}

/** VmRSS (now) or VmHWM (the peak since the last reset) of this process, in MB. */
async function rssMb(field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(await readFile('/proc/self/status', 'utf8'));
  if (m?.[1] === undefined) throw new Error(`no ${field} in /proc/self/status`);
  return Math.round(Number(m[1]) / 1024);
}

/** Writes `bytes` of random data in 8 MiB pieces (memory stays small). */
async function writeRandom(file: string, bytes: number): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (let at = 0; at < bytes; at += 8 << 20) await fh.write(randomBytes(Math.min(8 << 20, bytes - at)));
  } finally {
    await fh.close();
  }
}

export async function runBulk(revisions: ReadonlyArray<{ label: string; dir: string }>, base: string, s3Dir: string, runs: number, fileMb: number): Promise<{ results: BulkResult[]; floorMs: Summary; blobBytes: number; fileBytes: number }> {
  const srcs = await Promise.all(revisions.map(async (s) => ({ ...s, cs: (await import(pathToFileURL(join(s.dir, 'changeset', 'index.ts')).href)) as ChangesetModule })));
  const first = srcs[0];
  if (first === undefined) throw new Error('no src');
  const upper = join(base, 'primary', 'bulk', 'upper');
  await mkdir(upper, { recursive: true });
  await mkdir(join(base, 'primary', 'bulk', 'work'), { recursive: true });
  await mkdir(join(upper, 'data'));
  const tracker = new first.cs.UpperTracker({ upperDir: upper, workDir: join(base, 'primary', 'bulk', 'work'), excludes: [] });
  const full = await tracker.build('full');
  if (full === null) throw new Error('nothing built');
  tracker.commit(full);
  const seed = join(base, 'seeds', 'bulk');
  await mkdir(seed, { recursive: true });
  await first.cs.stageChangeset(full.file, 'full', { upperDir: seed, tmpDir: join(base, 'seeds', 'bulk-tmp') });
  const fileBytes = Math.round(fileMb * MB);
  await writeRandom(join(upper, 'data', 'big.bin'), fileBytes);
  const built = await tracker.build('reconcile');
  if (built === null) throw new Error('nothing built');
  const record: Record & { seq: number } = { seq: 2, digest: built.digest, size: built.size, kind: built.kind, counts: built.counts };

  const server = await startS3Process(s3Dir);
  try {
    const mods = await Promise.all(srcs.map(async (s) => {
      const st = (await import(pathToFileURL(join(s.dir, 'store', 'index.ts')).href)) as StoreModule;
      const pl = (await import(pathToFileURL(join(s.dir, 'puller', 'index.ts')).href)) as PullerModule;
      const store = new st.S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: server.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
      const key = st.SigningKey.generate(null);
      const bucket = new st.Bucket(store, { prefix: 'bench', group: 'bulk', signatures: new st.Signatures({ signer: key, trusted: [key.trusted], acceptUnsigned: false }) });
      return { ...s, store, bucket, pl };
    }));
    const m0 = mods[0]!;
    await m0.store.put(m0.bucket.blobKey(record.digest), { file: built.file });
    await rm(built.file, { force: true });
    const twins = new Map<string, string>();
    for (const m of mods) {
      const twin = join(base, 'twins', `bulk-${m.label}`);
      await mkdir(join(base, 'twins'), { recursive: true });
      await run('cp', ['-a', seed, twin]);
      twins.set(m.label, twin);
    }
    const samples = new Map(mods.map((m) => [m.label, { ms: [] as number[], download: [] as number[], read: [] as number[], rss: [] as number[] }]));
    const floor: number[] = [];
    const blob = join(base, 'bulk.dl');
    for (let r = -1; r < runs; r++) {
      // The floor: one GET into a file.
      const f0 = performance.now();
      if (!(await m0.store.getToFile(m0.bucket.blobKey(record.digest), blob))) throw new Error('blob missing');
      if (r >= 0) floor.push(performance.now() - f0);
      await rm(blob, { force: true });
      for (const m of mods) {
        const target = { upperDir: twins.get(m.label)!, tmpDir: `${twins.get(m.label)!}-tmp` };
        global.gc?.();
        await writeFile('/proc/self/clear_refs', '5');
        const read0 = await procIo();
        const rss0 = await rssMb('VmRSS');
        const t0 = performance.now();
        let tDownloaded: number;
        if (m.pl.downloadValidated !== undefined) {
          const validated = await m.pl.downloadValidated(m.bucket, record, blob, { kind: record.kind, target, limits: m.cs.defaultLimits, log: silent, signal: new AbortController().signal });
          tDownloaded = performance.now();
          await m.cs.stageChangeset(blob, record.kind, target, validated === null ? {} : { validated });
        } else {
          await m.bucket.downloadBlob(record.digest, record.size, blob);
          tDownloaded = performance.now();
          await m.cs.stageChangeset(blob, record.kind, target);
        }
        const t1 = performance.now();
        const read = (await procIo()) - read0;
        const rss = (await rssMb('VmHWM')) - rss0;
        await rm(blob, { force: true });
        if ((await stat(join(target.upperDir, 'data', 'big.bin'))).size !== fileBytes) throw new Error(`${m.label}: the file was not staged whole`);
        if (r < 0) continue;
        const s = samples.get(m.label)!;
        s.ms.push(t1 - t0);
        s.download.push(tDownloaded - t0);
        s.read.push(read / fileBytes);
        s.rss.push(rss);
      }
    }
    const results = mods.map((m) => {
      const s = samples.get(m.label)!;
      return { src: m.label, ms: summarize(s.ms), downloadMs: summarize(s.download), readPerByte: summarize(s.read), rssGrowthMb: summarize(s.rss), streamed: m.pl.downloadValidated !== undefined };
    });
    return { results, floorMs: summarize(floor), blobBytes: record.size, fileBytes };
  } finally {
    await server.stop();
  }
}
