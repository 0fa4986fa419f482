// The standby's streamed path (streamed-validation.ts, puller/validated-download.ts): a blob hashed and validated
// while it downloads, then applied from the file with the plan. Hostile content is refused mid-stream with nothing
// written, but only once the digest says the blob is the one its record names (a damaged download is fetched again);
// a validation that stalls is left behind and the file validated afterwards; an abort stops the download and
// validation both. Real stores (a dir store, the embedded S3 server) and real files. Root only (chown).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ChangesetRejectedError, defaultLimits, stageChangeset, StreamedValidation } from '../../../src/changeset/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { downloadValidated } from '../../../src/puller/index.js';
import { asDigest, BlobDigestMismatchError, Bucket, DirBlobStore, type BlobStore, type CommitRecord, type GetOptions } from '../../../src/store/index.js';
import { requireRoot, snapshotTree } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { testSignatures } from '../../support/signing.js';
import { logCollector } from '../store/helpers.js';
import { dir, file, tarOf } from './craft-tar.js';

const MiB = 1024 * 1024;
let base = '';
let upper = '';
let tmpDir = '';
let blobs = '';
let n = 0;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A record for `gz` as the primary would sign it (only the fields staging reads matter here). */
function recordOf(gz: Buffer, counts: CommitRecord['counts'], size = gz.length): CommitRecord {
  return { seq: 2, parentSeq: 1, container: 'c', kind: 'delta', digest: asDigest(sha256(gz)), size, counts } as unknown as CommitRecord;
}

/** The upper dir's tree; with `inodes`, which inode each path is (an unchanged tree keeps them). */
async function state(inodes = true): Promise<string> {
  const snap = await snapshotTree(upper);
  return JSON.stringify([...snap].map(([p, i]) => [p, { ...i, ino: inodes ? String(i.ino) : '', mtimeUs: String(i.mtimeUs) }]));
}

/** A BlobStore that shows every getToFile's observer to `spy` first. */
function spying(inner: BlobStore, spy: (bytes: Buffer) => void): BlobStore {
  return new Proxy(inner, {
    get: (target, prop, receiver) => {
      if (prop !== 'getToFile') return Reflect.get(target, prop, receiver) as unknown;
      return (key: string, f: string, maxBytes?: number, opts: GetOptions = {}) => {
        const o = opts.observe;
        const observe = o === undefined ? undefined : { start: () => o.start(), chunk: (b: Buffer) => (spy(b), o.chunk(b)) };
        return inner.getToFile(key, f, maxBytes, { ...opts, ...(observe === undefined ? {} : { observe }) });
      };
    },
  });
}

describe('streamed validation (download, hash and validate in one pass)', () => {
  let store: DirBlobStore;
  let bucket: Bucket;

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-streamed-'));
    store = new DirBlobStore(join(base, 'bucket'));
    bucket = new Bucket(store, { signatures: testSignatures(), prefix: 'tl', group: 'g' });
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });
  beforeEach(async () => {
    n++;
    upper = join(base, `upper-${n}`);
    tmpDir = join(base, `tmp-${n}`);
    blobs = join(base, `blobs-${n}`);
    await mkdir(upper);
    await mkdir(join(upper, 'etc'));
    await writeFile(join(upper, 'etc', 'keep'), 'kept');
    await mkdir(blobs);
  });

  const put = async (gz: Buffer, digest = sha256(gz)): Promise<void> => {
    await store.put(bucket.blobKey(asDigest(digest)), gz);
  };
  const opts = (log = silentLogger) => ({ kind: 'delta' as const, target: { upperDir: upper, tmpDir }, limits: defaultLimits, log, signal: new AbortController().signal });

  it('validates while downloading and stages from the plan: the tree as validating the file gives', async () => {
    const big = randomBytes(3 * MiB);
    const gz = gzipSync(tarOf([dir('d'), file('d/big', big), file('etc/app.conf', 'v2')]), { level: 0 });
    await put(gz);
    const blob = join(blobs, 'blob');
    const validated = await downloadValidated(bucket, recordOf(gz, { files: 3, deletions: 0, bytes: big.length + 2 }), blob, opts());
    assert.ok(validated !== null, 'the streamed validation gave no plan');
    assert.equal(validated.plan.files, 3);
    assert.equal(validated.plan.bytes, big.length + 2);
    const r = await stageChangeset(blob, 'delta', { upperDir: upper, tmpDir }, { validated });
    assert.deepEqual({ files: r.files, bytes: r.bytes }, { files: 3, bytes: big.length + 2 });
    assert.ok((await readFile(join(upper, 'd', 'big'))).equals(big));
    assert.equal(await readFile(join(upper, 'etc', 'app.conf'), 'utf8'), 'v2');
    assert.equal(await readFile(join(upper, 'etc', 'keep'), 'utf8'), 'kept');
    // The same changeset validated from the file converges to the same tree.
    const staged = await state(false);
    await stageChangeset(blob, 'delta', { upperDir: upper, tmpDir });
    assert.equal(await state(false), staged);
  });

  it('refuses a hostile blob mid-stream, once its digest matched, with nothing written', async () => {
    // The first entry climbs out of the upper dir; 24 MiB of body follow it.
    const body = randomBytes(24 * MiB);
    const gz = gzipSync(tarOf([file('../escape', 'x'), file('big', body)]), { level: 0 });
    await put(gz);
    const before = await state();
    let seen = 0;
    let seenAtVerdict = -1;
    const sv = new StreamedValidation({ kind: 'delta', target: { upperDir: upper, tmpDir }, size: gz.length, limits: defaultLimits });
    try {
      await bucket.downloadBlob(asDigest(sha256(gz)), gz.length, join(blobs, 'blob'), {
        tap: () => {
          const f = sv.feed();
          void f.settled.then(() => {
            seenAtVerdict = seen;
          });
          return { write: (b) => ((seen += b.length), f.write(b)), end: () => f.end(), abort: (e) => f.abort(e) };
        },
      });
      assert.ok(seenAtVerdict >= 0 && seenAtVerdict < gz.length, `validation ended after ${seenAtVerdict} of ${gz.length} bytes, not mid-stream`);
      await assert.rejects(sv.result(), (err: unknown) => err instanceof ChangesetRejectedError && err.context['entry'] === '../escape');
    } finally {
      sv.close();
    }
    // Through the stager's glue, the same.
    await assert.rejects(downloadValidated(bucket, recordOf(gz, { files: 2, deletions: 0, bytes: body.length + 1 }), join(blobs, 'again'), opts()), ChangesetRejectedError);
    assert.equal(await state(), before, 'the upper dir changed');
    assert.deepEqual(await readdir(tmpDir).catch(() => []), [], 'tmp dir not empty');
  });

  it('refuses what a record lies about while streaming: more bytes than declared, a blob larger than its size, a bomb', async () => {
    const before = await state();
    // File bodies past the record's declared bytes.
    const gz = gzipSync(tarOf([file('a', randomBytes(4 * MiB))]), { level: 0 });
    await put(gz);
    await assert.rejects(downloadValidated(bucket, recordOf(gz, { files: 1, deletions: 0, bytes: 1024 }), join(blobs, 'a'), opts()),
      (err: unknown) => err instanceof ChangesetRejectedError && /declares/.test(err.message));
    // An object larger than the record's size: cut off at the first byte past it, a mismatch (fetched again), never staged.
    await assert.rejects(downloadValidated(bucket, recordOf(gz, { files: 1, deletions: 0, bytes: 4 * MiB }, gz.length - 100), join(blobs, 'b'), opts()), BlobDigestMismatchError);
    // Zeros that inflate far past what a blob of this size may (expansion bound), refused without inflating them all.
    const bomb = gzipSync(Buffer.concat([tarOf([file('z', Buffer.alloc(0))], false), Buffer.alloc(256 * MiB)]), { level: 9 });
    await put(bomb);
    await assert.rejects(downloadValidated(bucket, recordOf(bomb, { files: 1, deletions: 0, bytes: 0 }), join(blobs, 'c'), opts()),
      (err: unknown) => err instanceof ChangesetRejectedError && /uncompressed size exceeds|padding|data after the end/.test(err.message));
    assert.equal(await state(), before, 'the upper dir changed');
    assert.deepEqual(await readdir(blobs), [], 'a download was left behind');
  });

  it('fetches a blob that does not match its digest again, and never refuses it as hostile', async () => {
    const good = gzipSync(tarOf([file('a', 'good')]));
    // Bytes that neither gunzip nor match: a damaged object under the good blob's key.
    await put(randomBytes(good.length), sha256(good));
    const before = await state();
    await assert.rejects(downloadValidated(bucket, recordOf(good, { files: 1, deletions: 0, bytes: 4 }), join(blobs, 'blob'), opts()), BlobDigestMismatchError);
    assert.equal(await state(), before);
    assert.deepEqual(await readdir(blobs), []);
  });

  it('leaves a stalled validation behind: the download goes on, and the file validated afterwards stages correctly', async () => {
    const big = randomBytes(8 * MiB);
    const gz = gzipSync(tarOf([file('big', big)]), { level: 0 });
    const blob = join(blobs, 'blob');
    await writeFile(blob, gz);
    const { log, lines } = logCollector();
    const sv = new StreamedValidation({ kind: 'delta', target: { upperDir: upper, tmpDir }, size: gz.length, limits: defaultLimits, log, stallMs: 100, bufferBytes: 256 * 1024 });
    // Every thread of libuv's pool waits on a FIFO with no writer: gunzip (and every fs call) stalls, timers do not.
    const threads = Math.max(4, Number(process.env['UV_THREADPOOL_SIZE'] ?? 4));
    const fifos = Array.from({ length: threads }, (_, i) => join(base, `fifo-${n}-${i}`));
    for (const f of fifos) execFileSync('mkfifo', [f]);
    const readers = fifos.map((f) => open(f, 'r'));
    try {
      const feed = sv.feed();
      const t0 = Date.now();
      for (let at = 0; at < gz.length; at += 64 * 1024) await feed.write(gz.subarray(at, at + 64 * 1024));
      const fedMs = Date.now() - t0;
      feed.end();
      // Fed whole while the pool was still blocked: held once for about stallMs, not until validation could go on.
      assert.ok(fedMs < 5_000, `feeding took ${fedMs} ms`);
      assert.ok(lines.some((l) => String(l['msg']).includes('fell behind')), 'no log line says validation was left behind');
    } finally {
      // Opening each write end lets its reader's open return (sync: the pool is busy).
      for (const f of fifos) closeSync(openSync(f, 'w'));
      for (const h of await Promise.all(readers)) await h.close();
    }
    assert.equal(await sv.result(), null, 'a left-behind validation gave a plan');
    sv.close();
    await stageChangeset(blob, 'delta', { upperDir: upper, tmpDir });
    assert.ok((await readFile(join(upper, 'big'))).equals(big));
  });

  describe('on the embedded S3 server', () => {
    let s3: TestS3;
    before(async () => {
      s3 = await withS3();
    });
    after(async () => {
      await s3.close();
    });

    it('stops the download and validation at an abort: nothing left, nothing written', async () => {
      const gz = gzipSync(tarOf([file('big', randomBytes(48 * MiB))]), { level: 0 });
      const inner = testS3Store(s3);
      const ac = new AbortController();
      let seen = 0;
      let seenAtAbort = -1;
      const spied = spying(inner, (b) => {
        seen += b.length;
        if (seenAtAbort < 0) {
          seenAtAbort = seen;
          ac.abort(new Error('deadline'));
        }
      });
      const b = new Bucket(spied, { signatures: testSignatures(), prefix: 'tl', group: 'g' });
      await inner.put(b.blobKey(asDigest(sha256(gz))), gz);
      const before = await state();
      const t0 = Date.now();
      await assert.rejects(downloadValidated(b, recordOf(gz, { files: 1, deletions: 0, bytes: 48 * MiB }), join(blobs, 'blob'), { ...opts(), signal: ac.signal }));
      const ms = Date.now() - t0;
      const seenAtReturn = seen;
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(seenAtAbort > 0, 'no byte was seen');
      assert.ok(seen < gz.length, `the download went on to the end (${seen} of ${gz.length} bytes) after the abort`);
      assert.equal(seen, seenAtReturn, 'bytes still arrived after the download returned');
      assert.ok(ms < 5_000, `the aborted download took ${ms} ms to return`);
      assert.deepEqual(await readdir(blobs), [], 'a download was left behind');
      assert.equal(await state(), before);
      inner.destroy();
    });
  });
});
