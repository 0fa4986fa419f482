// JournalWriter edge cases on a local-directory store: a record write that failed on our side (landed or
// not), bad input, failed head writes. Seqs are never reused and never skipped.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { asDigest, Bucket, DirBlobStore, InvalidKeyError, JournalWriter, type Generation, type PublishInput } from '../../../src/store/index.js';
import { collect, describeItems, WrappedStore } from '../../integration/store/helpers.js';

const g1 = 1 as Generation;
const input = (container: string, size = 1): PublishInput => ({
  container, digest: asDigest('ab'.repeat(32)), size, kind: 'delta', counts: { files: 1, deletions: 0, bytes: size }, firstWriteAt: new Date(0),
});

describe('JournalWriter', () => {
  let root: string;
  let n = 0;
  const setup = () => {
    const wrap = new WrappedStore(new DirBlobStore(join(root, `s${++n}`)));
    const bucket = new Bucket(wrap, { prefix: 'tl', group: 'g' });
    return { wrap, bucket, jw: new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: null }) };
  };
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'twinlayer-journal-'));
  });
  after(async () => {
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
