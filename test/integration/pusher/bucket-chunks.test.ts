// A pusher that knows no chunk of the bucket (no pack cache, no twin chunk index) learns where the chunks of the
// newest commits are from their chunk lists (src/pusher/bucket-chunks.ts), so its first full commit uploads none the
// bucket holds. Through the embedded S3 server: commits built by the UpperTracker with chunking, packs and lists
// uploaded and records published as the pusher does; a second pack store, empty, learns from the head. Hostile and
// broken lists are passed over (refused from the record before any fetch, a list not matching its digest) and the
// bounds hold.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultLimits, UpperTracker } from '../../../src/changeset/index.js';
import { learnChunksFromBucket } from '../../../src/pusher/bucket-chunks.js';
import { uploadChunks } from '../../../src/pusher/chunk-upload.js';
import { asDigest, asGeneration, JournalWriter, PackStore, recoverHead, type Bucket, type CommitRecord, type Head, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger } from '../puller/helpers.js';
import { WrappedStore } from '../store/helpers.js';

const MiB = 1024 * 1024;
const G = asGeneration(1);

describe('a pusher that knows no chunk learns the newest chunk lists', { timeout: 300_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let wrapped: WrappedStore;
  let bucket: Bucket;
  let journal: JournalWriter;
  const { log, lines } = collectingLogger();
  const upper = (name: string): string => join(base, name, 'upper');

  /** Builds `name`'s upper dir with a fresh pack store and tracker (nothing known: everything uploaded), publishes. */
  async function commitAs(name: string, packs: PackStore, tracker: UpperTracker, kind: 'full' | 'reconcile'): Promise<CommitRecord> {
    const built = await tracker.build(kind);
    assert.ok(built !== null && built.chunks !== undefined, `${name}: a commit with chunked files`);
    try {
      const up = await uploadChunks(built.chunks, bucket);
      await bucket.uploadBlob(built.file, asDigest(built.digest));
      const rec = await journal.publish({ container: name, digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts, firstWriteAt: new Date(), chunks: up.declared });
      tracker.commit(built);
      return rec;
    } finally {
      await rm(built.file, { force: true });
      await rm(built.chunks.spoolDir, { recursive: true, force: true });
    }
  }

  /** A fresh pusher's full build of `name` with `packs`: the chunks it uploads. */
  async function fullBuildUploads(name: string, packs: PackStore): Promise<number> {
    const work = join(base, name, `work-${randomBytes(3).toString('hex')}`);
    await mkdir(work);
    const tracker = new UpperTracker({ upperDir: upper(name), workDir: work, chunking: { thresholdBytes: MiB, openSink: packs.openSink } });
    const built = await tracker.build('full');
    assert.ok(built?.chunks !== undefined);
    try {
      const before = packs.stats.uploaded;
      await built.chunks.sink.finish(built.chunks.files);
      return packs.stats.uploaded - before;
    } finally {
      await rm(built.file, { force: true });
      await rm(built.chunks.spoolDir, { recursive: true, force: true });
    }
  }

  async function head(): Promise<Head> {
    await journal.flushHead();
    const h = await recoverHead(bucket, G);
    assert.ok(h !== null);
    return h;
  }

  const learn = async (packs: PackStore, h: Head, bounds?: { maxLists?: number; maxListBytes?: number; maxMs?: number }): Promise<Awaited<ReturnType<typeof learnChunksFromBucket>>> => {
    const dir = join(base, `learn-${randomBytes(3).toString('hex')}`);
    await mkdir(dir);
    return learnChunksFromBucket({ bucket, packs, head: h, limits: defaultLimits, log, dir, ...(bounds ? { bounds } : {}) });
  };

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-bucket-chunks-'));
    s3 = await withS3();
    store = testS3Store(s3);
    wrapped = new WrappedStore(store);
    bucket = bucketFor(wrapped, 'learn', log);
    journal = new JournalWriter(bucket, { generation: G, writer: 'a', head: null, log });
    // Two containers, each a full commit then a delta (an edit of one file, a new file): what the newest commits name.
    for (const name of ['db', 'web']) {
      await mkdir(upper(name), { recursive: true });
      await mkdir(join(base, name, 'work'), { recursive: true });
      await writeFile(join(upper(name), 'big.bin'), randomBytes(3 * MiB));
      const packs = new PackStore(wrapped, bucket.layout, { packBytes: MiB });
      const tracker = new UpperTracker({ upperDir: upper(name), workDir: join(base, name, 'work'), chunking: { thresholdBytes: MiB, openSink: packs.openSink } });
      await commitAs(name, packs, tracker, 'full');
      const fh = await open(join(upper(name), 'big.bin'), fsc.O_WRONLY);
      await fh.write(randomBytes(4096), 0, 4096, MiB);
      await fh.close();
      await writeFile(join(upper(name), 'more.bin'), randomBytes(2 * MiB));
      await commitAs(name, packs, tracker, 'reconcile');
    }
  });

  after(async () => {
    await journal?.close();
    store?.destroy();
    await s3?.close();
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it('without learning, a fresh pusher uploads every chunk again', async () => {
    assert.ok(await fullBuildUploads('db', new PackStore(wrapped, bucket.layout)) >= 20, 'about 5 MiB of chunks');
  });

  it('having learnt the newest lists, a fresh pusher uploads none of the chunks the bucket holds', async () => {
    const packs = new PackStore(wrapped, bucket.layout);
    const got = await learn(packs, await head());
    assert.equal(got.lists, 4, 'both commits of both containers');
    assert.ok(got.chunks >= 40, `chunks learnt: ${got.chunks}`);
    assert.equal(got.skipped + (got.truncated ? 1 : 0), 0);
    for (const name of ['db', 'web']) assert.equal(await fullBuildUploads(name, packs), 0, `${name}: no chunk uploaded again`);
    assert.ok(packs.stats.heads >= 1, 'each pack learnt is HEADed before it is relied on');
    // A new file: only it is uploaded.
    await writeFile(join(upper('web'), 'new.bin'), randomBytes(2 * MiB));
    assert.ok(await fullBuildUploads('web', packs) >= 4, 'the new file\'s chunks are uploaded');
  });

  it('stops at its bounds', async () => {
    const packs = new PackStore(wrapped, bucket.layout);
    const got = await learn(packs, await head(), { maxLists: 1 });
    assert.equal(got.lists, 1);
    assert.equal(got.truncated, true);
    const bytes = await learn(new PackStore(wrapped, bucket.layout), await head(), { maxListBytes: 1 });
    assert.equal(bytes.lists, 0);
    assert.equal(bytes.truncated, true);
    const late = await learn(new PackStore(wrapped, bucket.layout), await head(), { maxMs: -1 });
    assert.deepEqual([late.lists, late.truncated], [0, true], 'nothing is asked for past the deadline');
  });

  it('passes over a list refused from its record (never fetched) and a list not matching its digest', async () => {
    const h = await head();
    const dbSeq = h.containers['db'];
    const webSeq = h.containers['web'];
    assert.ok(dbSeq !== undefined && webSeq !== undefined);
    // db's newest record, signed again as a trusted writer could, declares a million chunks: refused before the fetch.
    const dbRec = await bucket.readRecord(G, dbSeq);
    assert.ok(dbRec?.chunks !== undefined);
    await bucket.writeRecord({ ...dbRec, chunks: { ...dbRec.chunks, count: 1_000_000 } });
    // web's newest list is replaced in the bucket by other bytes (a writer without the key can do that).
    const webRec = await bucket.readRecord(G, webSeq);
    assert.ok(webRec?.chunks !== undefined);
    await store!.put(bucket.blobKey(webRec.chunks.digest), randomBytes(webRec.chunks.size));
    const readsBefore = wrapped.keysRead.length;
    const linesBefore = lines.length;
    const packs = new PackStore(wrapped, bucket.layout);
    const got = await learn(packs, h);
    assert.equal(got.skipped, 2, lines.slice(linesBefore).join('\n'));
    assert.equal(got.lists, 2, 'the older list of each container is still learnt');
    assert.ok(!wrapped.keysRead.slice(readsBefore).includes(bucket.blobKey(dbRec.chunks.digest)), 'the refused list was not fetched');
    assert.match(lines.slice(linesBefore).join('\n'), /1000000 chunks; the limit is/);
    // What was learnt still holds: db's full commit placed big.bin's unedited chunks.
    assert.ok(got.chunks > 0);
  });
});
