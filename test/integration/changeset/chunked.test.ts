// Large files shipped as content-defined chunks (issue 10), through the embedded S3 server: the primary writes
// through a real overlay mount, the UpperTracker builds with chunking, chunks, list and changeset go to the bucket as
// the pusher sends them; the standby fetches the list as the puller does (openChunkedCommit), stages into the upper
// dir of a second overlay over the same lower dir (unmounted while staging), and the merged views must be equal
// byte for byte. Bytes uploaded and chunk downloads are counted at the store. Hostile chunk lists are refused with
// nothing written. Root only (overlayfs).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  ChangesetRejectedError, defaultLimits, encodeChunkList, maxChunkBytes, stageChangeset, summarize, UpperTracker, type BuiltChangeset, type ChunkedFile, type ChunkList,
} from '../../../src/changeset/index.js';
import { openChunkedCommit } from '../../../src/puller/chunked-commit.js';
import { asDigest, BlobDigestMismatchError, ChunkStore, type Bucket, type CommitRecord, type S3BlobStore } from '../../../src/store/index.js';
import { diffTrees, makeOverlayDirs, mountOverlay, requireRoot, snapshotTree, unmountOverlay, unmountQuietly, type OverlayDirs } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor } from '../puller/helpers.js';
import { WrappedStore } from '../store/helpers.js';

const MiB = 1024 * 1024;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describe('large files in chunks, primary overlay to twin overlay through the bucket', { timeout: 300_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let primary: OverlayDirs;
  let twin: OverlayDirs;
  let pushBucket: Bucket;
  let pullBucket: Bucket;
  let pullStore: WrappedStore;
  let pushChunks: ChunkStore;
  let pullChunks: ChunkStore;
  let tracker: UpperTracker;
  let first = true;
  let seq = 0;
  const stateDir = (): string => join(base, 'state');

  interface Shipped { record: CommitRecord; uploaded: number; built: BuiltChangeset }

  /** Builds, uploads what the bucket lacks (chunks, list, changeset) as the pusher does; counts the bytes sent. */
  async function ship(): Promise<Shipped> {
    const built = await tracker.build(first ? 'full' : 'reconcile');
    assert.ok(built !== null, 'something to ship');
    const before = pushChunks.stats.uploadedBytes;
    let uploaded = built.size;
    const c = built.chunks;
    if (c !== undefined) {
      await pushChunks.ensureAll(c.spool);
      await pushBucket.uploadBlob(c.file, asDigest(c.digest));
      uploaded += c.size;
    }
    await pushBucket.uploadBlob(built.file, asDigest(built.digest));
    uploaded += pushChunks.stats.uploadedBytes - before;
    tracker.commit(built);
    seq++;
    const record: CommitRecord = {
      version: 1, seq: seq as CommitRecord['seq'], parentSeq: (seq - 1) as CommitRecord['parentSeq'], generation: 1 as CommitRecord['generation'],
      container: 'web', digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts,
      firstWriteAt: new Date().toISOString(), publishedAt: new Date().toISOString(), writer: 'a',
      ...(c === undefined ? {} : { chunks: { digest: asDigest(c.digest), size: c.size, ...summarize(c.list) } }),
    };
    first = false;
    await rm(built.file, { force: true });
    if (c !== undefined) {
      await rm(c.file, { force: true });
      await rm(c.spoolDir, { recursive: true, force: true });
    }
    return { record, uploaded, built };
  }

  /** Stages a record into the twin's upper dir as the puller does; returns the chunk GETs it made. */
  async function stage(record: CommitRecord): Promise<number> {
    const readsBefore = pullStore.keysRead.filter((k) => k.includes('/chunks/')).length;
    const blob = join(base, 'dl', `${record.digest}.${record.seq}`);
    await mkdir(join(base, 'dl'), { recursive: true });
    await pullBucket.downloadBlob(record.digest, record.size, blob);
    try {
      const chunked = await openChunkedCommit({ bucket: pullBucket, chunks: pullChunks, limits: defaultLimits, indexDir: join(stateDir(), 'chunk-index') }, 'web', 'twin-1', record, blob);
      await stageChangeset(blob, record.kind, { upperDir: twin.upper, tmpDir: join(base, 'twin-tmp') }, {
        declared: { ...record.counts, size: record.size }, ...(chunked.stage === undefined ? {} : { chunks: chunked.stage }),
      });
      await chunked.adopt();
    } finally {
      await rm(blob, { force: true });
    }
    return pullStore.keysRead.filter((k) => k.includes('/chunks/')).length - readsBefore;
  }

  /** The twin's merged view equals the primary's, every file's bytes included. */
  async function assertEqual(): Promise<void> {
    await mountOverlay(twin);
    try {
      const diffs = diffTrees(await snapshotTree(primary.merged), await snapshotTree(twin.merged));
      assert.deepEqual(diffs, []);
    } finally {
      await unmountOverlay(twin);
    }
  }

  const at = (rel: string): string => join(primary.merged, rel);

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-chunked-');
    const lower = join(base, 'lower');
    await mkdir(join(lower, 'var/log'), { recursive: true });
    await writeFile(join(lower, 'etc.conf'), 'lower\n');
    primary = await makeOverlayDirs(base, 'a', lower);
    twin = await makeOverlayDirs(base, 'b', lower);
    await mountOverlay(primary);
    s3 = await withS3();
    store = testS3Store(s3);
    pushBucket = bucketFor(store, 'chunked');
    pullStore = new WrappedStore(store);
    pullBucket = bucketFor(pullStore, 'chunked');
    pushChunks = new ChunkStore(store, pushBucket.layout);
    pullChunks = new ChunkStore(pullStore, pullBucket.layout);
    tracker = new UpperTracker({ upperDir: primary.upper, workDir: join(base, 'work'), chunking: { thresholdBytes: MiB, known: pushChunks.known } });
  });

  after(async () => {
    if (primary !== undefined) await unmountQuietly(primary);
    if (twin !== undefined) await unmountQuietly(twin);
    store?.destroy();
    await s3?.close();
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it('ships a new large file in chunks and a small one whole; the twin gets both byte for byte', async () => {
    await writeFile(at('var/log/app.log'), randomBytes(8 * MiB));
    await writeFile(at('etc.conf'), 'small\n');
    const s = await ship();
    assert.equal(s.built.chunks?.list.files.map((f) => f.path).join(), 'var/log/app.log');
    assert.ok(s.built.counts.bytes < 1024, 'the large file is not in the tar');
    await stage(s.record);
    await assertEqual();
  });

  it('an append ships the tail chunk; the twin fetches only what it lacks', async () => {
    const fh = await open(at('var/log/app.log'), fsc.O_WRONLY | fsc.O_APPEND);
    await fh.write(randomBytes(5000));
    await fh.close();
    const s = await ship();
    assert.ok(s.uploaded <= 2 * maxChunkBytes + 64 * 1024, `an append of 5000 bytes uploaded ${s.uploaded} bytes`);
    const gets = await stage(s.record);
    assert.ok(gets <= 2, `the twin fetched ${gets} chunks for an append`);
    await assertEqual();
  });

  it('a 4 KiB edit in the middle ships at most the chunks around it', async () => {
    const fh = await open(at('var/log/app.log'), fsc.O_WRONLY);
    await fh.write(randomBytes(4096), 0, 4096, 4 * MiB);
    await fh.close();
    const s = await ship();
    assert.ok(s.uploaded <= 2 * maxChunkBytes + 64 * 1024, `a 4 KiB edit uploaded ${s.uploaded} bytes`);
    const gets = await stage(s.record);
    assert.ok(gets <= 2, `the twin fetched ${gets} chunks for one edit`);
    await assertEqual();
  });

  it('truncated, extended with a hole, replaced whole, copied, deleted: the twin follows', async () => {
    await truncate(at('var/log/app.log'), 3 * MiB + 17);
    await stage((await ship()).record);
    await assertEqual();
    await truncate(at('var/log/app.log'), 9 * MiB);
    const hole = await ship();
    assert.ok(hole.uploaded < 2 * MiB, `a hole of 6 MiB uploaded ${hole.uploaded} bytes (zeros compress, repeat)`);
    await stage(hole.record);
    await assertEqual();
    const copy = await readFile(at('var/log/app.log'));
    await writeFile(at('copy.bin'), copy);
    const copied = await ship();
    assert.ok(copied.uploaded < 64 * 1024, `a copy of a file the bucket holds uploaded ${copied.uploaded} bytes`);
    assert.equal(await stage(copied.record), 0, 'the twin assembles the copy from the chunks it holds');
    await assertEqual();
    await writeFile(at('var/log/app.log'), randomBytes(2 * MiB));
    await stage((await ship()).record);
    await assertEqual();
    await unlink(at('var/log/app.log'));
    await unlink(at('copy.bin'));
    await stage((await ship()).record);
    await assertEqual();
  });

  it('a full checkpoint in the new format restages the twin', async () => {
    await writeFile(at('big2'), randomBytes(3 * MiB));
    await stage((await ship()).record);
    first = true;
    const full = await ship();
    assert.equal(full.record.kind, 'full');
    assert.ok(full.uploaded < 64 * 1024, `a full checkpoint of files whose chunks the bucket holds uploaded ${full.uploaded} bytes`);
    assert.equal(await stage(full.record), 0);
    await assertEqual();
  });

  describe('hostile chunk lists are refused before anything is written', () => {
    /** Writes a new large file `victim` and ships it; its record and its true list entry. */
    async function victim(): Promise<{ rec: CommitRecord; file: ChunkedFile }> {
      await writeFile(at('victim'), randomBytes(2 * MiB));
      const s = await ship();
      const file = s.built.chunks?.list.files.find((f) => f.path === 'victim');
      assert.ok(file !== undefined && file.chunks.length >= 3, 'the victim ships in several chunks');
      return { rec: s.record, file };
    }

    /** `rec` with the crafted `list` in the bucket in place of its own. */
    async function withList(rec: CommitRecord, list: ChunkList, declared: Partial<NonNullable<CommitRecord['chunks']>> = {}): Promise<CommitRecord> {
      const stored = encodeChunkList(list);
      const file = join(base, `hostile-${randomBytes(4).toString('hex')}.json.gz`);
      await writeFile(file, stored);
      const digest = asDigest(sha(stored));
      await pushBucket.uploadBlob(file, digest);
      return { ...rec, chunks: { digest, size: stored.length, ...summarize(list), ...declared } };
    }

    async function refusedWithNothingWritten(record: CommitRecord, expected: (err: unknown) => boolean): Promise<void> {
      const snap = async (): Promise<string> => JSON.stringify([...await snapshotTree(twin.upper)].map(([p, i]) => [p, i.sha256 ?? '', i.size, String(i.mtimeUs)]));
      const before = await snap();
      await assert.rejects(stage(record), expected);
      assert.equal(await snap(), before, 'the upper dir changed');
      assert.deepEqual(await readdir(join(base, 'twin-tmp')), [], 'the tmp dir holds nothing');
    }

    const rejected = (re: RegExp) => (err: unknown): boolean => {
      assert.ok(err instanceof ChangesetRejectedError, String(err));
      assert.match(err.message, re);
      return true;
    };

    it('a chunk whose bytes do not match its digest', async () => {
      const { rec, file } = await victim();
      const [d, size] = file.chunks[1]!;
      await store!.put(pushBucket.layout.chunkKey(asDigest(d)), gzipSync(randomBytes(size)));
      await refusedWithNothingWritten(rec, (err) => err instanceof BlobDigestMismatchError);
    });

    it('a list that names a million chunks, or more bytes than any changeset may hold: refused before it is fetched', async () => {
      const { rec, file } = await victim();
      const reads = pullStore.keysRead.length;
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [file] }, { count: 1_000_000 }), rejected(/1000000 chunks; the limit/));
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [file] }, { bytes: 64 * 1024 ** 3 }), rejected(/bytes of chunked files; the limit/));
      const listReads = pullStore.keysRead.slice(reads).filter((k) => k.includes('/blobs/') && !k.includes(rec.digest));
      assert.deepEqual(listReads, [], 'no chunk list was fetched');
    });

    it('a list whose sizes do not add up, totals other than declared, a chunk reused with another length', async () => {
      const { rec, file } = await victim();
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [{ ...file, size: file.size + 1 }] }), rejected(/add up to/));
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [file] }, { bytes: file.size - 1 }), rejected(/the record declares/));
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [file] }, { count: file.chunks.length + 1 }), rejected(/the record declares/));
      const [d0, s0] = file.chunks[0]!;
      const [, s1] = file.chunks[1]!;
      const reused = [[d0, s0] as const, [d0, s1] as const, ...file.chunks.slice(2)];
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [{ ...file, chunks: reused }] }), rejected(/named with lengths/));
    });

    it('a list whose chunks make another file than the digest it names, or that names other files', async () => {
      const { rec, file } = await victim();
      const swapped = [file.chunks[1]!, file.chunks[0]!, ...file.chunks.slice(2)];
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [{ ...file, chunks: swapped }] }), rejected(/assembled from its chunks has sha256/));
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [{ ...file, path: 'other' }] }), rejected(/does not name/));
      await refusedWithNothingWritten(await withList(rec, { version: 1, files: [file, { ...file, path: 'zzz' }] }), rejected(/names 2 files, the changeset ships 1/));
    });
  });
});

