// JournalWriter edge cases on a local-directory store: a record write that failed on our side (landed or
// not), bad input, failed head writes and their background retry. Seqs are never reused and never skipped; heads
// are never written out of order.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { TwinlayerError } from '../../../src/log/errors.js';
import {
  asDigest,
  Bucket,
  DirBlobStore,
  headRetryDelay,
  headSchema,
  InvalidKeyError,
  JournalWriter,
  recoverHead,
  type Generation,
  type HeadRetryPolicy,
  type PublishInput,
} from '../../../src/store/index.js';
import { collect, describeItems, logCollector, WrappedStore } from '../../integration/store/helpers.js';
import { waitFor } from '../../../src/lab/wait.js';
import { testSignatures } from '../../support/signing.js';

const g1 = 1 as Generation;
const input = (container: string, size = 1): PublishInput => ({
  container, digest: asDigest('ab'.repeat(32)), size, kind: 'delta', counts: { files: 1, deletions: 0, bytes: size }, firstWriteAt: new Date(0),
});

describe('JournalWriter', () => {
  let root: string;
  let n = 0;
  const writers: JournalWriter[] = [];
  const setup = (opts: { headRetry?: HeadRetryPolicy } = {}) => {
    const wrap = new WrappedStore(new DirBlobStore(join(root, `s${++n}`)));
    const bucket = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'g' });
    const { log, lines } = logCollector();
    const jw = new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: null, log, ...opts });
    writers.push(jw);
    return { wrap, bucket, jw, lines };
  };
  /** The seq inside a head.json body the writer is about to put. */
  const headSeq = (body: Buffer | { file: string }): number => {
    assert.ok(Buffer.isBuffer(body), 'a head is written from memory');
    const { signature, ...head } = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    assert.ok(signature !== undefined, 'heads are written signed');
    return headSchema.parse(head).seq;
  };
  const bucketHeadSeq = async (bucket: Bucket): Promise<number | null> => {
    const res = await bucket.readHead(g1);
    return res.status === 'ok' ? res.head.seq : null;
  };
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'twinlayer-journal-'));
  });
  after(async () => {
    for (const jw of writers) await jw.close();
    await rm(root, { recursive: true, force: true });
  });

  it('counts a record whose write failed after it landed, and goes on after it', async () => {
    const { wrap, bucket, jw } = setup();
    await jw.publish(input('web'));
    wrap.afterPut = (key) => {
      wrap.afterPut = undefined;
      if (key.endsWith('0000000000000002.json')) throw new Error('response lost');
    };
    await assert.rejects(jw.publish(input('web')), /response lost/);
    const third = await jw.publish(input('web'));
    assert.equal(third.seq, 3);
    assert.equal(third.parentSeq, 2);
    assert.deepEqual(describeItems(await collect(bucket.listRecords(g1, 0))), ['1', '2', '3']);
  });

  it('reuses the seq of a record write that did not land', async () => {
    const { wrap, bucket, jw } = setup();
    await jw.publish(input('web'));
    wrap.beforePut = (key) => {
      if (key.includes('/journal/')) {
        wrap.beforePut = undefined;
        throw new Error('connection refused');
      }
    };
    await assert.rejects(jw.publish(input('dns')), /connection refused/);
    const next = await jw.publish(input('dns'));
    assert.equal(next.seq, 2);
    assert.equal(next.parentSeq, 0);
    assert.deepEqual(describeItems(await collect(bucket.listRecords(g1, 0))), ['1', '2']);
  });

  it('rejects bad input without breaking the chain', async () => {
    const { jw } = setup();
    const results = await Promise.allSettled([jw.publish(input('web')), jw.publish(input('../x')), jw.publish({ ...input('web'), size: -1 }), jw.publish(input('web'))]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    const last = results[3];
    assert.ok(last?.status === 'fulfilled' && last.value.seq === 2 && last.value.parentSeq === 1);
  });

  it('writes the head again after a failed head write', async () => {
    const { wrap, bucket, jw } = setup();
    wrap.beforePut = (key) => {
      if (key.endsWith('head.json')) throw new Error('head down');
    };
    await jw.publish(input('web'));
    assert.equal(jw.headDirty, true);
    assert.deepEqual(await bucket.readHead(g1), { status: 'missing' });
    wrap.beforePut = undefined;
    await jw.flushHead();
    assert.equal(jw.headDirty, false);
    const head = await bucket.readHead(g1);
    assert.ok(head.status === 'ok' && head.head.seq === 1 && head.head.containers['web'] === 1);
  });

  it('keeps writing the head in the background after the last publish until it covers every record', async () => {
    const { wrap, bucket, jw, lines } = setup({ headRetry: { baseMs: 1, maxMs: 8 } });
    await jw.publish(input('web'));
    let failing = 4;
    const tried: number[] = [];
    wrap.beforePut = (key, body) => {
      if (!key.endsWith('head.json')) return;
      tried.push(headSeq(body));
      if (failing-- > 0) throw new Error('head down');
    };
    const last = await jw.publish(input('dns'));
    assert.equal(last.seq, 2);
    assert.equal(jw.headDirty, true);
    assert.equal(jw.headStatus().failures >= 1, true);
    assert.equal(await bucketHeadSeq(bucket), 1, 'the record is out, the head is behind');
    // No further publish: the writer alone brings the head up.
    await waitFor('the head to cover seq 2', 10_000, () => Promise.resolve(jw.headDirty ? undefined : true), 5);
    const head = await bucket.readHead(g1);
    assert.ok(head.status === 'ok');
    assert.equal(head.head.seq, 2);
    assert.deepEqual(head.head.containers, { web: 1, dns: 2 });
    assert.deepEqual(tried, [2, 2, 2, 2, 2], 'four failed writes, then one that landed');
    assert.deepEqual(jw.headStatus(), { behind: false, failures: 0, lastError: null, nextRetryAt: null });
    assert.equal(lines.filter((l) => l['level'] === 'warn').length, 1, 'one warning per outage, not one per retry');
    assert.ok(lines.some((l) => l['msg'] === 'head written again' && l['failures'] === 4 && l['seq'] === 2));
  });

  it('ends the retry when a later publish writes the head', async () => {
    // The first background retry would come after at least 30 s: only the publish can write the head here.
    const { wrap, bucket, jw } = setup({ headRetry: { baseMs: 60_000, maxMs: 60_000 } });
    let heads = 0;
    wrap.beforePut = (key) => {
      if (key.endsWith('head.json') && ++heads === 1) throw new Error('head down');
    };
    await jw.publish(input('web'));
    const failed = jw.headStatus();
    assert.equal(failed.behind, true);
    assert.equal(failed.failures, 1);
    assert.match(failed.lastError ?? '', /head down/);
    assert.ok(failed.nextRetryAt !== null && Date.parse(failed.nextRetryAt) - Date.now() > 20_000, `next retry at ${failed.nextRetryAt}`);
    await jw.publish(input('web'));
    assert.deepEqual(jw.headStatus(), { behind: false, failures: 0, lastError: null, nextRetryAt: null });
    assert.equal(await bucketHeadSeq(bucket), 2);
    assert.equal(heads, 2);
  });

  it('never writes two heads at once, nor an older head after a newer one, while retrying beside publishes', async () => {
    const { wrap, bucket, jw } = setup({ headRetry: { baseMs: 1, maxMs: 2 } });
    let attempts = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const landed: number[] = [];
    wrap.beforePut = async (key, body) => {
      if (!key.endsWith('head.json')) return;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      // A slow head write widens the window in which a retry and a publish could overlap.
      await new Promise((r) => setTimeout(r, 2));
      if (++attempts % 3 !== 0) {
        inFlight--;
        throw new Error('head flaky');
      }
      landed.push(headSeq(body));
    };
    wrap.afterPut = (key) => {
      if (key.endsWith('head.json')) inFlight--;
    };
    for (let i = 0; i < 12; i++) {
      await jw.publish(input(i % 2 === 0 ? 'web' : 'dns'));
      // Let background retries run between publishes.
      await new Promise((r) => setTimeout(r, i % 3));
    }
    await waitFor('the head to cover seq 12', 10_000, () => Promise.resolve(jw.headDirty ? undefined : true), 5);
    assert.equal(maxInFlight, 1);
    assert.deepEqual(landed, [...landed].sort((a, b) => a - b), `heads landed in order: ${landed.join(',')}`);
    assert.equal(landed.at(-1), 12);
    assert.equal(await bucketHeadSeq(bucket), 12);
  });

  it('close stops the retry, waits for the head write in flight, and refuses later publishes', async () => {
    const { wrap, jw, lines } = setup({ headRetry: { baseMs: 1, maxMs: 1 } });
    let attempts = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    wrap.beforePut = async (key) => {
      if (!key.endsWith('head.json')) return;
      if (++attempts === 2) await gate;
      throw new Error('head down');
    };
    await jw.publish(input('web'));
    await waitFor('the background retry to be in flight', 10_000, () => Promise.resolve(attempts === 2 ? true : undefined), 2);
    let closed = false;
    const closing = jw.close().then(() => (closed = true));
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'close waits for the write in flight');
    open();
    await closing;
    assert.equal(attempts, 2);
    const status = jw.headStatus();
    assert.equal(status.behind, true);
    assert.equal(status.nextRetryAt, null, 'no retry scheduled after close');
    assert.ok(lines.some((l) => l['level'] === 'warn' && String(l['msg']).startsWith('journal closed with the head behind')));
    await assert.rejects(jw.publish(input('web')), (err: unknown) => err instanceof TwinlayerError && err.code === 'JOURNAL_CLOSED');
    assert.equal(attempts, 2);
  });

  it('waits between head retries within [cap/2, cap], the cap doubling up to maxMs', () => {
    const policy = { baseMs: 100, maxMs: 5_000 };
    const caps = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    caps.forEach((cap, retry) => {
      assert.equal(headRetryDelay(policy, retry, () => 0), cap / 2, `retry ${retry} low`);
      assert.equal(headRetryDelay(policy, retry, () => 0.999999), cap - 1, `retry ${retry} high`);
    });
    assert.equal(headRetryDelay(policy, 1000, () => 0.5), 3750);
    const { bucket } = setup();
    assert.throws(() => new JournalWriter(bucket, { generation: g1, writer: 'h', head: null, headRetry: { baseMs: 0, maxMs: 10 } }), /headRetry\.baseMs/);
    assert.throws(() => new JournalWriter(bucket, { generation: g1, writer: 'h', head: null, headRetry: { baseMs: 10, maxMs: 5 } }), /headRetry\.maxMs/);
  });

  it('names each container\'s newest full checkpoint in the head, resumes them from a head, and recoverHead folds them in', async () => {
    const { wrap, bucket, jw } = setup();
    const full = (container: string): PublishInput => ({ ...input(container), kind: 'full' });
    await jw.publish(full('web'));
    await jw.publish(full('dns'));
    await jw.publish(input('web'));
    await jw.publish(full('web'));
    await jw.publish(input('web'));
    assert.equal(jw.lastFullOf('web'), 4);
    assert.equal(jw.lastFullOf('dns'), 2);
    assert.equal(jw.lastFullOf('fw'), 0);
    const read = await bucket.readHead(g1);
    assert.ok(read.status === 'ok');
    assert.deepEqual(read.head.lastFull, { web: 4, dns: 2 });
    assert.deepEqual(read.head.containers, { web: 5, dns: 2 });

    // The head writes fail from here on (a crash between record and head looks the same): recoverHead reads the fulls
    // past the head from the journal.
    wrap.beforePut = (key) => {
      if (key.endsWith('/head.json')) throw new Error('injected head failure');
    };
    await jw.publish(full('dns'));
    await jw.publish(input('web'));
    wrap.beforePut = undefined;
    const recovered = await recoverHead(bucket, g1);
    assert.ok(recovered !== null);
    assert.deepEqual(recovered.lastFull, { web: 4, dns: 6 });
    const resumed = new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: recovered });
    writers.push(resumed);
    assert.equal(resumed.lastFullOf('dns'), 6);
    await resumed.publish(full('fw'));
    const after = await bucket.readHead(g1);
    assert.ok(after.status === 'ok');
    assert.deepEqual(after.head.lastFull, { web: 4, dns: 6, fw: 8 });
  });

  it('resumes from a head of an older version (no lastFull): it names the checkpoints it publishes from then on', async () => {
    const { bucket } = setup();
    const old = { version: 1 as const, generation: g1, seq: 3 as never, writer: 'host-a', updatedAt: new Date().toISOString(), containers: { web: 3 as never } };
    await bucket.writeHead(old);
    const recovered = await recoverHead(bucket, g1);
    assert.ok(recovered !== null && recovered.lastFull === undefined, 'nothing past the head: the head as it is');
    const jw = new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: recovered });
    writers.push(jw);
    await jw.publish(input('web'));
    let read = await bucket.readHead(g1);
    assert.ok(read.status === 'ok');
    assert.deepEqual(read.head.lastFull, {});
    await jw.publish({ ...input('web'), kind: 'full' });
    read = await bucket.readHead(g1);
    assert.ok(read.status === 'ok');
    assert.deepEqual(read.head.lastFull, { web: 5 });
  });

  it('refuses a head of another generation and a bad writer', () => {
    const { bucket } = setup();
    const head = { version: 1 as const, generation: 2 as Generation, seq: 0 as never, writer: 'h', updatedAt: new Date().toISOString(), containers: {} };
    assert.throws(() => new JournalWriter(bucket, { generation: g1, writer: 'h', head }), TypeError);
    assert.throws(() => new JournalWriter(bucket, { generation: g1, writer: 'a b', head: null }), TypeError);
  });
});

describe('DirBlobStore keys', () => {
  it('refuses keys that are not safe relative paths', async () => {
    const root = await mkdtemp(join(tmpdir(), 'twinlayer-dirkeys-'));
    try {
      const store = new DirBlobStore(root);
      for (const k of ['', '../x', 'a/../../x', '/abs', 'a//b', 'a/', 'a/./b', 'a\0b', '.dirblobstore-tmp/x']) {
        await assert.rejects(store.put(k, Buffer.from('x')), InvalidKeyError, JSON.stringify(k));
      }
      assert.deepEqual(await collect(store.list('../')), []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
