// Large files shipped as content-defined chunks in packs (issue 10), through the embedded S3 server: the primary
// writes through a real overlay mount, the UpperTracker builds with chunking, packs, list and changeset go to the
// bucket as the pusher sends them; the standby fetches the list as the puller does (openChunkedCommit), reads the
// chunks it lacks with ranged GETs of the packs, stages into the upper dir of a second overlay over the same lower dir
// (unmounted while staging), and the merged views must be equal byte for byte. Bytes uploaded and ranged GETs are
// counted at the store. Hostile chunk lists and packs are refused with nothing written. Root only (overlayfs).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  ChangesetRejectedError, ChunkIndex, chunkIndexFile, defaultLimits, encodeChunkList, maxChunkBytes, stageChangeset, summarize, UpperTracker, type BuiltChangeset, type ChunkList, type ListedFile,
} from '../../../src/changeset/index.js';
import { openChunkedCommit } from '../../../src/puller/chunked-commit.js';
import { uploadChunks } from '../../../src/pusher/chunk-upload.js';
import { asDigest, BlobDigestMismatchError, BlobMissingError, PackStore, type Bucket, type CommitRecord, type S3BlobStore } from '../../../src/store/index.js';
import { chunksOf, newChunks } from '../../support/chunks.js';
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
  let pushPacks: PackStore;
  let pullPacks: PackStore;
  let tracker: UpperTracker;
  let first = true;
  let seq = 0;
  const stateDir = (): string => join(base, 'state');

  interface Shipped { record: CommitRecord; uploaded: number; built: BuiltChangeset; list: ChunkList | undefined }

  /** Builds, uploads what the bucket lacks (packs, list, changeset) as the pusher does; counts the bytes sent. */
  async function ship(): Promise<Shipped> {
    const before = pushPacks.stats.uploadedBytes;
    const built = await tracker.build(first ? 'full' : 'reconcile');
    assert.ok(built !== null, 'something to ship');
    let uploaded = built.size;
    const c = built.chunks;
    const up = c === undefined ? undefined : await uploadChunks(c, pushBucket);
    if (up !== undefined) uploaded += up.declared.size;
    await pushBucket.uploadBlob(built.file, asDigest(built.digest));
    uploaded += pushPacks.stats.uploadedBytes - before;
    tracker.commit(built);
    seq++;
    const record: CommitRecord = {
      version: 1, seq: seq as CommitRecord['seq'], parentSeq: (seq - 1) as CommitRecord['parentSeq'], generation: 1 as CommitRecord['generation'],
      container: 'web', digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts,
      firstWriteAt: new Date().toISOString(), publishedAt: new Date().toISOString(), writer: 'a',
      ...(up === undefined ? {} : { chunks: up.declared }),
    };
    first = false;
    await rm(built.file, { force: true });
    if (c !== undefined) await rm(c.spoolDir, { recursive: true, force: true });
    return { record, uploaded, built, list: up?.list };
  }

  /** Stages a record into the twin's upper dir as the puller does; returns the ranged GETs of packs it made. */
  async function stage(record: CommitRecord): Promise<number> {
    const rangesBefore = pullStore.ranges.length;
    const blob = join(base, 'dl', `${record.digest}.${record.seq}`);
    await mkdir(join(base, 'dl'), { recursive: true });
    await pullBucket.downloadBlob(record.digest, record.size, blob);
    try {
      const chunked = await openChunkedCommit({ bucket: pullBucket, packs: pullPacks, limits: defaultLimits, indexDir: join(stateDir(), 'chunk-index') }, 'web', 'twin-1', record, blob);
      await stageChangeset(blob, record.kind, { upperDir: twin.upper, tmpDir: join(base, 'twin-tmp') }, {
        declared: { ...record.counts, size: record.size }, ...(chunked.stage === undefined ? {} : { chunks: chunked.stage }),
      });
      await chunked.adopt();
    } finally {
      await rm(blob, { force: true });
    }
    return pullStore.ranges.length - rangesBefore;
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
  /** 512-byte blocks the file at `path` allocates on disk. */
  const blocksOf = async (path: string): Promise<number> => Number((await stat(path)).blocks);

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
    // Small packs, so that a commit of a few MiB makes several and neighbours are coalesced across none of them.
    pushPacks = new PackStore(store, pushBucket.layout, { packBytes: MiB, cacheFile: join(base, 'push-state', 'packs.jsonl') });
    pullPacks = new PackStore(pullStore, pullBucket.layout);
    tracker = new UpperTracker({ upperDir: primary.upper, workDir: join(base, 'work'), chunking: { thresholdBytes: MiB, openSink: pushPacks.openSink } });
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
    assert.equal(s.list?.files.map((f) => f.path).join(), 'var/log/app.log');
    assert.ok((s.list?.packs.length ?? 0) >= 6, `8 MiB of new chunks in packs of 1 MiB: ${s.list?.packs.length}`);
    assert.ok(s.built.counts.bytes < 1024, 'the large file is not in the tar');
    const gets = await stage(s.record);
    assert.ok(gets <= (s.list?.packs.length ?? 0), `${gets} ranged GETs for ${s.list?.packs.length} packs: neighbours coalesced`);
    await assertEqual();
  });

  it('an append ships the tail chunk; the twin fetches only what it lacks', async () => {
    const fh = await open(at('var/log/app.log'), fsc.O_WRONLY | fsc.O_APPEND);
    await fh.write(randomBytes(5000));
    await fh.close();
    const s = await ship();
    assert.ok(s.uploaded <= 2 * maxChunkBytes + 64 * 1024, `an append of 5000 bytes uploaded ${s.uploaded} bytes`);
    const gets = await stage(s.record);
    assert.ok(gets <= 2, `the twin made ${gets} ranged GETs for an append`);
    await assertEqual();
  });

  it('a 4 KiB edit in the middle ships the chunks it changed, each once', async () => {
    // One or two chunks most of the time; a moved cut can shift a few after it (test/support/chunks.ts).
    const before = await chunksOf(at('var/log/app.log'));
    const packedBefore = pushPacks.stats.uploaded;
    const fh = await open(at('var/log/app.log'), fsc.O_WRONLY);
    await fh.write(randomBytes(4096), 0, 4096, 4 * MiB);
    await fh.close();
    const fresh = newChunks(before, await chunksOf(at('var/log/app.log')));
    const s = await ship();
    const why = `new chunks ${fresh.sizes.join(', ')} bytes; uploaded ${s.uploaded} bytes`;
    assert.equal(pushPacks.stats.uploaded - packedBefore, fresh.count, `chunks uploaded, against the new chunks: ${why}`);
    assert.ok(s.uploaded <= fresh.maxStored + 64 * 1024, `a 4 KiB edit uploaded more than its new chunks: ${why}`);
    const gets = await stage(s.record);
    // The new chunks lie back to back in this commit's packs of 1 MiB: one range each pack they span.
    const spanned = Math.ceil(fresh.maxStored / MiB) + 1;
    assert.ok(gets <= spanned, `the twin made ${gets} ranged GETs for one edit (new chunks in ${spanned} packs at most): ${why}`);
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
    // The hole stays a hole in the twin: its zero chunks are not written. Dense, the file would take 9 MiB.
    const blocks = { primary: await blocksOf(join(primary.upper, 'var/log/app.log')), twin: await blocksOf(join(twin.upper, 'var/log/app.log')) };
    assert.ok(Math.abs(blocks.twin - blocks.primary) * 512 <= maxChunkBytes + 64 * 1024, `the twin's file allocates about what the primary's does: ${JSON.stringify(blocks)} blocks of 512 bytes`);
    assert.ok(blocks.twin * 512 < 5 * MiB, `the twin's file is sparse: ${JSON.stringify(blocks)} blocks of 512 bytes`);
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

  it('a restarted pusher knows the packs from its cache (one HEAD a pack) and uploads again the chunks of a pack the bucket lost', async () => {
    const restart = (): void => {
      pushPacks = new PackStore(store!, pushBucket.layout, { packBytes: MiB, cacheFile: join(base, 'push-state', 'packs.jsonl') });
      tracker = new UpperTracker({ upperDir: primary.upper, workDir: join(base, 'work'), chunking: { thresholdBytes: MiB, openSink: pushPacks.openSink } });
      first = true;
    };
    restart();
    const full = await ship();
    assert.ok(full.list !== undefined);
    assert.ok(full.uploaded < 64 * 1024, `a full checkpoint after a restart uploaded ${full.uploaded} bytes`);
    assert.equal(pushPacks.stats.packs, 0, 'no pack uploaded');
    assert.ok(pushPacks.stats.heads >= 1 && pushPacks.stats.heads <= full.list.packs.length, `${pushPacks.stats.heads} HEADs for ${full.list.packs.length} packs`);
    await stage(full.record);
    await assertEqual();
    const lost = full.list.packs[0]!;
    await store!.delete(pushBucket.layout.packKey(asDigest(lost)));
    restart();
    const again = await ship();
    assert.ok(pushPacks.stats.packs >= 1, 'the chunks of the lost pack were packed again');
    // The same chunks in the same order make the same pack: content-addressed, it is back under its name.
    for (const p of again.list?.packs ?? []) assert.ok(await store!.exists(pushBucket.layout.packKey(asDigest(p))), `pack ${p} is in the bucket`);
    await stage(again.record);
    await assertEqual();
  });

  it('a promoted standby: its pusher learns the twin\'s chunk index and uploads none of the chunks the bucket holds', async () => {
    // The index the puller kept of the twin (stage() adopts every staged list), read back from disk.
    const index = await ChunkIndex.load(chunkIndexFile(join(stateDir(), 'chunk-index'), 'web'), 'twin-1');
    // Another host: no cache of packs it uploaded.
    pushPacks = new PackStore(store!, pushBucket.layout, { packBytes: MiB });
    assert.ok(pushPacks.learn(index.places()) > 0, 'the index places chunks');
    tracker = new UpperTracker({ upperDir: primary.upper, workDir: join(base, 'work'), chunking: { thresholdBytes: MiB, openSink: pushPacks.openSink } });
    first = true;
    const full = await ship();
    assert.ok(full.uploaded < 64 * 1024, `the first full commit of the promoted host uploaded ${full.uploaded} bytes`);
    assert.equal(pushPacks.stats.packs, 0, 'no pack uploaded');
    await stage(full.record);
    await assertEqual();
  });

  it('a twin whose layer dir is its own mount (dockerd bind-mounts overlay2 onto itself): the assembled file is linked in, not copied', async () => {
    const big = randomBytes(3 * MiB);
    await writeFile(at('big.bin'), big);
    const s = await ship();
    await stage(s.record);
    await assertEqual();
    // A second twin under a bind mount, the blob and state outside it, as the puller's state dir is.
    const bound = join(base, 'bound');
    await mkdir(bound, { recursive: true });
    execFileSync('mount', ['--bind', bound, bound]);
    try {
      const t2 = await makeOverlayDirs(bound, 'b', twin.lower);
      const target = { upperDir: t2.upper, tmpDir: join(bound, 'b', 'twinlayer-tmp') };
      const blob = join(base, 'dl2', `${s.record.digest}.${s.record.seq}`);
      await mkdir(join(base, 'dl2'), { recursive: true });
      await pullBucket.downloadBlob(s.record.digest, s.record.size, blob);
      const chunked = await openChunkedCommit({ bucket: pullBucket, packs: pullPacks, limits: defaultLimits, indexDir: join(base, 'index-2') }, 'web', 'twin-2', s.record, blob);
      assert.ok(chunked.stage !== undefined, 'the commit ships in chunks');
      const declared = { ...s.record.counts, size: s.record.size };
      const r = await stageChangeset(blob, s.record.kind, target, { declared, chunks: chunked.stage });
      assert.ok((r.chunks?.fetched ?? 0) > 0, 'the chunks were fetched');
      assert.equal(r.chunks?.copied, 0, 'the assembled file was linked into the twin');
      assert.deepEqual(await readFile(join(t2.upper, 'big.bin')), big);
      assert.deepEqual(await readdir(target.tmpDir), [], 'the chunk dir is gone');
      // The setup reproduces the mounts: chunks gathered beside the blob (outside the bind mount) cross it.
      const outside = await stageChangeset(blob, s.record.kind, target, { declared, chunks: { ...chunked.stage, dir: join(base, 'dl2', 'chunks') } });
      assert.equal(outside.chunks?.copied, 1, 'a link across the mounts fails (EXDEV): copied');
      assert.deepEqual(await readFile(join(t2.upper, 'big.bin')), big);
    } finally {
      execFileSync('umount', [bound]);
    }
  });

  describe('hostile chunk lists and packs are refused before anything is written', () => {
    /** Writes a new large file `victim` and ships it; its record, its true list and its entry there. */
    async function victim(): Promise<{ rec: CommitRecord; list: ChunkList; file: ListedFile }> {
      await writeFile(at('victim'), randomBytes(2 * MiB));
      const s = await ship();
      const file = s.list?.files.find((f) => f.path === 'victim');
      assert.ok(s.list !== undefined && file !== undefined && file.chunks.length >= 3, 'the victim ships in several chunks');
      return { rec: s.record, list: s.list, file };
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

    /** The list holding only `file`, with the packs it uses. */
    function only(list: ChunkList, file: ListedFile): ChunkList {
      return { version: 2, packs: list.packs, files: [file] };
    }

    async function refusedWithNothingWritten(record: CommitRecord, expected: (err: unknown) => boolean): Promise<void> {
      const snap = async (): Promise<string> => JSON.stringify([...await snapshotTree(twin.upper)].map(([p, i]) => [p, i.sha256 ?? '', i.size, String(i.mtimeUs)]));
      const before = await snap();
      await assert.rejects(stage(record), expected);
      assert.equal(await snap(), before, 'the upper dir changed');
      assert.deepEqual(await readdir(join(base, 'twin-tmp')), [], 'the tmp dir holds nothing');
      assert.deepEqual((await readdir(join(base, 'dl'))).filter((f) => !f.startsWith('.')), [], 'no download is left');
    }

    const rejected = (re: RegExp) => (err: unknown): boolean => {
      assert.ok(err instanceof ChangesetRejectedError, String(err));
      assert.match(err.message, re);
      return true;
    };

    /** The stored bytes of the pack `pack`. */
    async function packBytes(pack: string): Promise<Buffer> {
      const b = await store!.getBuffer(pushBucket.layout.packKey(asDigest(pack)), 64 * MiB);
      assert.ok(b !== null, 'the pack is in the bucket');
      return b;
    }

    it('a chunk whose bytes in its pack do not match its digest; a pack replaced by another', async () => {
      const { rec, list, file } = await victim();
      const [, , p, offset, stored] = file.chunks[1]!;
      const pack = list.packs[p]!;
      const original = await packBytes(pack);
      const bad = Buffer.from(original);
      // Same stored length, other bytes: a valid gzip member of other content.
      const other = gzipSync(randomBytes(file.chunks[1]![1]), { level: 0 });
      other.copy(bad, offset, 0, Math.min(stored, other.length));
      await store!.put(pushBucket.layout.packKey(asDigest(pack)), bad);
      await refusedWithNothingWritten(rec, (err) => err instanceof BlobDigestMismatchError);
      // Another pack's bytes under this pack's name (it no longer hashes to its name): every chunk read is checked.
      const others = list.packs.filter((x) => x !== pack);
      const replacement = others.length > 0 ? await packBytes(others[0]!) : Buffer.alloc(0);
      await store!.put(pushBucket.layout.packKey(asDigest(pack)), Buffer.concat([replacement, randomBytes(original.length)]));
      await refusedWithNothingWritten(rec, (err) => err instanceof BlobDigestMismatchError);
      await store!.put(pushBucket.layout.packKey(asDigest(pack)), original);
    });

    it('a pack missing from the bucket: nothing written (a later poll tries again)', async () => {
      const { rec, list, file } = await victim();
      const gone = list.packs[file.chunks[0]![2]]!;
      const renamed = { ...only(list, file), packs: list.packs.map((p) => (p === gone ? sha(randomBytes(8)) : p)) };
      await refusedWithNothingWritten(await withList(rec, renamed), (err) => err instanceof BlobMissingError);
    });

    it('places past the end of the pack, overlapping or negative ranges, stored lengths no chunk can have: refused', async () => {
      const { rec, list, file } = await victim();
      const [d0, s0, p0, o0, st0] = file.chunks[0]!;
      const [d1, s1, , , st1] = file.chunks[1]!;
      const rest = file.chunks.slice(1);
      const packSize = (await packBytes(list.packs[p0]!)).length;
      // Found out by the ranged GET (the list cannot know the pack's size): refused before anything is written.
      const past = [[d0, s0, p0, packSize + 100, st0] as const, ...rest];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: past })), rejected(new RegExp(`pack ${list.packs[p0]!.slice(0, 12)}, which (holds ${packSize} bytes|ends before)`)));
      // The last chunk of that pack moved 10 bytes on: its range ends past the pack.
      const last = file.chunks.reduce((best, c, i) => (c[2] === p0 && c[3] > file.chunks[best]![3] ? i : best), 0);
      const straddling = file.chunks.map((c, i) => (i === last ? [c[0], c[1], c[2], c[3] + 10, c[4]] as const : c));
      assert.equal(file.chunks[last]![3] + file.chunks[last]![4], packSize, 'the victim\'s last chunk in the pack ends it');
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: straddling })), rejected(/which (holds|ends before)/));
      // Refused while the list is parsed: no pack is read.
      const ranges = pullStore.ranges.length;
      const overlapping = [file.chunks[0]!, [d1, s1, p0, o0 + 1, st1] as const, ...file.chunks.slice(2)];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: overlapping })), rejected(/overlap in pack/));
      const negative = [[d0, s0, p0, -5, st0] as const, ...rest];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: negative })), rejected(/does not parse/));
      const huge = [[d0, s0, p0, o0, 10 * MiB] as const, ...rest];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: huge })), rejected(/stored in 10485760; at most/));
      const far = [[d0, s0, p0, defaultLimits.maxPackBytes, st0] as const, ...rest];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: far })), rejected(/packs hold at most/));
      const unnamed = [[d0, s0, list.packs.length, o0, st0] as const, ...rest];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: unnamed })), rejected(/the list names/));
      assert.equal(pullStore.ranges.length, ranges, 'no pack was read for a list refused while parsed');
    });

    it('a list that names a million chunks, or more bytes than any changeset may hold: refused before it is fetched', async () => {
      const { rec, list, file } = await victim();
      const reads = pullStore.keysRead.length;
      await refusedWithNothingWritten(await withList(rec, only(list, file), { count: 1_000_000 }), rejected(/1000000 chunks; the limit/));
      await refusedWithNothingWritten(await withList(rec, only(list, file), { bytes: 64 * 1024 ** 3 }), rejected(/bytes of chunked files; the limit/));
      const listReads = pullStore.keysRead.slice(reads).filter((k) => k.includes('/blobs/') && !k.includes(rec.digest));
      assert.deepEqual(listReads, [], 'no chunk list was fetched');
      assert.deepEqual(pullStore.keysRead.slice(reads).filter((k) => k.includes('/packs/')), [], 'no pack was read');
    });

    it('a list whose sizes do not add up, totals other than declared, a chunk reused with another length', async () => {
      const { rec, list, file } = await victim();
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, size: file.size + 1 })), rejected(/add up to/));
      await refusedWithNothingWritten(await withList(rec, only(list, file), { bytes: file.size - 1 }), rejected(/the record declares/));
      await refusedWithNothingWritten(await withList(rec, only(list, file), { count: file.chunks.length + 1 }), rejected(/the record declares/));
      const [d0, s0, p0, o0, st0] = file.chunks[0]!;
      const [, s1] = file.chunks[1]!;
      const reused = [[d0, s0, p0, o0, st0] as const, [d0, s1, p0, o0, st0] as const, ...file.chunks.slice(2)];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: reused })), rejected(/named with lengths/));
    });

    it('a list whose chunks make another file than the digest it names, or that names other files', async () => {
      const { rec, list, file } = await victim();
      const swapped = [file.chunks[1]!, file.chunks[0]!, ...file.chunks.slice(2)];
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, chunks: swapped })), rejected(/assembled from its chunks has sha256/));
      await refusedWithNothingWritten(await withList(rec, only(list, { ...file, path: 'other' })), rejected(/does not name/));
      await refusedWithNothingWritten(await withList(rec, { ...only(list, file), files: [file, { ...file, path: 'zzz' }] }), rejected(/names 2 files, the changeset ships 1/));
    });
  });
});
