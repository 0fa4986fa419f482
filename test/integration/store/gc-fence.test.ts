// GC on a host that stops being primary (issue 12, review of gc12): its run stops at the next step once its pusher
// stops (the signal), and before each delete batch it checks that the generation it planned for is still the newest
// and its host's. A new primary reuses blobs already in the bucket without writing them again (nothing refreshes their
// age), so an old host's sweep that went on would delete what the new one names. Against s3rver, the GC's clock two
// hours ahead so that every unnamed blob is past its grace period.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { asDigest, Bucket, GcStoppedError, runGc, type CommitRecord, type DeleteManyOptions, type Digest, type Generation, type Seq, type S3BlobStore } from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { WrappedStore } from './helpers.js';
import { startFaultProxy } from '../../../src/lab/fault-proxy.js';
import { Metrics } from '../../../src/metrics/index.js';
import { maybeSample, parsePrometheusText, sampleValue } from '../../support/prom-text.js';

const H = 3600_000;
const g = (n: number): Generation => n as Generation;
const sha = (s: string): Digest => asDigest(createHash('sha256').update(s).digest('hex'));

describe('GC of a host that stops being primary', { timeout: 120_000 }, () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let dir = '';
  let n = 0;
  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
    dir = await mkdtemp(join(tmpdir(), 'tl-gc-fence-'));
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function blob(bucket: Bucket, body: string): Promise<string> {
    const f = join(dir, `b${n++}`);
    await writeFile(f, body);
    await bucket.uploadBlob(f, sha(body));
    return bucket.blobKey(sha(body));
  }

  async function commit(bucket: Bucket, gen: number, seq: number, container: string, kind: 'full' | 'delta', body: string, host: string): Promise<void> {
    await blob(bucket, body);
    const at = new Date().toISOString();
    const rec: CommitRecord = {
      version: 1, seq: seq as Seq, parentSeq: 0 as Seq, generation: g(gen), container, digest: sha(body), size: body.length, kind,
      counts: { files: 1, deletions: 0, bytes: body.length }, firstWriteAt: at, publishedAt: at, writer: host,
    };
    await bucket.writeRecord(rec);
    await bucket.writeHead({ version: 1, generation: g(gen), seq: seq as Seq, writer: host, updatedAt: at, containers: { [container]: seq as Seq }, lastFull: kind === 'full' ? { [container]: seq as Seq } : {} });
  }

  /** Generation 1 of host "old" with one commit, and an orphan blob nothing names (GC deletes it when it may). */
  async function oldPrimary(group: string): Promise<{ bucket: Bucket; orphan: string }> {
    const bucket = new Bucket(store, { prefix: 'tl/fence', group, signatures: testSignatures() });
    await bucket.claimGeneration({ version: 1, generation: g(1), host: 'old', claimedAt: new Date().toISOString(), from: { generation: g(0), containers: {} } });
    await commit(bucket, 1, 1, 'web', 'full', `${group} web 1`, 'old');
    const orphan = await blob(bucket, `${group} orphan`);
    return { bucket, orphan };
  }

  const promote = (bucket: Bucket, host = 'new'): Promise<unknown> =>
    bucket.claimGeneration({ version: 1, generation: g(2), host, claimedAt: new Date().toISOString(), from: { generation: g(1), containers: {} } });

  const gcOpts = { retentionMs: 24 * H, graceMs: H, now: () => Date.now() + 2 * H };

  it('deletes as the owner of the newest generation', async () => {
    const { bucket, orphan } = await oldPrimary('owner');
    const report = await runGc(bucket, { ...gcOpts, owner: { generation: g(1), host: 'old' } });
    assert.equal(report.deleted.blob.objects, 1);
    assert.equal(await store.exists(orphan), false);
  });

  it('a host whose generation is no longer the newest deletes nothing (the run counted as stopped)', async () => {
    const { bucket, orphan } = await oldPrimary('fenced');
    await promote(bucket);
    const metrics = new Metrics();
    await assert.rejects(runGc(bucket, { ...gcOpts, owner: { generation: g(1), host: 'old' }, metrics }), (err: unknown) => err instanceof GcStoppedError && /generation 2 was opened/.test(err.message));
    assert.equal(await store.exists(orphan), true);
    const f = parsePrometheusText(await metrics.render());
    assert.equal(sampleValue(f, 'twinlayer_gc_runs_total', { result: 'stopped' }), 1);
    assert.equal(maybeSample(f, 'twinlayer_gc_runs_total', { result: 'failed' }), undefined, 'a stop is no failure');
  });

  it('a host that does not own the generation it names deletes nothing', async () => {
    const { bucket, orphan } = await oldPrimary('notmine');
    await assert.rejects(runGc(bucket, { ...gcOpts, owner: { generation: g(1), host: 'other' } }), (err: unknown) => err instanceof GcStoppedError && /host old's, not this host's/.test(err.message));
    assert.equal(await store.exists(orphan), true);
  });

  it('a new generation opened during the run stops it before its next batch (the new primary reuses the blob)', async () => {
    const { bucket, orphan } = await oldPrimary('midrun');
    const run = runGc(bucket, {
      ...gcOpts,
      owner: { generation: g(1), host: 'old' },
      // The new primary claims and finds the orphan's bytes already in the bucket (its upload skips them); its record
      // naming them is published after GC's last look for new records.
      betweenPhases: async () => void (await promote(bucket)),
    });
    await assert.rejects(run, GcStoppedError);
    assert.equal(await store.exists(orphan), true, 'the blob the new primary is about to name is still there');
    await commit(bucket, 2, 1, 'web', 'full', 'midrun orphan', 'new');
  });

  it('`twinlayer gc` (no owner) stops too when a generation is opened above the one it planned for', async () => {
    const { bucket, orphan } = await oldPrimary('cli');
    await assert.rejects(runGc(bucket, { ...gcOpts, betweenPhases: async () => void (await promote(bucket)) }), GcStoppedError);
    assert.equal(await store.exists(orphan), true);
  });

  it('an aborted run stops at its next step', async () => {
    const { bucket, orphan } = await oldPrimary('abort');
    const life = new AbortController();
    await assert.rejects(runGc(bucket, { ...gcOpts, owner: { generation: g(1), host: 'old' }, signal: life.signal, betweenPhases: () => Promise.resolve(life.abort()) }), GcStoppedError);
    assert.equal(await store.exists(orphan), true);
  });

  it('an abort while it reads the bucket stops it there, before any delete', async () => {
    const { orphan } = await oldPrimary('abortread');
    const life = new AbortController();
    let reads = 0;
    const reading = new (class extends WrappedStore {
      override async getBuffer(key: string, maxBytes: number): Promise<Buffer | null> {
        // The pusher halts while GC reads the generation's records.
        if (++reads === 1) life.abort();
        return this.inner.getBuffer(key, maxBytes);
      }
    })(store);
    const bucket = new Bucket(reading, { prefix: 'tl/fence', group: 'abortread', signatures: testSignatures() });
    await assert.rejects(runGc(bucket, { ...gcOpts, owner: { generation: g(1), host: 'old' }, signal: life.signal }), (err: unknown) => err instanceof GcStoppedError && /while it read the bucket/.test(err.message));
    assert.equal(await store.exists(orphan), true);
  });

  it('checks before every batch: a claim between two batches stops the rest', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/fence', group: 'batches', signatures: testSignatures() });
    await bucket.claimGeneration({ version: 1, generation: g(1), host: 'old', claimedAt: new Date().toISOString(), from: { generation: g(0), containers: {} } });
    const orphans = [];
    for (let i = 0; i < 4; i++) orphans.push(await blob(bucket, `batch orphan ${i}`));
    let batches = 0;
    const counting = new (class extends WrappedStore {
      override async deleteMany(keys: readonly string[], opts?: DeleteManyOptions): Promise<void> {
        await this.inner.deleteMany(keys, opts);
        if (++batches === 1) await promote(bucket);
      }
    })(store);
    const watched = new Bucket(counting, { prefix: 'tl/fence', group: 'batches', signatures: testSignatures() });
    await assert.rejects(runGc(watched, { ...gcOpts, owner: { generation: g(1), host: 'old' }, batchSize: 1 }), GcStoppedError);
    assert.equal(batches, 1, 'the second batch stopped at the check before its request');
    const left = await Promise.all(orphans.map((k) => store.exists(k)));
    assert.equal(left.filter((x) => x).length, 3, 'one batch of one went, then the claim stopped the rest');
  });

  it('checks before every request of a batch, a retry included: a claim while a batch is retried stops it', async () => {
    const { bucket, orphan } = await oldPrimary('retried');
    const proxy = await startFaultProxy(s3.endpoint);
    const proxied = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket });
    try {
      let checks = 0;
      const racing = new (class extends WrappedStore {
        override deleteMany(keys: readonly string[], opts?: DeleteManyOptions): Promise<void> {
          return this.inner.deleteMany(keys, {
            beforeRequest: async () => {
              // The first request failed (500) and is about to be sent again: the new primary has claimed meanwhile.
              if (++checks === 2) await promote(bucket);
              await opts?.beforeRequest?.();
            },
          });
        }
      })(proxied);
      proxy.fail('error500', 1, { method: 'POST' });
      const watched = new Bucket(racing, { prefix: 'tl/fence', group: 'retried', signatures: testSignatures() });
      await assert.rejects(runGc(watched, { ...gcOpts, owner: { generation: g(1), host: 'old' } }), (err: unknown) => err instanceof GcStoppedError && /generation 2 was opened/.test(err.message));
      assert.equal(proxy.stats.faults.error500, 1, 'the first DeleteObjects failed and was to be retried');
      assert.equal(checks, 2, 'the retry was checked before it was sent');
      assert.equal(await store.exists(orphan), true, 'the retry was not sent');
    } finally {
      proxied.destroy();
      await proxy.close();
    }
  });

  it('spares a blob that a divergent tail saved during the run names (found by the last look, not rewritten)', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/fence', group: 'tail', signatures: testSignatures() });
    await bucket.claimGeneration({ version: 1, generation: g(1), host: 'old', claimedAt: new Date().toISOString(), from: { generation: g(0), containers: {} } });
    // Large enough that uploadBlob asks whether it is there and, finding it, does not write it again.
    const body = 'x'.repeat(300 * 1024);
    const orphan = await blob(bucket, body);
    const f = join(dir, `tail${n++}`);
    await writeFile(f, body);
    const report = await runGc(bucket, {
      ...gcOpts,
      owner: { generation: g(1), host: 'old' },
      // A demoted host saves its divergent tail: the same bytes as the orphan.
      betweenPhases: async () => void (await bucket.putDivergent({
        version: 1, host: 'b', generation: g(1), claimGeneration: g(2), container: 'web', fromSeq: 0 as Seq, lastShippedSeq: 0 as Seq,
        digest: sha(body), size: body.length, counts: { files: 1, deletions: 0, bytes: body.length }, savedAt: new Date().toISOString(), reason: 'test',
      }, f)),
    });
    assert.equal(report.spared, 1);
    assert.equal(await store.exists(orphan), true);
  });

  it('the new primary keeps the blobs old-generation records in retention name', async () => {
    const { bucket } = await oldPrimary('newkeeps');
    await promote(bucket);
    await commit(bucket, 2, 1, 'web', 'full', 'newkeeps web 2', 'new');
    const report = await runGc(bucket, { ...gcOpts, owner: { generation: g(2), host: 'new' } });
    assert.equal(report.deleted.blob.objects, 1, 'the orphan only');
    assert.equal(await store.exists(bucket.blobKey(sha('newkeeps web 1'))), true);
  });
});
