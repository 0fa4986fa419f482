// One contract for every BlobStore: the local-directory store and the S3 store on a real s3rver.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { DirBlobStore, ObjectTooLargeError, readRange, type BlobStore, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Impl {
  name: string;
  setup(): Promise<{ store: BlobStore; teardown: () => Promise<void> }>;
}

const impls: Impl[] = [
  {
    name: 'DirBlobStore',
    async setup() {
      const dir = await mkdtemp(join(tmpdir(), 'twinlayer-dirstore-'));
      return { store: new DirBlobStore(dir), teardown: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'S3BlobStore on s3rver',
    async setup() {
      const s3: TestS3 = await withS3();
      const store: S3BlobStore = testS3Store(s3);
      return {
        store,
        teardown: async () => {
          store.destroy();
          await s3.close();
        },
      };
    },
  },
];

for (const impl of impls) {
  describe(`BlobStore contract: ${impl.name}`, () => {
    let store: BlobStore;
    let teardown: (() => Promise<void>) | undefined;
    let work: string;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'twinlayer-contract-'));
      const made = await impl.setup();
      store = made.store;
      teardown = () => made.teardown();
    });
    after(async () => {
      await teardown?.();
      await rm(work, { recursive: true, force: true });
    });

    it('puts and gets a buffer; a missing key is null; overwrite replaces', async () => {
      await store.put('c/one', Buffer.from('first'));
      assert.equal((await store.getBuffer('c/one', 100))?.toString(), 'first');
      await store.put('c/one', Buffer.from('second'));
      assert.equal((await store.getBuffer('c/one', 100))?.toString(), 'second');
      assert.equal(await store.getBuffer('c/none', 100), null);
      await store.put('c/empty', Buffer.alloc(0));
      assert.equal((await store.getBuffer('c/empty', 100))?.length, 0);
    });

    it('refuses to read more than maxBytes into memory', async () => {
      await store.put('c/big', randomBytes(2048));
      await assert.rejects(store.getBuffer('c/big', 2047), ObjectTooLargeError);
      assert.equal((await store.getBuffer('c/big', 2048))?.length, 2048);
    });

    it('uploads from a file and streams into a file', async () => {
      const body = randomBytes(3 * 1024 * 1024 + 17);
      const src = join(work, 'src.bin');
      await writeFile(src, body);
      await store.put('c/file', { file: src });
      const dest = join(work, 'dest.bin');
      assert.equal(await store.getToFile('c/file', dest), true);
      assert.equal(sha(await readFile(dest)), sha(body));
      assert.equal(await store.getToFile('c/missing', join(work, 'never.bin')), false);
      // A local problem is reported as such (not as a missing object, not retried as a network fault).
      await assert.rejects(store.getToFile('c/file', join(work, 'no-such-dir', 'x.bin')), { code: 'ENOENT' });
      await assert.rejects(store.put('c/nofile', { file: join(work, 'no-such-file') }), { code: 'ENOENT' });
      // Neither the missing download nor the finished one leaves a temp file behind.
      assert.deepEqual((await readdir(work)).sort(), ['dest.bin', 'src.bin']);
    });

    it('reads a byte range into a file; a range past the end is short, a missing object missing', async () => {
      const body = randomBytes(1024 * 1024 + 5);
      await store.put('c/ranged', body);
      const dest = join(work, 'range.bin');
      assert.deepEqual(await store.getRangeToFile('c/ranged', 1000, 70_000, dest), { status: 'ok' });
      assert.deepEqual(await readFile(dest), body.subarray(1000, 71_000));
      await rm(dest);
      assert.deepEqual(await store.getRangeToFile('c/ranged', body.length - 1, 1, dest), { status: 'ok' });
      assert.deepEqual(await readFile(dest), body.subarray(body.length - 1));
      await rm(dest);
      const past = await store.getRangeToFile('c/ranged', body.length - 10, 11, dest);
      assert.equal(past.status, 'short');
      assert.ok(past.status === 'short' && (past.objectSize === null || past.objectSize === body.length));
      assert.equal((await store.getRangeToFile('c/ranged', body.length + 100, 10, dest)).status, 'short');
      assert.deepEqual(await store.getRangeToFile('c/none', 0, 10, dest), { status: 'missing' });
      await assert.rejects(store.getRangeToFile('c/ranged', -1, 10, dest), TypeError);
      await assert.rejects(store.getRangeToFile('c/ranged', 0, 0, dest), TypeError);
      assert.deepEqual((await readdir(work)).filter((f) => f.startsWith('range')), [], 'no range read left a file or a temp file');
    });

    it('reads a byte range into memory: the object ending inside it gives what is left, past it short, an aborted read its reason', async () => {
      const body = randomBytes(256 * 1024 + 3);
      await store.put('c/ranged-mem', body);
      const mid = await readRange(store, 'c/ranged-mem', 100, 1000);
      assert.ok(mid.status === 'ok');
      assert.deepEqual(mid.body, body.subarray(100, 1100));
      assert.ok(mid.objectSize === null || mid.objectSize === body.length);
      const tail = await readRange(store, 'c/ranged-mem', body.length - 10, 1000);
      assert.ok(tail.status === 'ok');
      assert.deepEqual(tail.body, body.subarray(body.length - 10));
      assert.equal((await readRange(store, 'c/ranged-mem', body.length, 10)).status, 'short');
      assert.deepEqual(await readRange(store, 'c/none', 0, 10), { status: 'missing' });
      const stop = new AbortController();
      stop.abort(new Error('paused'));
      await assert.rejects(readRange(store, 'c/ranged-mem', 0, 10, stop.signal), /paused/);
      await assert.rejects(readRange(store, 'c/ranged-mem', 0, 0), TypeError);
    });

    it('shows a byte range, and a whole file, to an observer as they arrive', async () => {
      const body = randomBytes(2 * 1024 * 1024 + 9);
      await store.put('c/seen', body);
      const seen = (): { observe: { start(): void; chunk(b: Buffer): undefined }; bytes(): Buffer; starts(): number } => {
        let parts: Buffer[] = [];
        let starts = 0;
        return {
          observe: {
            start: () => {
              starts++;
              parts = [];
            },
            chunk: (b) => void parts.push(Buffer.from(b)),
          },
          bytes: () => Buffer.concat(parts),
          starts: () => starts,
        };
      };
      const r = seen();
      const ok = await store.observeRange('c/seen', 1000, 1_500_000, r.observe);
      assert.ok(ok.status === 'ok' && (ok.objectSize === null || ok.objectSize === body.length), JSON.stringify(ok));
      assert.ok(r.bytes().equals(body.subarray(1000, 1_501_000)));
      assert.equal(r.starts(), 1);
      assert.equal((await store.observeRange('c/seen', body.length - 10, 11, seen().observe)).status, 'short');
      assert.deepEqual(await store.observeRange('c/none', 0, 10, seen().observe), { status: 'missing' });
      const w = seen();
      const dest = join(work, 'seen.bin');
      assert.equal(await store.getToFile('c/seen', dest, undefined, { observe: w.observe }), true);
      assert.ok(w.bytes().equals(body));
      assert.ok((await readFile(dest)).equals(body));
      await rm(dest);
      // An aborted signal stops the read before anything is written.
      await assert.rejects(store.getToFile('c/seen', dest, undefined, { signal: AbortSignal.abort() }));
      assert.deepEqual((await readdir(work)).filter((f) => f.startsWith('seen')), []);
    });

    it('streams a small object into a file within a small bound (the S3 store\'s lean GET), shown to an observer; too large is refused', async () => {
      const body = randomBytes(4 * 1024 + 77);
      await store.put('c/small', body);
      let parts: Buffer[] = [];
      let starts = 0;
      const observe = { start: () => { starts++; parts = []; }, chunk: (b: Buffer) => void parts.push(Buffer.from(b)) };
      const dest = join(work, 'small.bin');
      assert.equal(await store.getToFile('c/small', dest, body.length, { observe }), true);
      assert.ok((await readFile(dest)).equals(body));
      assert.ok(Buffer.concat(parts).equals(body));
      assert.equal(starts, 1);
      await rm(dest);
      assert.equal(await store.getToFile('c/small-missing', dest, 1024), false);
      await assert.rejects(store.getToFile('c/small', dest, body.length - 1), ObjectTooLargeError);
      await assert.rejects(store.getToFile('c/small', dest, body.length, { signal: AbortSignal.abort() }));
      assert.deepEqual((await readdir(work)).filter((f) => f.startsWith('small')), [], 'no refused or missing read left a file or a temp file');
    });

    it('answers conditional GETs: missing, ok with an ETag, unchanged, ok again after a change', async () => {
      assert.deepEqual(await store.getIfNoneMatch('c/head', undefined, 1024), { status: 'missing' });
      await store.put('c/head', Buffer.from('{"seq":1}'));
      const first = await store.getIfNoneMatch('c/head', undefined, 1024);
      assert.equal(first.status, 'ok');
      if (first.status !== 'ok') return;
      assert.equal(first.body.toString(), '{"seq":1}');
      assert.deepEqual(await store.getIfNoneMatch('c/head', first.etag, 1024), { status: 'unchanged' });
      await store.put('c/head', Buffer.from('{"seq":2}'));
      const second = await store.getIfNoneMatch('c/head', first.etag, 1024);
      assert.equal(second.status, 'ok');
      if (second.status !== 'ok') return;
      assert.equal(second.body.toString(), '{"seq":2}');
      assert.notEqual(second.etag, first.etag);
      await assert.rejects(store.getIfNoneMatch('c/head', undefined, 3), ObjectTooLargeError);
    });

    it('tells whether a key exists and deletes (deleting a missing key is fine)', async () => {
      await store.put('c/del', Buffer.from('x'));
      assert.equal(await store.exists('c/del'), true);
      assert.equal(await store.exists('c/de'), false);
      await store.delete('c/del');
      assert.equal(await store.exists('c/del'), false);
      assert.equal(await store.getBuffer('c/del', 10), null);
      await store.delete('c/del');
    });

    it('putIfAbsent creates a missing key only; the existing object is kept', async () => {
      assert.equal(await store.putIfAbsent('cond/claim.json', Buffer.from('host-a')), true);
      assert.equal((await store.getBuffer('cond/claim.json', 100))?.toString(), 'host-a');
      assert.equal(await store.putIfAbsent('cond/claim.json', Buffer.from('host-b')), false);
      // Even the same bytes again: this call did not create the object.
      assert.equal(await store.putIfAbsent('cond/claim.json', Buffer.from('host-a')), false);
      assert.equal((await store.getBuffer('cond/claim.json', 100))?.toString(), 'host-a');
      await store.delete('cond/claim.json');
      assert.equal(await store.putIfAbsent('cond/claim.json', Buffer.from('host-c')), true);
      assert.equal((await store.getBuffer('cond/claim.json', 100))?.toString(), 'host-c');
      assert.equal(await store.putIfAbsent('cond/empty', Buffer.alloc(0)), true);
      assert.equal(await store.putIfAbsent('cond/empty', Buffer.alloc(0)), false);
      assert.equal((await store.getBuffer('cond/empty', 100))?.length, 0);
    });

    it('putIfAbsent: of 20 concurrent creates of one key exactly one wins, and its body is stored', async () => {
      for (let round = 0; round < 5; round++) {
        const key = `cond/race/${round}`;
        const bodies = Array.from({ length: 20 }, (_, i) => Buffer.from(`writer ${i} round ${round}`));
        const results = await Promise.all(bodies.map((b) => store.putIfAbsent(key, b)));
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        assert.equal(winners.length, 1, `round ${round}: ${results.join(',')}`);
        assert.deepEqual(await store.getBuffer(key, 100), bodies[winners[0] ?? -1]);
      }
    });

    it('putIfMatch replaces only the version it names; missing keys and stale ETags are refused', async () => {
      assert.equal(await store.putIfMatch('cond/head', Buffer.from('v1'), '"0123456789abcdef0123456789abcdef"'), false);
      assert.equal(await store.exists('cond/head'), false);
      await store.put('cond/head', Buffer.from('v1'));
      const v1 = await store.getIfNoneMatch('cond/head', undefined, 100);
      assert.equal(v1.status, 'ok');
      if (v1.status !== 'ok') return;
      assert.equal(await store.putIfMatch('cond/head', Buffer.from('v2'), v1.etag), true);
      const v2 = await store.getIfNoneMatch('cond/head', undefined, 100);
      assert.equal(v2.status === 'ok' ? v2.body.toString() : v2.status, 'v2');
      assert.equal(await store.putIfMatch('cond/head', Buffer.from('v3'), v1.etag), false);
      assert.equal((await store.getBuffer('cond/head', 100))?.toString(), 'v2');

      // Ten writers that all read v2: one replaces it, the others find another version.
      if (v2.status !== 'ok') return;
      const bodies = Array.from({ length: 10 }, (_, i) => Buffer.from(`v3 by ${i}`));
      const results = await Promise.all(bodies.map((b) => store.putIfMatch('cond/head', b, v2.etag)));
      const winners = results.flatMap((won, i) => (won ? [i] : []));
      assert.equal(winners.length, 1, results.join(','));
      assert.deepEqual(await store.getBuffer('cond/head', 100), bodies[winners[0] ?? -1]);
    });

    it('lists more than 1000 keys in order, by prefix, after startAfter', async () => {
      const keys = Array.from({ length: 1234 }, (_, i) => `many/k-${String(i).padStart(5, '0')}`);
      await eachLimit(keys, 32, (k) => store.put(k, Buffer.from(k)));
      await store.put('manyx/other', Buffer.from('x'));
      await store.put('man', Buffer.from('x'));

      assert.deepEqual(await collect(store.list('many/')), keys);
      assert.deepEqual(await collect(store.list('many/', 'many/k-00999')), keys.slice(1000));
      assert.deepEqual(await collect(store.list('many/', 'many/k-01233')), []);
      assert.deepEqual(await collect(store.list('many/k-0123')), keys.slice(1230, 1234).filter((k) => k.startsWith('many/k-0123')));
      assert.deepEqual(await collect(store.list('nothing-here/')), []);
      const all = await collect(store.list('man'));
      assert.equal(all.length, keys.length + 2);
      assert.ok(all.includes('man') && all.includes('manyx/other'));

      // Listed with sizes and times, then deleted in batches (S3 DeleteObjects: 1000 keys a request).
      const t0 = Date.now();
      const listed: Array<{ key: string; size: number; lastModified: number }> = [];
      for await (const o of store.listObjects('many/')) listed.push(o);
      assert.deepEqual(listed.map((o) => o.key), keys);
      assert.ok(listed.every((o, i) => o.size === Buffer.byteLength(keys[i]!) && o.lastModified > t0 - 10 * 60_000 && o.lastModified < t0 + 60_000), JSON.stringify(listed[0]));
      await store.deleteMany([...keys.slice(0, 1100), 'many/not-there']);
      assert.deepEqual(await collect(store.list('many/')), keys.slice(1100));
      await store.deleteMany([]);
      assert.equal(await store.exists('manyx/other'), true);
    });
  });
}
