// listDivergent and listSpecNames stop at their bound: the first items in key order, and how many were left out
// (counted from the keys, none of them read), against the embedded S3 server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { asDigest, Bucket, type DivergentRecord, type Generation, type S3BlobStore, type Seq } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { testSignatures } from '../../support/signing.js';
import { WrappedStore } from './helpers.js';

describe('bounded listings of tails and specs', { timeout: 60_000 }, () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let work = '';
  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
    work = await mkdtemp(join(tmpdir(), 'tl-bounded-'));
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('returns the first `max` and reports the rest without reading them', async () => {
    const wrap = new WrappedStore(store);
    const b = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'bounded' });
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      await b.putSpec(name, { name });
      const body = `tail of ${name}`;
      const file = join(work, name);
      await writeFile(file, body);
      const record: DivergentRecord = {
        version: 1, host: 'host-a', generation: 1 as Generation, claimGeneration: 2 as Generation, container: name, fromSeq: 1 as Seq, lastShippedSeq: 2 as Seq,
        digest: asDigest(createHash('sha256').update(body).digest('hex')), size: body.length, counts: { files: 1, deletions: 0, bytes: body.length },
        savedAt: new Date().toISOString(), reason: 'demoted',
      };
      await b.putDivergent(record, file);
    }
    const left: Array<[number, boolean]> = [];
    assert.deepEqual(await b.listSpecNames({ max: 2, onTruncated: (n, atLeast) => left.push([n, atLeast]) }), ['a', 'b']);
    assert.deepEqual(left, [[3, false]]);
    assert.deepEqual(await b.listSpecNames({ max: 5, onTruncated: () => assert.fail('nothing left out') }), ['a', 'b', 'c', 'd', 'e']);

    const read = wrap.keysRead.length;
    const tails = await b.listDivergent(undefined, { max: 3, onTruncated: (n, atLeast) => left.push([n, atLeast]) });
    assert.deepEqual(tails.map((t) => ('record' in t ? t.record.container : t.error)), ['a', 'b', 'c']);
    assert.deepEqual(left.at(-1), [2, false]);
    assert.deepEqual(wrap.keysRead.slice(read).map((k) => k.split('/').at(-2)), ['a', 'b', 'c'], 'only the tails returned are read');
  });
});
