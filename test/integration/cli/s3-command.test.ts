// `twinlayer s3` serves a file-backed S3 API that the AWS SDK (and so twinlayer itself) can use.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3BlobStore } from '../../../src/store/index.js';
import { S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { waitFor } from '../../../src/lab/wait.js';

describe('twinlayer s3', { timeout: 60_000 }, () => {
  let dir = '';
  let proc: TwinlayerProcess | undefined;
  after(async () => {
    await proc?.kill('SIGTERM');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the named bucket on the given address, stores objects under --dir, and stops on SIGTERM', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-s3cmd-'));
    const port = await freePort();
    const portFile = join(dir, 'port');
    proc = spawnTwinlayer(['s3', '--dir', join(dir, 'data'), '--listen', `127.0.0.1:${port}`, '--bucket', 'dev-bucket', '--port-file', portFile], {});
    await waitFor('the port file', 20_000, async () => ((await readFile(portFile, 'utf8').catch(() => null)) === String(port) ? true : undefined));
    const store = new S3BlobStore({ bucket: 'dev-bucket', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, pathStyle: true, credentials: S3RVER_CREDENTIALS });
    try {
      await store.checkReachable();
      await store.put('a/b.txt', Buffer.from('hello'));
      assert.equal((await store.getBuffer('a/b.txt', 100))?.toString(), 'hello');
    } finally {
      store.destroy();
    }
    assert.equal(await proc.kill('SIGTERM'), 0);
  });
});
