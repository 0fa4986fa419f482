// The months bench's request accounting (pure): what an S3 request seen at the fault proxy is, which of the primary's
// run on a clock (its fence: not scaled by the bench's time compression), and a month's cost at the list prices.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { classifyRequest, isFenceProbe, isStandbyClock, monthlyRequestCost, monthlyStorageCost, S3_PRICES } from '../../../bench/lib/s3-cost.js';

const B = '/twinlayer-lab';
const G = 'twinlayer/lab';

describe('classifyRequest', () => {
  it('names the operation the AWS SDK sent, path style', () => {
    assert.deepEqual(classifyRequest('GET', `${B}/${G}/gen/3/head.json?x-id=GetObject`), { kind: 'GET', object: 'head' });
    assert.deepEqual(classifyRequest('GET', `${B}/${G}/gen/4/claim.json?x-id=GetObject`), { kind: 'GET', object: 'claim' });
    assert.deepEqual(classifyRequest('PUT', `${B}/${G}/gen/3/journal/0000000000000012.json?x-id=PutObject`), { kind: 'PUT', object: 'record' });
    assert.deepEqual(classifyRequest('PUT', `${B}/${G}/blobs/sha256/ab/${'ab'.repeat(32)}?x-id=PutObject`), { kind: 'PUT', object: 'blob' });
    assert.deepEqual(classifyRequest('HEAD', `${B}/${G}/packs/sha256/cd/${'cd'.repeat(32)}`), { kind: 'HEAD', object: 'pack' });
    assert.deepEqual(classifyRequest('PUT', `${B}/${G}/containers/web/spec.json?x-id=CopyObject`), { kind: 'COPY', object: 'spec' });
    assert.deepEqual(classifyRequest('DELETE', `${B}/${G}/gen/1/released.json?x-id=DeleteObject`), { kind: 'DELETE', object: 'released' });
  });

  it('listings by the prefix they list; a multi-object delete is a DELETE, a multipart upload POSTs and PUTs', () => {
    assert.deepEqual(classifyRequest('GET', `${B}?list-type=2&prefix=${encodeURIComponent(`${G}/containers/`)}`), { kind: 'LIST', object: 'spec' });
    assert.deepEqual(classifyRequest('GET', `${B}/?list-type=2&prefix=${encodeURIComponent(`${G}/gen/`)}&start-after=x`), { kind: 'LIST', object: 'generation' });
    assert.deepEqual(classifyRequest('GET', `${B}?list-type=2&prefix=${encodeURIComponent(`${G}/gen/7/journal/`)}`), { kind: 'LIST', object: 'record' });
    assert.deepEqual(classifyRequest('GET', `${B}?list-type=2&prefix=${encodeURIComponent(`${G}/`)}`), { kind: 'LIST', object: 'group' });
    assert.deepEqual(classifyRequest('POST', `${B}?delete=&x-id=DeleteObjects`), { kind: 'DELETE', object: 'group' });
    assert.equal(classifyRequest('POST', `${B}/${G}/blobs/sha256/ab/${'ab'.repeat(32)}?uploads&x-id=CreateMultipartUpload`).kind, 'POST');
    assert.equal(classifyRequest('PUT', `${B}/${G}/blobs/sha256/ab/${'ab'.repeat(32)}?partNumber=1&uploadId=u&x-id=UploadPart`).kind, 'PUT');
  });
});

describe('isFenceProbe', () => {
  it("the primary's probes of the next generation (nothing there); not GC's reads of the generations", () => {
    assert.equal(isFenceProbe({ kind: 'GET', object: 'claim' }, 404), true);
    assert.equal(isFenceProbe({ kind: 'GET', object: 'head' }, 404), true);
    assert.equal(isFenceProbe({ kind: 'GET', object: 'head' }, 200), false, "GC reads the generations' heads");
    assert.equal(isFenceProbe({ kind: 'GET', object: 'claim' }, 200), false);
    assert.equal(isFenceProbe({ kind: 'PUT', object: 'head' }, 200), false);
    assert.equal(isFenceProbe({ kind: 'LIST', object: 'group' }, 200), false);
  });
});

describe('isStandbyClock', () => {
  it('head polls, generation probes, spec and generation listings; not the records, blobs and specs commits bring', () => {
    assert.equal(isStandbyClock({ kind: 'GET', object: 'head' }), true);
    assert.equal(isStandbyClock({ kind: 'GET', object: 'claim' }), true);
    assert.equal(isStandbyClock({ kind: 'LIST', object: 'spec' }), true);
    assert.equal(isStandbyClock({ kind: 'LIST', object: 'generation' }), true);
    assert.equal(isStandbyClock({ kind: 'LIST', object: 'record' }), false);
    assert.equal(isStandbyClock({ kind: 'GET', object: 'record' }), false);
    assert.equal(isStandbyClock({ kind: 'GET', object: 'blob' }), false);
    assert.equal(isStandbyClock({ kind: 'GET', object: 'spec' }), false);
  });
});

describe('monthly cost', () => {
  it('requests at their tier over 730 h; DELETE free; storage per GB of 2^30 bytes', () => {
    // 1000 PUTs and 1000 GETs an hour: 730 * (0.005 + 0.0004).
    assert.equal(Math.round(monthlyRequestCost({ PUT: 1000, GET: 1000, DELETE: 1e6 }) * 1e6), Math.round(730 * 0.0054 * 1e6));
    assert.equal(monthlyRequestCost({ LIST: 2000 }), 730 * 2 * S3_PRICES.tier1Per1000);
    assert.equal(monthlyStorageCost(2 ** 30), 0.023);
  });
});
