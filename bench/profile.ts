// Where the time of a bulk sync goes: the pusher's and the puller's steps run one by one, in process, on one
// changed file of the given size (random bytes, as in the bulk workload), against the bench's S3 server.
// Used by run.ts for the report; also runnable alone: node --import tsx bench/profile.ts [MB ...]
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { stageChangeset, UpperTracker } from '../src/changeset/index.js';
import { gzipAndHash } from '../src/changeset/tar-writer.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { asDigest, Bucket, S3BlobStore } from '../src/store/index.js';
import { BUCKET, S3Floors, startS3Process } from './lib/s3.js';
import { testSignatures } from '../test/support/signing.js';

export interface BulkProfile {
  bytes: number;
  /** Pusher: UpperTracker.build (read file -> temp tar -> gzip (level by sampling) + sha256 -> .tar.gz). */
  buildMs: number;
  /** Of which: the pusher's gzip step (gzipAndHash: level chosen by sampling) + sha256 alone. */
  gzipHashMs: number;
  /** A plain copy of the same bytes (the disk's share of build). */
  copyMs: number;
  /** Pusher: Bucket.uploadBlob (HEAD + PutObject of the .tar.gz). */
  uploadMs: number;
  /** Puller: Bucket.downloadBlob (GetObject to a file + sha256 check). */
  downloadMs: number;
  /** Puller: stageChangeset (gunzip + untar into a temp file, fsync, rename into the upper dir). */
  stageMs: number;
  /** One PutObject of the raw bytes (the floor). */
  floorPutMs: number;
}

async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: Math.round(performance.now() - t0), value };
}

export async function profileBulk(endpoint: string, baseDir: string, bytes: number): Promise<BulkProfile> {
  const dir = await mkdtemp(join(baseDir, 'profile-'));
  const store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
  const floor = new S3Floors(endpoint);
  try {
    const upper = join(dir, 'upper');
    const twin = join(dir, 'twin');
    await mkdir(join(upper, 'payload'), { recursive: true });
    await mkdir(twin);
    const raw = join(upper, 'payload', 'blob.bin');
    await writeFile(raw, randomBytes(bytes));
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(dir, 'work'), excludes: [] });
    const build = await timed(() => tracker.build('full'));
    const built = build.value;
    if (built === null) throw new Error('profile: nothing built');
    // The pusher's own compression step (level chosen by sampling: 0 for this random payload) on the same bytes.
    const gz = await timed(async () => (await gzipAndHash(raw, join(dir, 'gz-only'))).digest);
    const copy = await timed(() => pipeline(createReadStream(raw), createWriteStream(join(dir, 'copy-only'))));
    await rm(join(dir, 'gz-only'));
    await rm(join(dir, 'copy-only'));
    const bucket = new Bucket(store, { signatures: testSignatures(), prefix: `profile-${randomBytes(4).toString('hex')}`, group: 'p' });
    const digest = asDigest(built.digest);
    const upload = await timed(() => bucket.uploadBlob(built.file, digest));
    const blob = join(dir, 'blob.tar.gz');
    const download = await timed(() => bucket.downloadBlob(digest, built.size, blob));
    const stage = await timed(() => stageChangeset(blob, 'full', { upperDir: twin, tmpDir: join(dir, 'stage-tmp') }));
    const floorPut = await floor.putFile(raw);
    return { bytes, buildMs: build.ms, gzipHashMs: gz.ms, copyMs: copy.ms, uploadMs: upload.ms, downloadMs: download.ms, stageMs: stage.ms, floorPutMs: Math.round(floorPut) };
  } finally {
    store.destroy();
    floor.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const base = await mkdtemp(join('/tmp', 'tlb-profile-'));
  const s3 = await startS3Process(join(base, 's3'));
  try {
    for (const mb of (process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['46', '206']).map(Number)) {
      process.stdout.write(JSON.stringify(await profileBulk(s3.endpoint, base, mb * 1_000_000)) + '\n');
    }
  } finally {
    await s3.stop();
    await rm(base, { recursive: true, force: true });
  }
}
