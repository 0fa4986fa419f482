// Where a new 206 MB file's time goes on the standby, from the bucket to staged (issue 13): one commit whose file
// ships as content-defined chunks in packs (the pusher's default: 1 MiB threshold, 16 MiB packs), built by the
// pusher's UpperTracker from a plain upper dir, uploaded to the embedded S3 server (its own process, 127.0.0.1), and
// staged into a fresh copy of the twin's upper dir as the stager does it. Per run, the parts:
//   list      the chunk list fetched and parsed (openChunkedCommit)
//   blob      the changeset blob downloaded, hashed and validated (downloadValidated)
//   gather    the packs' ranged GETs, each chunk inflated and checked, until the first write (stageChangeset's beforeWrite)
//   apply     the entries written into the twin and the file system synced, until the commit is recorded (record)
//   total     bucket → staged
// and the floor: one GetObject of the same 206 MB (one object) into a file. The chunk index is empty each run: every
// chunk is fetched. Usage: node --import tsx bench/staging-chunked.ts [--runs=5] [--mb=206] [--tag=T]
// (needs dist/: `npm run build`). Prints a table, writes bench/results/<date>-staging-chunked[-T].json.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stageChangeset, UpperTracker, type ChunkOut, type PackRange } from '../src/changeset/index.js';
import { defaultLimits } from '../src/changeset/limits.js';
import { silentLogger } from '../src/log/logger.js';
import { openChunkedCommit } from '../src/puller/chunked-commit.js';
import { downloadValidated } from '../src/puller/validated-download.js';
import { uploadChunks } from '../src/pusher/chunk-upload.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { asDigest, Bucket, PackStore, S3BlobStore, Signatures, SigningKey, type CommitRecord } from '../src/store/index.js';
import { BUCKET, startS3Process } from './lib/s3.js';
import { fillRandom } from './lib/random-file.js';
import { summarize, type Summary } from './lib/stats.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const MB = 1_000_000;
const MiB = 1024 * 1024;
const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const runs = Number(arg('runs') ?? 5);
const fileMb = Number(arg('mb') ?? 206);

interface Parts { listMs: number; blobMs: number; gatherMs: number; applyMs: number; totalMs: number; fetches: number; maxInFlight: number }

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'tl-bench-staging-chunked-'));
  const server = await startS3Process(join(base, 's3'));
  const s3 = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: server.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
  try {
    const key = SigningKey.generate(null);
    const bucket = new Bucket(s3, { prefix: 'twinlayer', group: 'bench', signatures: new Signatures({ signer: key, trusted: [key.trusted], acceptUnsigned: false }) });
    const pushPacks = new PackStore(s3, bucket.layout);
    const pullPacks = new PackStore(s3, bucket.layout);
    const upper = join(base, 'primary', 'upper');
    await mkdir(join(upper, 'data'), { recursive: true });
    await writeFile(join(upper, 'seed'), 'x');
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'primary', 'work'), chunking: { thresholdBytes: MiB, openSink: pushPacks.openSink } });
    let seq = 0;
    const ship = async (scope: 'full' | 'reconcile'): Promise<{ record: CommitRecord; file: string }> => {
      const built = await tracker.build(scope);
      if (built === null) throw new Error('nothing built');
      const up = built.chunks === undefined ? undefined : await uploadChunks(built.chunks, bucket);
      await bucket.uploadBlob(built.file, asDigest(built.digest));
      tracker.commit(built);
      if (built.chunks !== undefined) {
        await built.chunks.sink.abandon();
        await rm(built.chunks.spoolDir, { recursive: true, force: true });
      }
      seq++;
      const now = new Date().toISOString();
      const record = {
        version: 1, seq, parentSeq: seq - 1, generation: 1, container: 'bulk', digest: asDigest(built.digest), size: built.size,
        kind: built.kind, counts: built.counts, firstWriteAt: now, publishedAt: now, writer: 'bench', ...(up === undefined ? {} : { chunks: up.declared }),
      } as CommitRecord;
      return { record, file: built.file };
    };
    const seedTwin = join(base, 'seed-twin', 'upper');
    await mkdir(seedTwin, { recursive: true });
    const first = await ship('full');
    await stageChangeset(first.file, 'full', { upperDir: seedTwin, tmpDir: join(base, 'seed-twin', 'tmp') });
    await rm(first.file, { force: true });
    const bigFile = join(upper, 'data', 'big.bin');
    await fillRandom(bigFile, fileMb * MB, 'bulk');
    const { record, file } = await ship('reconcile');
    await rm(file, { force: true });
    // The floor's object: the same bytes as one object.
    await s3.put('floor/big.bin', { file: bigFile });

    const samples: Parts[] = [];
    const floor: number[] = [];
    for (let r = -1; r < runs; r++) {
      const f0 = performance.now();
      if (!(await s3.getToFile('floor/big.bin', join(base, 'floor.dl')))) throw new Error('floor object missing');
      const floorMs = performance.now() - f0;
      await rm(join(base, 'floor.dl'), { force: true });
      const twin = join(base, `twin-${r + 1}`);
      await run('cp', ['-a', join(base, 'seed-twin'), twin]);
      await run('sync', ['-f', twin]);
      const blob = join(base, 'blobs', `${record.digest}.${r + 1}`);
      await mkdir(dirname(blob), { recursive: true });
      const target = { upperDir: join(twin, 'upper'), tmpDir: join(twin, 'tmp') };
      let inFlight = 0;
      let maxInFlight = 0;
      let fetches = 0;
      const t0 = performance.now();
      const chunked = await openChunkedCommit({ bucket, packs: pullPacks, limits: defaultLimits, indexDir: join(twin, 'chunk-index') }, 'bulk', 'twin', record, blob);
      const t1 = performance.now();
      const validated = await downloadValidated(bucket, record, blob, { kind: record.kind, target, limits: defaultLimits, chunks: chunked.stage?.list, log: silentLogger, signal: new AbortController().signal });
      const t2 = performance.now();
      let t3 = 0;
      let t4 = 0;
      const stage = chunked.stage === undefined ? undefined : {
        ...chunked.stage,
        fetch: async (range: PackRange, out: ChunkOut) => {
          fetches++;
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          try {
            return await chunked.stage!.fetch(range, out);
          } finally {
            inFlight--;
          }
        },
      };
      await stageChangeset(blob, record.kind, target, {
        ...(stage === undefined ? {} : { chunks: stage }), ...(validated === null ? {} : { validated }),
        beforeWrite: () => { t3 = performance.now(); return Promise.resolve(); },
        record: () => { t4 = performance.now(); return Promise.resolve(); },
      });
      const t5 = performance.now();
      await rm(blob, { force: true });
      await rm(twin, { recursive: true, force: true });
      if (r < 0) continue;
      floor.push(floorMs);
      samples.push({ listMs: t1 - t0, blobMs: t2 - t1, gatherMs: t3 - t2, applyMs: t4 - t3, totalMs: t5 - t0, fetches, maxInFlight });
      console.log(`run ${r + 1}: list ${(t1 - t0).toFixed(0)} ms  blob ${(t2 - t1).toFixed(0)}  gather ${(t3 - t2).toFixed(0)}  apply ${(t4 - t3).toFixed(0)}  total ${(t5 - t0).toFixed(0)}  floor GET ${floorMs.toFixed(0)}  (ranged GETs ${fetches}, at most ${maxInFlight} at once)`);
    }
    const parts: Record<string, Summary> = {};
    for (const k of ['listMs', 'blobMs', 'gatherMs', 'applyMs', 'totalMs'] as const) parts[k] = summarize(samples.map((s) => s[k]));
    const floorMs = summarize(floor);
    console.log(`median of ${runs}: ${Object.entries(parts).map(([k, s]) => `${k} ${s.median.toFixed(0)}`).join('  ')}  floor GET ${floorMs.median.toFixed(0)} ms  → total / floor ${(parts['totalMs']!.median / floorMs.median).toFixed(2)}`);
    const tag = arg('tag');
    const out = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-staging-chunked${tag === undefined ? '' : `-${tag}`}.json`);
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, fileMb, runs, parts, floorMs, samples }, null, 1) + '\n');
    console.log(`wrote ${out}`);
  } finally {
    s3.destroy();
    await server.stop();
    await rm(base, { recursive: true, force: true });
  }
}

await main();
