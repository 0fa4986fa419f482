// The store's lean signed listing (ListObjects pages by s3-small-get.ts, read by s3-list-page.ts), against the
// embedded S3 server, the SigV4 checking proxy in front of it and crafted answers: it lists what the SDK lists (keys
// that need escaping in the prefix, the marker and the XML, sizes, times), page by page after the marker; it signs as
// S3 checks it; and a malformed or looping answer is refused with the prefix named, not retried and not followed.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { ListObjectsCommand, S3Client } from '@aws-sdk/client-s3';

import { BucketMissingError, S3BlobStore, StoreRequestError, type ListedObject } from '../../../src/store/index.js';
import { startSigV4Proxy } from '../../support/sigv4-check.js';
import { TEST_CREDENTIALS, TEST_REGION, testS3Store, uniqueBucketName, withS3, type TestS3 } from '../../support/s3.js';

async function listAll(store: S3BlobStore, prefix: string, startAfter?: string): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const o of store.listObjects(prefix, startAfter)) out.push(o);
  return out;
}

// Keys a spec or record name could make, and what escaping gets wrong: spaces, +, =, &, <, quotes, non-ASCII.
const ODD = ["a b+c=d&e", "<x>'\"", 'ünï~cødé', '(1)!*', 'plain'];

describe('listing pages without the SDK', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let sdk: S3Client;
  const others: S3BlobStore[] = [];

  before(async () => {
    s3 = await withS3();
    store = testS3Store({ endpoint: s3.endpoint, bucket: s3.bucket });
    sdk = new S3Client({
      region: TEST_REGION, endpoint: s3.endpoint, forcePathStyle: true, credentials: { ...TEST_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
  });
  after(async () => {
    store?.destroy();
    sdk?.destroy();
    for (const o of others) o.destroy();
    await s3?.close();
  });

  it("lists what the SDK's ListObjects lists, under a prefix and after a marker that need escaping", async () => {
    const prefix = 'tl/g p+&ü/';
    const keys = ODD.flatMap((n, i) => [`${prefix}${n}/spec.json`, `${prefix}${n}/x${i}`]);
    for (const [i, k] of keys.entries()) await store.put(k, Buffer.alloc(i + 1, 1));
    await store.put('tl/g p+&ü', Buffer.from('beside the prefix'));
    const sdkList = await sdk.send(new ListObjectsCommand({ Bucket: s3.bucket, Prefix: prefix }));
    const expected = (sdkList.Contents ?? []).map((o) => ({ key: o.Key, size: o.Size, lastModified: o.LastModified?.getTime() }));
    assert.equal(expected.length, keys.length);
    assert.deepEqual(await listAll(store, prefix), expected);
    const marker = expected[3]?.key;
    assert.ok(marker !== undefined);
    assert.deepEqual(await listAll(store, prefix, marker), expected.slice(4));
    assert.deepEqual(await listAll(store, `${prefix}nothing`), []);
  });

  it('signs as S3 checks it (prefix, marker and max-keys in the canonical query); a wrong secret is refused as 403 SignatureDoesNotMatch', async () => {
    const checking = await startSigV4Proxy(s3.endpoint, TEST_CREDENTIALS, TEST_REGION);
    const signed = testS3Store({ endpoint: checking.endpoint, bucket: s3.bucket });
    const wrongSecret = new S3BlobStore({
      bucket: s3.bucket, region: TEST_REGION, endpoint: checking.endpoint, pathStyle: true,
      credentials: { accessKeyId: TEST_CREDENTIALS.accessKeyId, secretAccessKey: `${TEST_CREDENTIALS.secretAccessKey}x` }, retry: { attempts: 5, baseMs: 1, maxMs: 5 },
    });
    others.push(signed, wrongSecret);
    try {
      const prefix = "tl/sig v4/a+b=c!*'()&ü~/";
      const keys = ODD.map((n) => `${prefix}${n}`).sort();
      for (const k of keys) await signed.put(k, Buffer.from(k));
      const from = checking.checked.length;
      assert.deepEqual((await listAll(signed, prefix)).map((o) => o.key), keys);
      assert.deepEqual((await listAll(signed, prefix, keys[1])).map((o) => o.key), keys.slice(2));
      const lists = checking.checked.slice(from);
      assert.equal(lists.length, 2);
      assert.ok(lists.every((c) => c.ok && c.method === 'GET' && /[?&]prefix=/.test(c.path)), `the lean listings pass the check: ${JSON.stringify(lists)}`);
      assert.match(lists[1]?.path ?? '', /[?&]marker=/);
      await assert.rejects(listAll(wrongSecret, prefix), (err: unknown) => {
        assert.ok(err instanceof StoreRequestError, String(err));
        assert.match(err.message, /after 1 attempt\(s\): HTTP 403 SignatureDoesNotMatch/);
        return true;
      });
    } finally {
      await checking.close();
    }
  });

  it('names a missing bucket', async () => {
    const missing = testS3Store({ endpoint: s3.endpoint, bucket: uniqueBucketName('missing') });
    others.push(missing);
    await assert.rejects(listAll(missing, 'tl/'), (err: unknown) => err instanceof BucketMissingError && err.message.includes(missing.bucket));
  });

  describe('a server whose answers are not listings of what was asked', () => {
    let server: Server;
    let answer = '';
    let requests = 0;
    before(async () => {
      server = createServer((req, res) => {
        requests++;
        req.resume();
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(answer);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    const page = (keys: string[], truncated: boolean): string => `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>tl/</Prefix>`
      + `<IsTruncated>${String(truncated)}</IsTruncated>${keys.map((k) => `<Contents><Key>${k}</Key><Size>1</Size></Contents>`).join('')}</ListBucketResult>`;

    for (const [what, body, reason] of [
      ['a torn document', page(['tl/a'], false).replace('</ListBucketResult>', ''), /ends inside <ListBucketResult>/],
      ['a key outside the prefix', page(['tl/a', 'other/b'], false), /key "other\/b" is not under the prefix/],
      ['the same truncated page again and again', page(['tl/a'], true), /key "tl\/a" does not sort after the marker "tl\/a"/],
    ] as const) {
      it(`refuses ${what} with the prefix named, and does not retry it`, async () => {
        const crafted = testS3Store({ endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bucket: 'b' });
        others.push(crafted);
        answer = body;
        const before = requests;
        await assert.rejects(listAll(crafted, 'tl/'), (err: unknown) => {
          assert.ok(err instanceof StoreRequestError, String(err));
          assert.match(err.message, /listing of prefix "tl\/" is malformed/);
          assert.match(err.message, reason);
          return true;
        });
        // The looping page: the first page is read, the second (after its last key) refused.
        assert.equal(requests - before, what.startsWith('the same') ? 2 : 1);
      });
    }
  });
});
