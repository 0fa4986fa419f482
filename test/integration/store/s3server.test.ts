// The embedded S3 server answers conditional GETs with 304 without leaking a file descriptor per answer
// (s3rver alone leaks one; a puller polling head.json every few ms would exhaust the limit within minutes).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startS3Server, S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { S3BlobStore } from '../../../src/store/index.js';

describe('embedded S3 server', () => {
  let dir = '';
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers If-None-Match with 304 and keeps its file descriptors', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-s3srv-'));
    const s3 = await startS3Server({ dir, buckets: ['fd-check'], silent: true });
    const store = new S3BlobStore({ bucket: 'fd-check', region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
    try {
      await store.put('gen/1/head.json', Buffer.from('{"seq":1}'));
      const first = await store.getIfNoneMatch('gen/1/head.json', undefined, 1024);
      assert.equal(first.status, 'ok');
      const etag = first.status === 'ok' ? first.etag : '';
      const fdsBefore = (await readdir('/proc/self/fd')).length;
      for (let i = 0; i < 300; i++) assert.equal((await store.getIfNoneMatch('gen/1/head.json', etag, 1024)).status, 'unchanged');
      const fdsAfter = (await readdir('/proc/self/fd')).length;
      assert.ok(fdsAfter - fdsBefore < 20, `file descriptors grew from ${fdsBefore} to ${fdsAfter} over 300 conditional GETs`);
      await store.put('gen/1/head.json', Buffer.from('{"seq":2}'));
      const changed = await store.getIfNoneMatch('gen/1/head.json', etag, 1024);
      assert.equal(changed.status, 'ok');
      assert.equal(changed.status === 'ok' ? changed.body.toString() : '', '{"seq":2}');
    } finally {
      store.destroy();
      await s3.close();
    }
  });

  it('never lets a GET see an object half written: every read is the old object or the new one, whole', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tl-s3srv-'));
    const s3 = await startS3Server({ dir: root, buckets: ['whole'], silent: true });
    const store = new S3BlobStore({ bucket: 'whole', region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
    try {
      const v1 = Buffer.alloc(1 << 20, 'a');
      await store.put('k', v1);
      for (let round = 0; round < 5; round++) {
        const v2 = Buffer.alloc(8 << 20, round % 2 === 0 ? 'b' : 'c');
        const old = (await store.getBuffer('k', 16 << 20)) ?? Buffer.alloc(0);
        let done = false;
        const put = store.put('k', v2).finally(() => { done = true; });
        let reads = 0;
        // Bounded: the put of 8 MiB to a local server ends well within these reads; each read is checked whole.
        while (!done && reads < 200) {
          const got = await store.getBuffer('k', 16 << 20);
          reads++;
          assert.ok(got !== null && (got.equals(old) || got.equals(v2)), `round ${round}, read ${reads}: ${got === null ? 'absent' : `${got.length} bytes, neither the old object nor the new one`}`);
        }
        await put;
        assert.ok((await store.getBuffer('k', 16 << 20))?.equals(v2), 'the new object after the put');
      }
      const names = await readdir(join(root, 'whole'));
      assert.deepEqual(names.filter((n) => n.endsWith('.tmp')), [], 'no temp file left');
    } finally {
      store.destroy();
      await s3.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});
