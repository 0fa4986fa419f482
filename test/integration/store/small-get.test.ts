// The store's lean signed GET for small objects (src/store/s3-small-get.ts), against the embedded S3 server and a
// fault proxy in front of it: it reads what the AWS SDK wrote, with the SDK's ETag, under any key the SDK writes;
// it answers 304 as `unchanged` and a missing object as `missing`; and it fails as the SDK's GetObject failed
// before it: a missing bucket by name, wrong credentials (403) named and not retried, 5xx and torn or hung answers
// retried, an answer too large refused.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { BucketMissingError, ObjectTooLargeError, S3BlobStore, StoreRequestError, StoreUnreachableError } from '../../../src/store/index.js';
import { startSigV4Proxy } from '../../support/sigv4-check.js';
import { TEST_CREDENTIALS, TEST_REGION, TEST_RETRY, testS3Store, uniqueBucketName, withS3, type TestS3 } from '../../support/s3.js';

describe('small GETs (head polls) without the SDK', () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  let store: S3BlobStore;
  let sdk: S3Client;
  const others: S3BlobStore[] = [];

  before(async () => {
    s3 = await withS3();
    proxy = await startFaultProxy(s3.endpoint);
    store = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { smallRequestTimeoutMs: 300 });
    sdk = new S3Client({
      region: TEST_REGION, endpoint: s3.endpoint, forcePathStyle: true, credentials: { ...TEST_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
  });
  afterEach(() => proxy.pass());
  after(async () => {
    store?.destroy();
    sdk?.destroy();
    for (const o of others) o.destroy();
    await proxy?.close();
    await s3?.close();
  });

  const sdkEtag = async (key: string): Promise<string | undefined> => {
    const out = await sdk.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
    await out.Body?.transformToByteArray();
    return out.ETag;
  };

  it('reads what the SDK wrote, under keys that need escaping, with the ETag the SDK reads', async () => {
    const keys = ['tl/g/gen/0000000001/head.json', 'tl/g/containers/web app+1 (x)!*~/spec.json', "tl/g/ünï'cødé/=&;$,@:.json"];
    for (const key of keys) {
      const body = Buffer.from(JSON.stringify({ key, seq: 7 }));
      await store.put(key, body);
      const got = await store.getIfNoneMatch(key, undefined, 4096);
      assert.equal(got.status, 'ok', key);
      assert.ok(got.status === 'ok');
      assert.deepEqual(got.body, body, key);
      assert.equal(got.etag, await sdkEtag(key), key);
    }
  });

  it('answers unchanged to its ETag, the new bytes after an overwrite, missing when deleted', async () => {
    const key = 'tl/g/gen/0000000002/head.json';
    await store.put(key, Buffer.from('{"seq":1}'));
    const first = await store.getIfNoneMatch(key, undefined, 1024);
    assert.ok(first.status === 'ok');
    assert.deepEqual(await store.getIfNoneMatch(key, first.etag, 1024), { status: 'unchanged' });
    await store.put(key, Buffer.from('{"seq":2}'));
    const second = await store.getIfNoneMatch(key, first.etag, 1024);
    assert.ok(second.status === 'ok');
    assert.equal(second.body.toString(), '{"seq":2}');
    assert.notEqual(second.etag, first.etag);
    await store.delete(key);
    assert.deepEqual(await store.getIfNoneMatch(key, second.etag, 1024), { status: 'missing' });
    assert.equal(await store.getBuffer('tl/never/written.json', 1024), null);
  });

  it('refuses an object larger than allowed without reading it', async () => {
    await store.put('tl/big.json', Buffer.alloc(10_000, 1));
    await assert.rejects(store.getIfNoneMatch('tl/big.json', undefined, 9_999), (err: unknown) => err instanceof ObjectTooLargeError && err.context['size'] === 10_000);
    assert.equal((await store.getIfNoneMatch('tl/big.json', undefined, 10_000)).status, 'ok');
  });

  it('names a missing bucket', async () => {
    const missing = testS3Store({ endpoint: proxy.endpoint, bucket: uniqueBucketName('missing') });
    others.push(missing);
    await assert.rejects(missing.getIfNoneMatch('tl/head.json', undefined, 100), (err: unknown) => err instanceof BucketMissingError && err.message.includes(missing.bucket));
  });

  it('names wrong credentials (403 InvalidAccessKeyId) and does not retry them', async () => {
    await store.put('tl/private.json', Buffer.from('{}'));
    const wrongKey = new S3BlobStore({
      bucket: s3.bucket, region: TEST_REGION, endpoint: proxy.endpoint, pathStyle: true,
      credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'wrong' }, retry: { attempts: 5, baseMs: 1, maxMs: 5 },
    });
    others.push(wrongKey);
    const requests = proxy.stats.requests;
    await assert.rejects(wrongKey.getIfNoneMatch('tl/private.json', undefined, 100), (err: unknown) => {
      assert.ok(err instanceof StoreRequestError, String(err));
      assert.match(err.message, /after 1 attempt\(s\): HTTP 403 InvalidAccessKeyId/);
      return true;
    });
    assert.equal(proxy.stats.requests - requests, 1);
  });

  it('signs as S3 checks it (SigV4 verified from the specification, which the SDK\'s own requests pass too); a wrong secret is refused as 403 SignatureDoesNotMatch', async () => {
    const checking = await startSigV4Proxy(s3.endpoint, TEST_CREDENTIALS, TEST_REGION);
    const signedStore = testS3Store({ endpoint: checking.endpoint, bucket: s3.bucket });
    const wrongSecret = new S3BlobStore({
      bucket: s3.bucket, region: TEST_REGION, endpoint: checking.endpoint, pathStyle: true,
      credentials: { accessKeyId: TEST_CREDENTIALS.accessKeyId, secretAccessKey: `${TEST_CREDENTIALS.secretAccessKey}x` }, retry: { attempts: 5, baseMs: 1, maxMs: 5 },
    });
    others.push(signedStore, wrongSecret);
    try {
      const key = "tl/sig v4/a+b=c!*'()&ü~.json";
      await signedStore.put(key, Buffer.from('{"signed":true}'));
      assert.ok(checking.checked.length > 0 && checking.checked.every((c) => c.ok), `the SDK's PUT passes the check: ${JSON.stringify(checking.checked)}`);
      const lean = checking.checked.length;
      const got = await signedStore.getIfNoneMatch(key, undefined, 100);
      assert.equal(got.status, 'ok');
      const again = await signedStore.getIfNoneMatch(key, got.status === 'ok' ? got.etag : undefined, 100);
      assert.equal(again.status, 'unchanged');
      const leanChecks = checking.checked.slice(lean);
      assert.ok(leanChecks.length === 2 && leanChecks.every((c) => c.ok), `the lean GETs pass the check: ${JSON.stringify(leanChecks)}`);
      await assert.rejects(wrongSecret.getIfNoneMatch(key, undefined, 100), (err: unknown) => {
        assert.ok(err instanceof StoreRequestError, String(err));
        assert.match(err.message, /HTTP 403 SignatureDoesNotMatch/);
        return true;
      });
    } finally {
      await checking.close();
    }
  });

  it('addresses the bucket as the SDK does: an IP endpoint without path style is still addressed by path', async () => {
    // Virtual-host style would send the GET to <bucket>.127.0.0.1, which no resolver knows; the SDK's endpoint rules
    // go path style for an IP address, and the lean GET asks them.
    const checking = await startSigV4Proxy(s3.endpoint, TEST_CREDENTIALS, TEST_REGION);
    const byIp = new S3BlobStore({ bucket: s3.bucket, region: TEST_REGION, endpoint: checking.endpoint, pathStyle: false, credentials: { ...TEST_CREDENTIALS }, retry: TEST_RETRY });
    others.push(byIp);
    try {
      await byIp.put('tl/by-ip.json', Buffer.from('{"ip":true}'));
      const got = await byIp.getIfNoneMatch('tl/by-ip.json', undefined, 100);
      assert.equal(got.status, 'ok');
      assert.equal(got.status === 'ok' ? got.body.toString() : '', '{"ip":true}');
      assert.ok(checking.checked.every((c) => c.ok && c.path.startsWith(`/${s3.bucket}/`)), JSON.stringify(checking.checked));
    } finally {
      await checking.close();
    }
  });

  it('learns the server\'s clock from a RequestTimeTooSkewed answer and signs the next attempt with it', async () => {
    const twoHoursAhead = await startSigV4Proxy(s3.endpoint, TEST_CREDENTIALS, TEST_REGION, { clockOffsetMs: 2 * 3600_000, answerGets: Buffer.from('{"skew":true}') });
    const skewed = testS3Store({ endpoint: twoHoursAhead.endpoint, bucket: s3.bucket });
    others.push(skewed);
    try {
      const got = await skewed.getIfNoneMatch('tl/skew.json', undefined, 100);
      assert.equal(got.status === 'ok' ? got.body.toString() : got.status, '{"skew":true}');
      assert.deepEqual(twoHoursAhead.checked.map((c) => c.ok), [false, true], JSON.stringify(twoHoursAhead.checked));
      assert.match(twoHoursAhead.checked[0]?.reason ?? '', /more than 15 min/);
      // Learned once: the next request is signed with the server's time at once.
      assert.equal((await skewed.getIfNoneMatch('tl/skew.json', undefined, 100)).status, 'ok');
      assert.equal(twoHoursAhead.checked.length, 3);
    } finally {
      await twoHoursAhead.close();
    }
  });

  it('signs with the credentials of the SDK chain when none are configured (the environment here)', async (t) => {
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    t.after(() => {
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    await store.put('tl/env.json', Buffer.from('{"env":true}'));
    const fromEnv = (id: string): S3BlobStore => {
      process.env['AWS_ACCESS_KEY_ID'] = id;
      process.env['AWS_SECRET_ACCESS_KEY'] = 'whatever';
      const s = new S3BlobStore({ bucket: s3.bucket, region: TEST_REGION, endpoint: proxy.endpoint, pathStyle: true, retry: TEST_RETRY });
      others.push(s);
      return s;
    };
    assert.equal((await fromEnv(TEST_CREDENTIALS.accessKeyId).getBuffer('tl/env.json', 100))?.toString(), '{"env":true}');
    // The key the server saw was the environment's: another one is refused by name.
    await assert.rejects(fromEnv('SOMEONE-ELSE').getBuffer('tl/env.json', 100), /InvalidAccessKeyId/);
  });

  it('retries 500, 503 SlowDown, resets, torn and hung answers, then reads the object', async () => {
    const body = Buffer.from(JSON.stringify({ seq: 9, pad: 'p'.repeat(500) }));
    await store.put('tl/faults.json', body);
    for (const fault of ['error500', 'slowdown', 'reset', 'truncate', 'hang'] as const) {
      const before = proxy.stats.faults[fault];
      proxy.fail(fault, 2, { method: 'GET' });
      const got = await store.getIfNoneMatch('tl/faults.json', undefined, 4096);
      assert.ok(got.status === 'ok', fault);
      assert.deepEqual(got.body, body, fault);
      assert.equal(proxy.stats.faults[fault] - before, 2, fault);
    }
  });

  it('after the last attempt names the server error, or the endpoint that never answered', async () => {
    await store.put('tl/down.json', Buffer.from('{}'));
    proxy.fail('error500', Infinity, { method: 'GET' });
    await assert.rejects(store.getIfNoneMatch('tl/down.json', undefined, 100), (err: unknown) => {
      assert.ok(err instanceof StoreRequestError, String(err));
      assert.match(err.message, new RegExp(`after ${TEST_RETRY.attempts} attempt\\(s\\): HTTP 500 InternalError`));
      return true;
    });
    proxy.fail('hang', Infinity, { method: 'GET' });
    const started = Date.now();
    await assert.rejects(store.getIfNoneMatch('tl/down.json', undefined, 100), (err: unknown) => {
      assert.ok(err instanceof StoreUnreachableError, String(err));
      assert.match(err.message, /TimeoutError/);
      return true;
    });
    // Each attempt is bounded by the 300 ms small-request timeout.
    assert.ok(Date.now() - started < TEST_RETRY.attempts * 300 + 5_000, `took ${Date.now() - started} ms`);
  });
});
