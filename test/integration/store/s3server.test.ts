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
});
