// The S3 store through a fault proxy: resets, throttling, 5xx, hangs and torn bodies are retried and succeed (a
// stalled small request within the small bound, a conditional PUT whose stalled answer hid its write included);
// other 4xx are not retried; an unreachable endpoint or a missing bucket gives a clear error; a head write that
// fails after the last publish is retried by the journal writer until the head covers that publish.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  asDigest,
  BlobDigestMismatchError,
  Bucket,
  BucketMissingError,
  JournalWriter,
  readRange,
  S3BlobStore,
  StoreRequestError,
  StoreUnreachableError,
  type Generation,
} from '../../../src/store/index.js';
import { createLogger } from '../../../src/log/logger.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { TEST_REGION, TEST_RETRY, testS3Store, uniqueBucketName, withS3, type TestS3 } from '../../support/s3.js';
import { waitFor } from '../../../src/lab/wait.js';
import { logCollector, WrappedStore } from './helpers.js';
import { testSignatures } from '../../support/signing.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('S3BlobStore under faults', () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  let store: S3BlobStore;
  let work: string;
  const others: S3BlobStore[] = [];

  before(async () => {
    s3 = await withS3();
    proxy = await startFaultProxy(s3.endpoint);
    // A short idle timeout so a hung request fails fast; five attempts with millisecond backoff.
    store = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { requestTimeoutMs: 300 });
    work = await mkdtemp(join(tmpdir(), 'twinlayer-faults-'));
  });
  afterEach(() => proxy.pass());
  after(async () => {
    store?.destroy();
    for (const o of others) o.destroy();
    await proxy?.close();
    await s3?.close();
    await rm(work, { recursive: true, force: true });
  });

  /** A store whose socket timeout (60 s) is far above its small bound (300 ms): a stalled small request left to the
   *  socket timeout would hold its test a minute. */
  const patientStore = (): S3BlobStore => {
    const patient = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { requestTimeoutMs: 60_000, smallRequestTimeoutMs: 300 });
    others.push(patient);
    return patient;
  };
  /** The statuses the server answered to PUTs of `key` while `run` ran, a stalled answer's included. */
  const putAnswers = async <T>(key: string, run: () => Promise<T>): Promise<{ result: T; statuses: number[] }> => {
    const statuses: number[] = [];
    const off = proxy.onAnswer((a) => {
      if (a.method === 'PUT' && a.path.split('?')[0]?.endsWith(`/${key}`)) statuses.push(a.status);
    });
    try {
      return { result: await run(), statuses };
    } finally {
      off();
    }
  };

  it('retries connection resets on put and get', async () => {
    proxy.fail('reset', 2);
    await store.put('f/reset', Buffer.from('survives resets'));
    proxy.fail('reset', 2);
    assert.equal((await store.getBuffer('f/reset', 100))?.toString(), 'survives resets');
    assert.equal(proxy.stats.faults.reset, 4);
  });

  it('retries 503 SlowDown and 500', async () => {
    await store.put('f/slow', Buffer.from('throttled'));
    proxy.fail('slowdown', 3);
    assert.equal((await store.getBuffer('f/slow', 100))?.toString(), 'throttled');
    proxy.fail('error500', 2);
    const keys: string[] = [];
    for await (const k of store.list('f/')) keys.push(k);
    assert.ok(keys.includes('f/slow'));
    proxy.fail('slowdown', 2);
    assert.equal(await store.exists('f/slow'), true);
    assert.equal(proxy.stats.faults.slowdown, 5);
    assert.equal(proxy.stats.faults.error500, 2);
  });

  it('times out a hung request and retries it', async () => {
    await store.put('f/hang', Buffer.from('patience'));
    proxy.fail('hang', 1);
    assert.equal((await store.getBuffer('f/hang', 100))?.toString(), 'patience');
    assert.equal(proxy.stats.faults.hang, 1);
  });

  it('bounds a DELETE whose answer stalls, even when the socket timeout is long, and retries it', async () => {
    const patient = patientStore();
    await patient.put('f/released.json', Buffer.from('{}'));
    const hangsBefore = proxy.stats.faults.hang;
    proxy.fail('hang', 1);
    const started = Date.now();
    await patient.delete('f/released.json');
    assert.equal(proxy.stats.faults.hang, hangsBefore + 1);
    assert.equal(await patient.exists('f/released.json'), false);
    // One bounded attempt plus a retry, far below the 60 s socket timeout.
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });

  it('bounds a small GET whose answer stalls, even when the socket timeout is long, and retries it', async () => {
    const patient = patientStore();
    await patient.put('f/head.json', Buffer.from('{"seq":1}'));
    const hangsBefore = proxy.stats.faults.hang;
    proxy.fail('hang', 1);
    const started = Date.now();
    const got = await patient.getIfNoneMatch('f/head.json', undefined, 1024);
    assert.equal(got.status, 'ok');
    assert.equal(proxy.stats.faults.hang, hangsBefore + 1);
    // One bounded attempt plus a retry, far below the 60 s socket timeout.
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });

  it('bounds a HEAD whose answer stalls, even when the socket timeout is long, and retries it', async () => {
    const patient = patientStore();
    await patient.put('f/record.json', Buffer.from('{"seq":2}'));
    const hangsBefore = proxy.stats.faults.hang;
    const started = Date.now();
    proxy.fail('hang', 1, { method: 'HEAD' });
    assert.equal(await patient.exists('f/record.json'), true);
    assert.equal(proxy.stats.faults.hang, hangsBefore + 1);
    // One bounded attempt plus its retry, far below the 60 s socket timeout.
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });

  it('leaves a plain PUT whose answer stalls to the socket timeout, not the small bound: one given up on could land later over a newer write', async () => {
    // Small bound 300 ms, socket timeout 2 s: cut at the small bound, the retry would follow within a second.
    const socketMs = 2000;
    const bounded = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { requestTimeoutMs: socketMs, smallRequestTimeoutMs: 300 });
    others.push(bounded);
    const stalledBefore = proxy.stats.faults['stall-answer'];
    proxy.fail('stall-answer', 1, { method: 'PUT' });
    const started = Date.now();
    const put = await putAnswers('f/head-stalled.json', () => bounded.put('f/head-stalled.json', Buffer.from('{"seq":4}')));
    const took = Date.now() - started;
    assert.equal(proxy.stats.faults['stall-answer'], stalledBefore + 1);
    assert.ok(took >= socketMs - 100, `the stalled attempt was given up on after ${took} ms, before the ${socketMs} ms socket timeout`);
    assert.deepEqual(put.statuses, [200, 200], 'the stalled attempt landed, and its retry wrote the same bytes');
    assert.equal((await bounded.getBuffer('f/head-stalled.json', 100))?.toString(), '{"seq":4}');
  });

  it('a conditional create cut short by the small bound after it landed is ours: the retry sees 412 and finds our bytes', async () => {
    const patient = patientStore();
    const stalledBefore = proxy.stats.faults['stall-answer'];
    const started = Date.now();
    proxy.fail('stall-answer', 1, { method: 'PUT' });
    const created = await putAnswers('f/claim-stalled', () => patient.putIfAbsent('f/claim-stalled', Buffer.from('{"host":"a"}')));
    assert.equal(created.result, true);
    assert.deepEqual(created.statuses, [200, 412], 'the stalled attempt landed; its retry failed the condition on it');
    // One stalled before reaching the server: its retry creates the object.
    proxy.fail('hang', 1, { method: 'PUT' });
    assert.equal(await patient.putIfAbsent('f/claim-hung', Buffer.from('{"host":"a"}')), true);
    assert.equal(proxy.stats.faults['stall-answer'], stalledBefore + 1);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.equal((await patient.getBuffer('f/claim-stalled', 100))?.toString(), '{"host":"a"}');
    assert.equal((await patient.getBuffer('f/claim-hung', 100))?.toString(), '{"host":"a"}');
  });

  it('a conditional create whose stalled answer was a conflict is still a conflict', async () => {
    const patient = patientStore();
    await patient.put('f/claim-theirs', Buffer.from('{"host":"b"}'));
    const started = Date.now();
    proxy.fail('stall-answer', 1, { method: 'PUT' });
    const lost = await putAnswers('f/claim-theirs', () => patient.putIfAbsent('f/claim-theirs', Buffer.from('{"host":"a"}')));
    assert.equal(lost.result, false);
    assert.deepEqual(lost.statuses, [412, 412]);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.equal((await patient.getBuffer('f/claim-theirs', 100))?.toString(), '{"host":"b"}');
  });

  it('an If-Match replacement cut short after it landed is ours; one whose ETag was stale is still a conflict', async () => {
    const patient = patientStore();
    await patient.put('f/spec-stalled', Buffer.from('v1'));
    const v1 = await patient.getIfNoneMatch('f/spec-stalled', undefined, 100);
    assert.equal(v1.status, 'ok');
    if (v1.status !== 'ok') return;
    const started = Date.now();
    proxy.fail('stall-answer', 1, { method: 'PUT' });
    const replaced = await putAnswers('f/spec-stalled', () => patient.putIfMatch('f/spec-stalled', Buffer.from('v2'), v1.etag));
    assert.equal(replaced.result, true);
    assert.deepEqual(replaced.statuses, [200, 412]);
    // v1's ETag is another version's now: a stalled answer does not turn that into a success.
    proxy.fail('stall-answer', 1, { method: 'PUT' });
    const stale = await putAnswers('f/spec-stalled', () => patient.putIfMatch('f/spec-stalled', Buffer.from('v3'), v1.etag));
    assert.equal(stale.result, false);
    assert.deepEqual(stale.statuses, [412, 412]);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.equal((await patient.getBuffer('f/spec-stalled', 100))?.toString(), 'v2');
  });

  it('re-uploads a streamed file from its first byte after a reset', async () => {
    const body = randomBytes(2 * 1024 * 1024);
    const src = join(work, 'up.bin');
    await writeFile(src, body);
    proxy.fail('reset', 1);
    await store.put('f/file', { file: src });
    proxy.fail('truncate', 2);
    const out = join(work, 'down.bin');
    assert.equal(await store.getToFile('f/file', out), true);
    assert.equal(sha(await readFile(out)), sha(body));
    assert.equal(proxy.stats.faults.truncate, 2);
  });

  it("keeps the SDK's warnings in the structured log, off the console", async () => {
    const lines: Record<string, unknown>[] = [];
    const logged = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, {
      requestTimeoutMs: 300, log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }),
    });
    others.push(logged);
    const src = join(work, 'warned.bin');
    await writeFile(src, randomBytes(256 * 1024));
    const warned: unknown[][] = [];
    const warn = console.warn.bind(console);
    console.warn = (...args: unknown[]): void => { warned.push(args); };
    try {
      // A reset under a streamed upload: the SDK gives up on the stream (the store retries from the first byte) and
      // warns through its logger.
      proxy.fail('reset', 1);
      await logged.put('f/warned', { file: src });
    } finally {
      console.warn = warn;
    }
    assert.deepEqual(warned, [], 'nothing on the console');
    const sdk = lines.filter((l) => l['msg'] === 'aws sdk');
    assert.ok(sdk.some((l) => l['sdkLevel'] === 'warn' && JSON.stringify(l['content']).includes('non-retryable streaming request')), JSON.stringify(lines.slice(-5)));
  });

  it('downloads a blob through torn bodies and verifies it', async () => {
    const bucket = new Bucket(store, { signatures: testSignatures(), prefix: 'tl', group: 'faults' });
    const body = randomBytes(300_000);
    const src = join(work, 'blob.bin');
    await writeFile(src, body);
    const d = asDigest(sha(body));
    proxy.fail('slowdown', 1);
    await bucket.uploadBlob(src, d);
    proxy.fail('truncate', 2);
    await bucket.downloadBlob(d, body.length, join(work, 'blob.out'));
    assert.equal(sha(await readFile(join(work, 'blob.out'))), d);
  });

  it('stops a blob download at the first byte past the size its record declares, and does not fetch it again', async () => {
    const direct = testS3Store(s3);
    others.push(direct);
    const bucket = new Bucket(store, { signatures: testSignatures(), prefix: 'tl', group: 'faults-cap' });
    const body = randomBytes(48 * 1024 * 1024);
    const d = asDigest(sha(body));
    await direct.put(bucket.blobKey(d), body);
    const gets: string[] = [];
    const off = proxy.onAnswer((a) => {
      if (a.method === 'GET' && a.path.includes(d)) gets.push(a.path);
    });
    const before = proxy.stats.bodyBytes;
    const out = join(work, 'capped.out');
    try {
      // The record says 1000 bytes: the blob under its digest is 48 MiB.
      await assert.rejects(bucket.downloadBlob(d, 1000, out), (err: unknown) => {
        assert.ok(err instanceof BlobDigestMismatchError, String(err));
        assert.match(err.message, /larger than its record declares/);
        return true;
      });
      // What the sockets still held when the client hung up reaches the proxy's counter a moment later.
      await delay(500);
    } finally {
      off();
    }
    const relayed = proxy.stats.bodyBytes - before;
    console.log(`# a 48 MiB blob whose record declares 1000 bytes: ${gets.length} GET, ${relayed} body bytes through the proxy`);
    assert.equal(gets.length, 1, 'one GET: an object larger than its record stays larger');
    assert.ok(relayed < 16 * 1024 * 1024, `the download stopped early: ${relayed} bytes relayed`);
    assert.deepEqual((await readdir(work)).filter((n) => n.startsWith('capped.out')), [], 'nothing left behind');
  });

  it('a conditional create whose answer was lost is still ours: the retry sees 412 and finds our bytes', async () => {
    proxy.fail('lose-answer', 1);
    assert.equal(await store.putIfAbsent('f/claim-lost-answer', Buffer.from('{"host":"a"}')), true);
    assert.equal(proxy.stats.faults['lose-answer'], 1);
    assert.equal((await store.getBuffer('f/claim-lost-answer', 100))?.toString(), '{"host":"a"}');
    // Someone else's claim is not mistaken for ours: lose the answer of a create that did not happen.
    proxy.fail('lose-answer', 1);
    assert.equal(await store.putIfAbsent('f/claim-lost-answer', Buffer.from('{"host":"b"}')), false);
    assert.equal((await store.getBuffer('f/claim-lost-answer', 100))?.toString(), '{"host":"a"}');
  });

  it('a conditional create that failed before reaching the server, then finds the key taken, lost', async () => {
    await store.put('f/claim-taken', Buffer.from('{"host":"a"}'));
    proxy.fail('reset', 1);
    assert.equal(await store.putIfAbsent('f/claim-taken', Buffer.from('{"host":"b"}')), false);
    // A larger object than ours is not ours either (read back with our size as the limit).
    proxy.fail('error500', 1);
    assert.equal(await store.putIfAbsent('f/claim-taken', Buffer.from('{"h":1}')), false);
    assert.equal((await store.getBuffer('f/claim-taken', 100))?.toString(), '{"host":"a"}');
  });

  it('an If-Match replacement whose answer was lost is still ours', async () => {
    await store.put('f/head-im', Buffer.from('v1'));
    const v1 = await store.getIfNoneMatch('f/head-im', undefined, 100);
    assert.equal(v1.status, 'ok');
    if (v1.status !== 'ok') return;
    proxy.fail('lose-answer', 1);
    assert.equal(await store.putIfMatch('f/head-im', Buffer.from('v2'), v1.etag), true);
    assert.equal((await store.getBuffer('f/head-im', 100))?.toString(), 'v2');
    assert.equal(await store.putIfMatch('f/head-im', Buffer.from('v3'), v1.etag), false);
  });

  it('does not retry a failed condition: one request, answer false', async () => {
    await store.put('f/claim-once', Buffer.from('x'));
    const before = proxy.stats.requests;
    assert.equal(await store.putIfAbsent('f/claim-once', Buffer.from('y')), false);
    assert.equal(await store.putIfMatch('f/claim-once', Buffer.from('y'), '"00000000000000000000000000000000"'), false);
    assert.equal(await store.putIfMatch('f/claim-none', Buffer.from('y'), '"00000000000000000000000000000000"'), false);
    assert.equal(proxy.stats.requests - before, 3);
  });

  it('gives up after the bounded attempts with the last error', async () => {
    const before = proxy.stats.requests;
    proxy.fail('slowdown', Infinity);
    await assert.rejects(store.getBuffer('f/slow', 100), (err: unknown) => {
      assert.ok(err instanceof StoreRequestError);
      assert.match(err.message, /after 5 attempt\(s\).*SlowDown/);
      return true;
    });
    assert.equal(proxy.stats.requests - before, 5);
  });

  it('brings the head up to the last publish by itself once the store answers again', async () => {
    const g = 1 as Generation;
    // The writer goes through the proxy; the test reads the bucket directly.
    const wrap = new WrappedStore(store);
    const bucket = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'head-retry' });
    const direct = testS3Store(s3);
    others.push(direct);
    const reader = new Bucket(direct, { signatures: testSignatures(), prefix: 'tl', group: 'head-retry' });
    const headSeq = async (): Promise<number | null> => {
      const res = await reader.readHead(g);
      return res.status === 'ok' ? res.head.seq : null;
    };
    const { log, lines } = logCollector();
    const jw = new JournalWriter(bucket, { generation: g, writer: 'host-a', head: null, log, headRetry: { baseMs: 20, maxMs: 200 } });
    const publish = () => jw.publish({
      container: 'web', digest: asDigest('cd'.repeat(32)), size: 1, kind: 'delta', counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: new Date(0),
    });
    try {
      await publish();
      assert.equal(await headSeq(), 1);
      // The store fails every request from the moment the last record has landed: its head write fails.
      const faultsBefore = proxy.stats.faults.error500;
      wrap.afterPut = (key) => {
        if (key.includes('/journal/')) proxy.fail('error500', Infinity);
      };
      const last = await publish();
      wrap.afterPut = undefined;
      assert.equal(last.seq, 2);
      assert.equal(jw.headDirty, true);
      const faultsAtPublish = proxy.stats.faults.error500;
      assert.equal(faultsAtPublish - faultsBefore, TEST_RETRY.attempts, 'the publish\'s own head write spent its attempts');
      // Background head writes keep failing for a while (two more rounds of attempts), and nothing is published.
      await waitFor('background head writes against the failing store', 20_000, () =>
        Promise.resolve(proxy.stats.faults.error500 >= faultsAtPublish + 2 * TEST_RETRY.attempts ? true : undefined), 10);
      assert.equal(await headSeq(), 1, 'the head is still behind while the store fails');
      assert.ok(jw.headStatus().failures >= 3);
      proxy.pass();
      await waitFor('the head to reach seq 2', 20_000, async () => ((await headSeq()) === 2 ? true : undefined));
      await waitFor('the writer to see its head written', 5_000, () => Promise.resolve(jw.headDirty ? undefined : true), 10);
      assert.equal(jw.lastSeq, 2);
      assert.ok(lines.some((l) => l['msg'] === 'head written again' && l['seq'] === 2));
    } finally {
      wrap.afterPut = undefined;
      await jw.close();
    }
  });

  it('does not retry a 403', async () => {
    // s3rver does not check SigV4 signatures, but it knows its one access key id.
    const wrongKey = new S3BlobStore({
      bucket: s3.bucket, region: TEST_REGION, endpoint: proxy.endpoint, pathStyle: true,
      credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'wrong' }, retry: { attempts: 5, baseMs: 1, maxMs: 5 },
    });
    others.push(wrongKey);
    const before = proxy.stats.requests;
    await assert.rejects(wrongKey.getBuffer('f/slow', 100), (err: unknown) => err instanceof StoreRequestError && /HTTP 403/.test(err.message));
    assert.equal(proxy.stats.requests - before, 1);
  });

  it('reports an unreachable endpoint by name, and recovers when it returns', async () => {
    await proxy.refuse();
    try {
      await assert.rejects(store.checkReachable(1000), (err: unknown) => {
        assert.ok(err instanceof StoreUnreachableError);
        assert.equal(err.code, 'STORE_UNREACHABLE');
        assert.ok(err.message.includes(proxy.endpoint), err.message);
        assert.ok(err.message.includes(s3.bucket), err.message);
        return true;
      });
      await assert.rejects(store.getBuffer('f/slow', 100), (err: unknown) => err instanceof StoreUnreachableError && err.message.includes(proxy.endpoint));
    } finally {
      await proxy.accept();
    }
    await store.checkReachable(1000);
    assert.equal((await store.getBuffer('f/slow', 100))?.toString(), 'throttled');
  });

  it('an aborted ranged read stops waiting out its retry backoff at once', { timeout: 120_000 }, async () => {
    await store.put('f/range-abort', Buffer.from('held back'));
    let retried: (() => void) | undefined;
    const inBackoff = new Promise<void>((resolve) => {
      retried = resolve;
    });
    const slow = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, {
      requestTimeoutMs: 2_000, retry: { attempts: 3, baseMs: 600_000, maxMs: 600_000 },
      log: createLogger({ level: 'debug', write: (l) => { if (l.includes('s3 request retried')) retried?.(); } }),
    });
    others.push(slow);
    const stop = new AbortController();
    proxy.fail('slowdown', Infinity, { method: 'GET' });
    // Full jitter: the wait drawn at the top of its range, 10 min, which the test's timeout is far below.
    const random = Math.random;
    Math.random = () => 0.999_999;
    let read: Promise<unknown>;
    try {
      read = readRange(slow, 'f/range-abort', 0, 4, stop.signal);
      await inBackoff;
    } finally {
      Math.random = random;
    }
    stop.abort(new Error('paused by a finalize'));
    await assert.rejects(read, /paused by a finalize/);
  });

  it('reports a bucket that answers 503 SlowDown or 500 as unavailable, not as a setup error', async () => {
    for (const fault of ['slowdown', 'error500'] as const) {
      proxy.fail(fault, Infinity);
      try {
        await assert.rejects(store.checkReachable(1000), (err: unknown) => err instanceof StoreUnreachableError && /HTTP 50[03]/.test(err.message));
      } finally {
        proxy.pass();
      }
    }
    await store.checkReachable(1000);
  });

  it('reports a hanging endpoint as unreachable within the timeout', async () => {
    proxy.fail('hang', Infinity);
    await assert.rejects(store.checkReachable(200), StoreUnreachableError);
  });

  it('reports a missing bucket', async () => {
    const missing = testS3Store({ endpoint: proxy.endpoint, bucket: uniqueBucketName('missing') });
    others.push(missing);
    await assert.rejects(missing.checkReachable(1000), (err: unknown) => {
      assert.ok(err instanceof BucketMissingError);
      assert.equal(err.code, 'BUCKET_MISSING');
      assert.ok(err.message.includes(missing.bucket) && err.message.includes(proxy.endpoint), err.message);
      return true;
    });
    await assert.rejects(missing.getBuffer('x', 10), BucketMissingError);
    await assert.rejects(missing.put('x', Buffer.from('x')), BucketMissingError);
  });

  it('bounds the GET of a small blob into a file by the small request timeout, and retries a cut or stalled one from its first byte', async () => {
    const patient = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { requestTimeoutMs: 60_000, smallRequestTimeoutMs: 300 });
    try {
      const body = randomBytes(5000);
      await patient.put('f/small-blob', body);
      const out = join(work, 'small-blob.bin');
      let starts = 0;
      const observe = { start: () => void starts++, chunk: () => undefined };
      const truncated = proxy.stats.faults.truncate;
      proxy.fail('truncate', 1);
      assert.equal(await patient.getToFile('f/small-blob', out, body.length, { observe }), true);
      assert.equal(proxy.stats.faults.truncate, truncated + 1);
      assert.ok((await readFile(out)).equals(body));
      assert.equal(starts, 1, 'a cut body is not shown: the lean GET reads it whole first');
      const hangs = proxy.stats.faults.hang;
      proxy.fail('hang', 1);
      const started = Date.now();
      assert.equal(await patient.getToFile('f/small-blob', out, body.length), true);
      assert.equal(proxy.stats.faults.hang, hangs + 1);
      // One bounded attempt plus a retry, far below the 60 s socket timeout.
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.ok((await readFile(out)).equals(body));
    } finally {
      patient.destroy();
    }
  });
});
