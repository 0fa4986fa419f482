// Large files go up as multipart uploads (issue 13 item 4): parts in parallel, read from the file as they go, the
// object whole at completion or not at all; a part that fails ends the attempt, which aborts the upload, and the
// retry starts a new one. Against s3rver behind the fault proxy, which shows every request the server answered.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';

import { S3BlobStore } from '../../../src/store/index.js';
import { startFaultProxy, type FaultProxy, type ProxyAnswer } from '../../../src/lab/fault-proxy.js';
import { TEST_CREDENTIALS, TEST_REGION, TEST_RETRY, withS3, type TestS3 } from '../../support/s3.js';

const MIB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('S3BlobStore: multipart uploads of large files', { timeout: 120_000 }, () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  let store: S3BlobStore;
  let work: string;
  let answers: ProxyAnswer[] = [];

  before(async () => {
    s3 = await withS3();
    proxy = await startFaultProxy(s3.endpoint);
    proxy.onAnswer((a) => answers.push(a));
    store = new S3BlobStore({
      bucket: s3.bucket, region: TEST_REGION, endpoint: proxy.endpoint, pathStyle: true, credentials: { ...TEST_CREDENTIALS },
      retry: TEST_RETRY, multipartFromBytes: 6 * MIB, partBytes: 5 * MIB, partConcurrency: 2,
    });
    work = await mkdtemp(join(tmpdir(), 'tl-multipart-'));
  });
  afterEach(() => {
    proxy.pass();
    answers = [];
  });
  after(async () => {
    store?.destroy();
    await proxy?.close();
    await s3?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function file(name: string, bytes: number): Promise<{ path: string; body: Buffer }> {
    const body = randomBytes(bytes);
    const path = join(work, name);
    await writeFile(path, body);
    return { path, body };
  }

  const parts = (): ProxyAnswer[] => answers.filter((a) => a.method === 'PUT' && /[?&]partNumber=/.test(a.path));

  it('a file from the threshold up goes in parts, and reads back whole', async () => {
    const { path, body } = await file('big', 12 * MIB + 123);
    await store.put('big/object', { file: path });
    assert.equal(answers.filter((a) => a.method === 'POST' && /[?&]uploads\b/.test(a.path)).length, 1, 'one multipart upload created');
    assert.equal(parts().length, 3, `three parts of 5 MiB at most: ${JSON.stringify(answers.map((a) => `${a.method} ${a.path}`))}`);
    assert.equal(answers.filter((a) => a.method === 'POST' && /[?&]uploadId=/.test(a.path)).length, 1, 'completed once');
    const back = join(work, 'big.back');
    await store.getToFile('big/object', back, 13 * MIB);
    assert.equal(sha(await readFile(back)), sha(body));
  });

  it('a file below the threshold goes in one PutObject', async () => {
    const { path, body } = await file('small', 5 * MIB);
    await store.put('small/object', { file: path });
    assert.equal(parts().length, 0);
    assert.deepEqual(answers.filter((a) => a.method === 'PUT').map((a) => a.path.replace(/\?.*$/, '')), [`/${s3.bucket}/small/object`]);
    assert.equal(sha((await store.getBuffer('small/object', 6 * MIB))!), sha(body));
  });

  it('a part cut off ends the attempt: the upload is aborted and a new one carries the file whole', async () => {
    const { path, body } = await file('cut', 11 * MIB);
    proxy.fail('reset', 1, { method: 'PUT' });
    await store.put('cut/object', { file: path });
    assert.equal(proxy.stats.faults.reset, 1, 'a part was cut off');
    assert.equal(answers.filter((a) => a.method === 'POST' && /[?&]uploads\b/.test(a.path)).length, 2, 'a second upload was created for the retry');
    assert.ok(answers.some((a) => a.method === 'DELETE' && /[?&]uploadId=/.test(a.path) && a.status === 204), `the failed upload was aborted: ${JSON.stringify(answers.map((a) => `${a.method} ${a.path} ${a.status}`))}`);
    // The server holds no parts of either upload any more (the aborted one's removed, the completed one's merged).
    assert.deepEqual(await readdir(join(s3.bucketDir, '._S3rver_uploads')).catch(() => []), []);
    assert.equal(sha((await store.getBuffer('cut/object', 12 * MIB))!), sha(body));
    const keys: string[] = [];
    for await (const k of store.list('cut/')) keys.push(k);
    assert.deepEqual(keys, ['cut/object'], 'nothing else under the key');
  });

  it('the embedded server refuses an unsigned abort of an upload (s3rver lets unsigned requests through as anonymous)', async () => {
    const res = await fetch(`${s3.endpoint}/${s3.bucket}/cut/object?uploadId=${'a'.repeat(32)}`, { method: 'DELETE' });
    assert.equal(res.status, 403, await res.text());
  });

  it('refuses a part size below S3\'s smallest part and a threshold not above it', () => {
    const base = { bucket: s3.bucket, region: TEST_REGION, endpoint: proxy.endpoint, pathStyle: true, credentials: { ...TEST_CREDENTIALS } };
    assert.throws(() => new S3BlobStore({ ...base, partBytes: 4 * MIB }), /partBytes.*at least 5242880/);
    assert.throws(() => new S3BlobStore({ ...base, partBytes: 8 * MIB, multipartFromBytes: 8 * MIB }), /multipartFromBytes.*above/);
  });
});
