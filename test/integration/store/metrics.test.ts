// The store seam counts what the bucket sees: every request by kind (retries included) against the embedded S3 server
// behind the fault proxy, whose own count of the requests it carried must equal the sum; bytes up and down are the
// object bodies moved; a request that fails for good is one failure of kind "bucket".
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { bucketRequestKinds, Metrics, type BucketRequestKind } from '../../../src/metrics/index.js';
import type { S3BlobStore } from '../../../src/store/index.js';
import { parsePrometheusText, sampleValue } from '../../support/prom-text.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

describe('bucket request metrics at the store seam', () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  let store: S3BlobStore;
  let work: string;
  const metrics = new Metrics({ processMetrics: false });

  const read = async (): Promise<{ requests: Record<BucketRequestKind, number>; up: number; down: number; failures: number }> => {
    const f = parsePrometheusText(await metrics.render());
    const requests = Object.fromEntries(bucketRequestKinds.map((kind) => [kind, sampleValue(f, 'twinlayer_bucket_requests_total', { kind })])) as Record<BucketRequestKind, number>;
    return {
      requests,
      up: sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'up' }),
      down: sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'down' }),
      failures: sampleValue(f, 'twinlayer_failures_total', { kind: 'bucket' }),
    };
  };
  const total = (r: Record<BucketRequestKind, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

  before(async () => {
    s3 = await withS3();
    proxy = await startFaultProxy(s3.endpoint);
    store = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { metrics, requestTimeoutMs: 1_000 });
    work = await mkdtemp(join(tmpdir(), 'twinlayer-metrics-'));
  });
  after(async () => {
    store?.destroy();
    await proxy?.close();
    await s3?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('each kind counts the requests the bucket received, and the bytes of the bodies moved', async () => {
    const start = proxy.stats.requests;
    const small = Buffer.from('a small object');
    const big = Buffer.alloc(300_000, 7);
    await writeFile(join(work, 'big'), big);
    await store.put('m/small', small);
    await store.put('m/big', { file: join(work, 'big') });
    assert.equal(await store.putIfAbsent('m/claim', small), true);
    assert.equal(await store.putIfAbsent('m/claim', Buffer.from('another')), false, 'the second create is refused (412): a request all the same');
    assert.equal((await store.getBuffer('m/small', 1000))?.toString(), 'a small object');
    assert.equal(await store.getToFile('m/big', join(work, 'copy')), true);
    assert.deepEqual(await readFile(join(work, 'copy')), big);
    const first = await store.getIfNoneMatch('m/small', undefined, 1000);
    assert.equal(first.status, 'ok');
    assert.equal((await store.getIfNoneMatch('m/small', first.status === 'ok' ? first.etag : undefined, 1000)).status, 'unchanged', 'a 304 moves no body');
    assert.equal(await store.getBuffer('m/missing', 1000), null);
    assert.equal(await store.exists('m/small'), true);
    const keys: string[] = [];
    for await (const k of store.list('m/')) keys.push(k);
    assert.deepEqual(keys, ['m/big', 'm/claim', 'm/small']);
    await store.delete('m/claim');

    const r = await read();
    assert.deepEqual(r.requests, { GET: 5, PUT: 4, LIST: 1, HEAD: 1, DELETE: 1 });
    assert.equal(total(r.requests), proxy.stats.requests - start, 'every request the proxy carried is counted once');
    assert.equal(r.up, small.length * 2 + big.length, 'two small bodies and the big file went up (the refused create did not)');
    assert.equal(r.down, small.length * 2 + big.length, 'the small object twice and the big one came down');
    assert.equal(r.failures, 0);
  });

  it('retries are requests too; a request that fails after its retries is one bucket failure', async () => {
    const before = await read();
    const start = proxy.stats.requests;
    proxy.fail('error500', 2);
    assert.equal((await store.getBuffer('m/small', 1000))?.toString(), 'a small object');
    let r = await read();
    assert.equal(r.requests.GET - before.requests.GET, 3, 'two failed attempts and the one that answered');
    assert.equal(r.failures, before.failures, 'retried into success: no failure');

    proxy.fail('error500', Infinity);
    await assert.rejects(store.put('m/never', Buffer.from('x')), /S3 put failed after 5 attempt/);
    proxy.pass();
    r = await read();
    assert.equal(r.requests.PUT - before.requests.PUT, 5);
    assert.equal(r.failures - before.failures, 1);
    assert.equal(r.up, before.up, 'nothing was stored: no bytes up');
    assert.equal(total(r.requests) - total(before.requests), proxy.stats.requests - start);
  });

  it('a fault limited to one method and path hits only those requests (what the agent metrics test relies on)', async () => {
    const before = await read();
    proxy.fail('error500', Infinity, { method: 'GET', path: /\/m\/small$/ });
    try {
      await assert.rejects(store.getBuffer('m/small', 1000), /S3 get failed after 5 attempt/);
      assert.equal(await store.exists('m/small'), true, 'a HEAD of the same key passes');
      assert.equal((await store.getBuffer('m/big', 1_000_000))?.length, 300_000, 'a GET of another key passes');
    } finally {
      proxy.pass();
    }
    const r = await read();
    assert.equal(r.requests.GET - before.requests.GET, 6);
    assert.equal(r.requests.HEAD - before.requests.HEAD, 1);
    assert.equal(r.failures - before.failures, 1);
  });
});
