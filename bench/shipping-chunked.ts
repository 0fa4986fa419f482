// Where a new 206 MB file's time goes on the primary, from the build's start to the commit's objects durable in the
// bucket (issue 13 item 4): one commit whose file ships as content-defined chunks in packs (the pusher's default: 1 MiB
// threshold, 16 MiB packs, 4 pack uploads in flight), built by the pusher's UpperTracker from a plain upper dir and
// uploaded to the embedded S3 server (its own process, 127.0.0.1). Per run, a fresh upper dir with a new file (other
// bytes each run: every chunk is new to the bucket) and a fresh pack store (nothing known). The parts:
//   build     UpperTracker.build: read, chunk, hash, pack; the packs go up while it runs (until it returns)
//   finish    the packs still in flight and the chunk list uploaded (uploadChunks)
//   blob      the changeset (a few hundred bytes here) uploaded
//   total     build start → all of the commit's objects in the bucket
// and the floor: one PutObject of the same file (run right after, same server). Also the process's RSS at most
// during the run (sampled every 20 ms) and the pack store's peak packs in memory.
// Usage: node --import tsx bench/shipping-chunked.ts [--runs=5] [--mb=206] [--tag=T]   (needs dist/: `npm run build`).
// Prints a line per run and the medians; writes bench/results/<date>-shipping-chunked[-T].json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { UpperTracker } from '../src/changeset/index.js';
import { uploadChunks } from '../src/pusher/chunk-upload.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { asDigest, Bucket, PackStore, S3BlobStore, Signatures, SigningKey } from '../src/store/index.js';
import { BUCKET, S3Floors, startS3Process } from './lib/s3.js';
import { fillRandom } from './lib/random-file.js';
import { summarize, type Summary } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const MB = 1_000_000;
const MiB = 1024 * 1024;
const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const runs = Number(arg('runs') ?? 5);
const fileMb = Number(arg('mb') ?? 206);

interface Parts { buildMs: number; finishMs: number; blobMs: number; totalMs: number; floorPutMs: number; peakRssMB: number; peakPacksInMemory: number; packs: number }

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'tl-bench-shipping-chunked-'));
  const server = await startS3Process(join(base, 's3'));
  const s3 = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: server.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
  const floor = new S3Floors(server.endpoint);
  try {
    const key = SigningKey.generate(null);
    const bucket = new Bucket(s3, { prefix: 'twinlayer', group: 'bench', signatures: new Signatures({ signer: key, trusted: [key.trusted], acceptUnsigned: false }) });
    const samples: Parts[] = [];
    for (let r = -1; r < runs; r++) {
      const dir = join(base, `run-${r + 1}`);
      const upper = join(dir, 'upper');
      await mkdir(join(upper, 'data'), { recursive: true });
      await writeFile(join(upper, 'seed'), 'x');
      const bigFile = join(upper, 'data', 'big.bin');
      await fillRandom(bigFile, fileMb * MB, `run ${r + 1}`);
      const packs = new PackStore(s3, bucket.layout);
      const tracker = new UpperTracker({ upperDir: upper, workDir: join(dir, 'work'), chunking: { thresholdBytes: MiB, openSink: packs.openSink } });
      global.gc?.();
      const rss0 = process.memoryUsage.rss();
      let peak = rss0;
      const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 20);
      const t0 = performance.now();
      const built = await tracker.build('full');
      if (built === null || built.chunks === undefined) throw new Error('nothing chunked was built');
      const t1 = performance.now();
      await uploadChunks(built.chunks, bucket);
      const t2 = performance.now();
      await bucket.uploadBlob(built.file, asDigest(built.digest));
      const t3 = performance.now();
      clearInterval(sampler);
      peak = Math.max(peak, process.memoryUsage.rss());
      await built.chunks.sink.abandon();
      const floorPutMs = await floor.putFile(bigFile);
      await rm(dir, { recursive: true, force: true });
      if (r < 0) continue;
      const s: Parts = {
        buildMs: t1 - t0, finishMs: t2 - t1, blobMs: t3 - t2, totalMs: t3 - t0, floorPutMs, peakRssMB: peak / MB,
        peakPacksInMemory: packs.stats.peakPacksInMemory, packs: packs.stats.packs,
      };
      samples.push(s);
      console.log(`run ${r + 1}: build ${s.buildMs.toFixed(0)} ms  finish ${s.finishMs.toFixed(0)}  blob ${s.blobMs.toFixed(0)}  total ${s.totalMs.toFixed(0)}  floor PUT ${floorPutMs.toFixed(0)}  (packs ${s.packs}, at most ${s.peakPacksInMemory} in memory; RSS ${(rss0 / MB).toFixed(0)} → peak ${s.peakRssMB.toFixed(0)} MB)`);
    }
    const parts: Record<string, Summary> = {};
    for (const k of ['buildMs', 'finishMs', 'blobMs', 'totalMs', 'floorPutMs', 'peakRssMB'] as const) parts[k] = summarize(samples.map((s) => s[k]));
    console.log(`median of ${runs}: ${Object.entries(parts).map(([k, s]) => `${k} ${s.median.toFixed(0)}`).join('  ')}  → total / floor PUT ${(parts['totalMs']!.median / parts['floorPutMs']!.median).toFixed(2)}`);
    const tag = arg('tag');
    const out = join(here, 'results', `${new Date().toISOString().slice(0, 10)}-shipping-chunked${tag === undefined ? '' : `-${tag}`}.json`);
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, fileMb, runs, parts, samples }, null, 1) + '\n');
    console.log(`wrote ${out}`);
  } finally {
    floor.destroy();
    s3.destroy();
    await server.stop();
    await rm(base, { recursive: true, force: true });
  }
}

await main();
