// `twinlayer restore` of a commit GC's retention removed says so (issue 12, review of gc12): the walk down the
// container's chain passed a full checkpoint and then found the record missing: retired, with the oldest restorable
// commit named, not "missing from the journal". planRestore against the embedded S3 server after a real GC run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { planRestore, RestoreRefusedError } from '../../../src/cli/restore-plan.js';
import { asDigest, Bucket, runGc, type CommitRecord, type Generation, type Seq, type S3BlobStore } from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

const H = 3600_000;
const g1 = 1 as Generation;

describe('restore of a commit retired by retention', { timeout: 60_000 }, () => {
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

  it('names retention and the oldest restorable commit', async () => {
    const bucket = new Bucket(store, { prefix: 'tl/restore', group: 'retired', signatures: testSignatures() });
    await bucket.claimGeneration({ version: 1, generation: g1, host: 'a', claimedAt: new Date(Date.now() - 2 * H).toISOString(), from: { generation: 0 as Generation, containers: {} } });
    const kinds: Array<'full' | 'delta'> = ['full', 'delta', 'full', 'delta'];
    for (let seq = 1; seq <= 4; seq++) {
      const body = Buffer.from(`web ${seq}`);
      const digest = asDigest(createHash('sha256').update(body).digest('hex'));
      await store.put(bucket.blobKey(digest), body);
      const at = new Date().toISOString();
      const rec: CommitRecord = {
        version: 1, seq: seq as Seq, parentSeq: (seq - 1) as Seq, generation: g1, container: 'web', digest, size: body.length, kind: kinds[seq - 1]!,
        counts: { files: 1, deletions: 0, bytes: body.length }, firstWriteAt: at, publishedAt: at, writer: 'a',
      };
      await bucket.writeRecord(rec);
    }
    await bucket.writeHead({ version: 1, generation: g1, seq: 4 as Seq, writer: 'a', updatedAt: new Date().toISOString(), containers: { web: 4 as Seq }, lastFull: { web: 3 as Seq } });
    const report = await runGc(bucket, { retentionMs: 24 * H, graceMs: H, now: () => Date.now() + 48 * H });
    assert.equal(report.deleted.record.objects, 2);
    await assert.rejects(planRestore(bucket, 'web', { kind: 'seq', seq: 2 as Seq }), (err: unknown) =>
      err instanceof RestoreRefusedError && /seq 2 of web was retired by retention .*from the full checkpoint at seq 3/.test(err.message));
    // Restoring a time before the window: the walk passes the full at 3, then finds 2 missing.
    await assert.rejects(planRestore(bucket, 'web', { kind: 'at', at: new Date(Date.now() - H) }), (err: unknown) =>
      err instanceof RestoreRefusedError && /seq 2 of web was retired by retention .*oldest restorable commit of it in this generation is the full checkpoint at seq 3/.test(err.message));
    const plan = await planRestore(bucket, 'web', { kind: 'seq', seq: 3 as Seq });
    assert.deepEqual(plan.commits.map((c) => c.seq), [3]);
  });
});
