// The primary's periodic GC (GcLoop, started by the pusher): a first run soon after start, then every interval, one
// run at a time, deletes what a run deletes; stop() aborts the run in flight and no run follows. Against s3rver; the GC's clock is a test clock.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { asDigest, Bucket, GcLoop, type Digest, type Generation, type Seq, type S3BlobStore } from '../../../src/store/index.js';

const H = 3600_000;
const g = (n: number): Generation => n as Generation;
const sha = (s: string): Digest => asDigest(createHash('sha256').update(s).digest('hex'));
import { testSignatures } from '../../support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

describe('GcLoop', { timeout: 60_000 }, () => {
  let s3: TestS3;
  let store: S3BlobStore;
  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
  });

  it('runs every interval until stopped, deleting what nothing names', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/loop', group: 'g', signatures: testSignatures() });
    await bucket.writeHead({ version: 1, generation: 1 as Generation, seq: 0 as Seq, writer: 'w', updatedAt: new Date().toISOString(), containers: {} });
    const orphan = bucket.blobKey(asDigest(createHash('sha256').update('orphan').digest('hex')));
    await store.put(orphan, Buffer.from('orphan'));
    let runs = 0;
    const loop = new GcLoop(bucket, {
      intervalMs: 20, retentionMs: 3600_000, graceMs: 3600_000,
      // Every run sees two hours more: the orphan is past its grace from the first run on.
      now: () => Date.now() + 2 * 3600_000 * ++runs,
    });
    loop.start();
    // Bounded at 60 s: three runs against s3rver take milliseconds on a quiet machine, seconds on a loaded one.
    for (let i = 0; i < 3000 && (loop.lastReport === null || runs < 3); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    await loop.stop();
    const ranBefore = runs;
    assert.ok(ranBefore >= 3, `ran ${ranBefore} times`);
    assert.equal(await store.exists(orphan), false);
    assert.equal(await store.exists(bucket.headKey(1 as Generation)), true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(runs, ranBefore, 'no run after stop()');
  });

  it('does not start with intervalMs 0', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/loop', group: 'off', signatures: testSignatures() });
    let runs = 0;
    const loop = new GcLoop(bucket, { intervalMs: 0, retentionMs: 1, graceMs: 1, now: () => ++runs });
    loop.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await loop.stop();
    assert.equal(runs, 0);
    assert.equal(loop.lastReport, null);
  });

  it('runs first soon after start (firstDelayMs), not a whole interval later', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/loop2', group: 'first', signatures: testSignatures() });
    await bucket.writeHead({ version: 1, generation: g(1), seq: 0 as Seq, writer: 'w', updatedAt: new Date().toISOString(), containers: {} });
    let runs = 0;
    const loop = new GcLoop(bucket, { intervalMs: 3600_000, firstDelayMs: 10, retentionMs: H, graceMs: H, now: () => (runs++, Date.now()) });
    loop.start();
    for (let i = 0; i < 6000 && loop.lastReport === null; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await loop.stop();
    assert.equal(runs, 1);
    assert.notEqual(loop.lastReport, null);
  });

  it('stop() aborts the run in flight: it deletes nothing more', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/loop2', group: 'abort', signatures: testSignatures() });
    await bucket.claimGeneration({ version: 1, generation: g(1), host: 'old', claimedAt: new Date().toISOString(), from: { generation: g(0), containers: {} } });
    const orphan = bucket.blobKey(sha('loop orphan'));
    await store.put(orphan, Buffer.from('loop orphan'));
    let stopped = null as Promise<void> | null;
    const loop: GcLoop = new GcLoop(bucket, {
      intervalMs: 3600_000, firstDelayMs: 0, retentionMs: H, graceMs: H, now: () => Date.now() + 2 * H, owner: { generation: g(1), host: 'old' },
      // The pusher halts (demoted) while the run is between its phases.
      betweenPhases: () => {
        stopped = loop.stop();
        return Promise.resolve();
      },
    });
    loop.start();
    for (let i = 0; i < 6000 && stopped === null; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.notEqual(stopped, null, 'the run reached its second phase');
    await stopped;
    assert.equal(loop.lastReport, null, 'the run did not finish');
    assert.equal(await store.exists(orphan), true);
  });
});
