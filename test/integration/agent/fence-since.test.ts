// The fence's check for a write that replaces what another generation's writer may have put (spec.json): it must be
// a look at the bucket begun after the read the put is conditional on, not the confirmation of up to an interval ago
// that a record's publish accepts. The embedded S3 server; the successor is played through the bucket.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fence, FencedError } from '../../../src/agent/fence.js';
import { startS3Server } from '../../../src/s3server/index.js';
import { Bucket, type Generation, type S3BlobStore } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { testS3Store } from '../../support/s3.js';
import { testSignatures } from '../../support/signing.js';

const BUCKET = 'twinlayer-fence-since';

describe('fence: assertOwnerSince looks at the bucket after the given time', { timeout: 60_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let store: S3BlobStore;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-fence-since-'));
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    store = testS3Store({ endpoint: s3.endpoint, bucket: BUCKET });
  });

  after(async () => {
    store?.destroy();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('a successor claimed after the last confirmation: assertOwner still passes within the interval, assertOwnerSince refuses', async () => {
    const bucket = new Bucket(store, { prefix: 'twinlayer', group: 'since', signatures: testSignatures() });
    let fenced = 0;
    const fence = new Fence({ bucket, generation: 1 as Generation, intervalMs: 60_000, log: silentLogger, onFenced: () => (fenced += 1) });
    await fence.assertOwnerSince(performance.now());
    assert.ok(fence.lastConfirmedAt > 0);
    const read = performance.now();
    assert.deepEqual(await bucket.claimGeneration({ version: 1, generation: 2 as Generation, host: 'host-b', claimedAt: new Date().toISOString(), from: { generation: 1 as Generation, containers: {} } }), { won: true });
    // Within the interval a record's publish trusts the last confirmation (that is its bound)…
    await fence.assertOwner();
    assert.equal(fenced, 0);
    // …the spec's put does not: a check begun after its read sees the successor.
    await assert.rejects(fence.assertOwnerSince(read), (err) => err instanceof FencedError && /host host-b owns generation 2/.test(err.message));
    assert.equal(fenced, 1);
    await assert.rejects(fence.assertOwner(), FencedError);
  });
  it('a step back of the wall clock does not make the last confirmation count as begun after a later read', async () => {
    const bucket = new Bucket(store, { prefix: 'twinlayer', group: 'clock-step', signatures: testSignatures() });
    const fence = new Fence({ bucket, generation: 1 as Generation, intervalMs: 60_000, log: silentLogger, onFenced: () => undefined });
    await fence.assertOwnerSince(performance.now());
    const wallNow = Date.now;
    const hourAgo = wallNow() - 3_600_000;
    // NTP steps the clock back an hour between the confirmation and the read.
    Date.now = () => hourAgo;
    try {
      const read = performance.now();
      assert.deepEqual(await bucket.claimGeneration({ version: 1, generation: 2 as Generation, host: 'host-b', claimedAt: new Date(wallNow()).toISOString(), from: { generation: 1 as Generation, containers: {} } }), { won: true });
      await assert.rejects(fence.assertOwnerSince(read), FencedError);
    } finally {
      Date.now = wallNow;
    }
  });
  it('a suspend (the wall clock went on, the monotonic clock did not) makes the next publish check again', async () => {
    const bucket = new Bucket(store, { prefix: 'twinlayer', group: 'suspend', signatures: testSignatures() });
    const fence = new Fence({ bucket, generation: 1 as Generation, intervalMs: 60_000, log: silentLogger, onFenced: () => undefined });
    await fence.assertOwner();
    assert.deepEqual(await bucket.claimGeneration({ version: 1, generation: 2 as Generation, host: 'host-b', claimedAt: new Date().toISOString(), from: { generation: 1 as Generation, containers: {} } }), { won: true });
    await fence.assertOwner();
    const wallNow = Date.now;
    // The host slept two intervals: performance.now() stood still meanwhile.
    Date.now = () => wallNow() + 120_000;
    try {
      await assert.rejects(fence.assertOwner(), FencedError);
    } finally {
      Date.now = wallNow;
    }
  });
});
