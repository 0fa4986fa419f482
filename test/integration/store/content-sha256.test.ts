// A Buffer PUT whose sha256 the caller knows (a pack, named by it) sends it as x-amz-content-sha256 instead of the
// SDK's signer hashing the body again: the request still passes SigV4 as S3 checks it, the server (here the checking
// proxy, as S3 does) refuses a body that does not match it, and the pack store's uploads name their pack's digest.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import { KeyLayout, PackStore, S3BlobStore, StoreRequestError } from '../../../src/store/index.js';
import { startSigV4Proxy, type SigV4Proxy } from '../../support/sigv4-check.js';
import { TEST_CREDENTIALS, TEST_REGION, testS3Store, withS3, type TestS3 } from '../../support/s3.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('x-amz-content-sha256 from the caller', () => {
  let s3: TestS3;
  let checking: SigV4Proxy;
  let store: S3BlobStore;

  before(async () => {
    s3 = await withS3();
    checking = await startSigV4Proxy(s3.endpoint, TEST_CREDENTIALS, TEST_REGION, { checkPayload: true });
    store = testS3Store({ endpoint: checking.endpoint, bucket: s3.bucket });
  });
  after(async () => {
    store?.destroy();
    await checking?.close();
    await s3?.close();
  });

  it('sends the given sha256 as the payload hash, signed, and the object reads back', async () => {
    const body = randomBytes(100_000);
    const from = checking.checked.length;
    await store.put('tl/given.bin', body, { sha256: sha(body) });
    const puts = checking.checked.slice(from).filter((c) => c.method === 'PUT');
    assert.equal(puts.length, 1, JSON.stringify(puts));
    assert.equal(puts[0]!.ok, true, puts[0]!.reason);
    assert.equal(puts[0]!.payloadHash, sha(body));
    assert.deepEqual(await store.getBuffer('tl/given.bin', 1_000_000), body);
  });

  it('a body that does not match it is refused, and nothing is stored', async () => {
    const body = randomBytes(10_000);
    await assert.rejects(store.put('tl/wrong.bin', body, { sha256: sha(Buffer.from('other bytes')) }), (err: unknown) => {
      assert.ok(err instanceof StoreRequestError, String(err));
      assert.match(err.message, /XAmzContentSHA256Mismatch/);
      return true;
    });
    assert.equal(await store.exists('tl/wrong.bin'), false);
  });

  it('refuses a sha256 that is not 64 lowercase hex before sending anything', async () => {
    const from = checking.checked.length;
    await assert.rejects(store.put('tl/bad.bin', Buffer.from('x'), { sha256: 'ABC' }), /64 lowercase hex/);
    assert.equal(checking.checked.length, from);
  });

  it('a pack goes up with its own digest as the payload hash', async () => {
    const ps = new PackStore(store, new KeyLayout('twinlayer', 'g'), { packBytes: 64 * 1024, concurrency: 2 });
    const chunks = Array.from({ length: 6 }, () => randomBytes(40_000));
    const from = checking.checked.length;
    const sink = ps.openSink();
    for (const c of chunks) if (!(await sink.known(sha(c)))) await sink.add(sha(c), [c]);
    const whole = Buffer.concat(chunks);
    await sink.finish([{ path: 'f', size: whole.length, digest: sha(whole), chunks: chunks.map((c) => [sha(c), c.length] as const) }]);
    const packPuts = checking.checked.slice(from).filter((c) => c.method === 'PUT' && c.path.includes('/packs/'));
    assert.ok(packPuts.length >= 2, `several packs: ${JSON.stringify(packPuts)}`);
    for (const p of packPuts) {
      assert.equal(p.ok, true, p.reason);
      assert.ok(p.path.split('?')[0]!.endsWith(`/${p.payloadHash}`), `the pack's key names the payload hash it was sent with: ${p.path} ${p.payloadHash}`);
    }
  });
});
