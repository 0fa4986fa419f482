// The image shipper's own logic (src/pusher/image-shipper.ts) with a stand-in engine and a local-directory bucket:
// the backoff, what is retried (a failed save, too little free space) and what is not (an archive that is not the
// image), and that an image with every object present is not saved at all.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { create } from 'tar';
import type { ImageIdentity } from '../../../src/docker/index.js';
import { createLogger } from '../../../src/log/logger.js';
import { CommitYield } from '../../../src/pusher/commit-yield.js';
import { ImageShipper, shipBackoffMs } from '../../../src/pusher/image-shipper.js';
import { Bucket, DirBlobStore } from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const silent = createLogger({ level: 'error', write: () => undefined });

describe('shipBackoffMs', () => {
  it('doubles from the base and stops at the cap', () => {
    assert.deepEqual([1, 2, 3, 4].map((f) => shipBackoffMs(f, 10_000, 3600_000)), [10_000, 20_000, 40_000, 80_000]);
    assert.equal(shipBackoffMs(9, 10_000, 3600_000), 2_560_000);
    assert.equal(shipBackoffMs(10, 10_000, 3600_000), 3600_000);
    assert.equal(shipBackoffMs(10_000, 10_000, 3600_000), 3600_000);
    assert.throws(() => shipBackoffMs(0, 1, 2), /positive integer/);
  });
});

describe('ImageShipper', () => {
  let root = '';
  let bucket: Bucket;
  let archive = '';
  const layer = Buffer.from('not really a tar, but bytes with a digest');
  const config = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  const identity: ImageIdentity = { configDigest: sha(config), diffIds: [sha(layer)] };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'image-shipper-'));
    bucket = new Bucket(new DirBlobStore(join(root, 'bucket')), { prefix: 'tl', group: 'g', signatures: testSignatures() });
    // A legacy archive of the image: manifest.json, its config, one layer.
    archive = join(root, 'archive');
    await mkdir(join(archive, 'l1'), { recursive: true });
    await writeFile(join(archive, 'l1', 'layer.tar'), layer);
    await writeFile(join(archive, 'config.json'), config);
    await writeFile(join(archive, 'manifest.json'), JSON.stringify([{ Config: 'config.json', Layers: ['l1/layer.tar'] }]));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  let n = 0;
  function make(runtime: { saveImage?: () => Promise<NodeJS.ReadableStream>; free?: number; onEngine?: (imageId: string) => boolean; pace?: CommitYield }): { shipper: ImageShipper; saves: () => number; saved: string[] } {
    let saves = 0;
    const saved: string[] = [];
    const shipper = new ImageShipper({
      runtime: {
        saveImage: async (imageId: string) => {
          saves++;
          saved.push(imageId);
          if (runtime.saveImage === undefined) return create({ cwd: archive, portable: true }, ['manifest.json', 'config.json', 'l1']) as unknown as NodeJS.ReadableStream;
          return runtime.saveImage();
        },
        imageSize: (imageId: string) => Promise.resolve(runtime.onEngine === undefined || runtime.onEngine(imageId) ? 1000 : null),
      },
      bucket: new Bucket(bucket.store, { prefix: 'tl', group: `g${n++}`, signatures: testSignatures() }),
      dir: join(root, `work-${n}`),
      log: silent,
      baseBackoffMs: 20,
      maxBackoffMs: 40,
      freeBytes: () => Promise.resolve(runtime.free ?? Number.MAX_SAFE_INTEGER),
      ...(runtime.pace === undefined ? {} : { pace: runtime.pace }),
    });
    return { shipper, saves: () => saves, saved };
  }

  async function until(what: string, check: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !check(); i++) await delay(10);
    assert.ok(check(), what);
  }

  it('ships the image, then finds it all present without saving it again', async () => {
    const { shipper, saves } = make({});
    try {
      const signal = new AbortController().signal;
      const first = await shipper.ship('sha256:id', identity, signal);
      assert.deepEqual({ uploaded: first.uploaded, present: first.present }, { uploaded: 2, present: 0 });
      assert.equal(saves(), 1);
      const again = await shipper.ship('sha256:id', identity, signal);
      assert.deepEqual(again, { uploaded: 0, present: 2, bytes: 0 });
      assert.equal(saves(), 1, 'no docker save when every object is in the bucket');
    } finally {
      await shipper.stop();
    }
  });

  it('reads the saved image only while no commit is under way', async () => {
    let busy = true;
    const { shipper, saves } = make({ pace: new CommitYield({ busy: () => busy, pollMs: 2, maxWaitMs: 60_000 }) });
    try {
      shipper.want('c1', 'sha256:id', identity);
      await until('saved', () => saves() === 1);
      await delay(150);
      assert.equal(shipper.status()[0]?.state, 'shipping', 'held while a commit is under way');
      busy = false;
      await until('shipped once the commit is over', () => shipper.status()[0]?.state === 'shipped');
    } finally {
      await shipper.stop();
    }
  });

  it('refuses an archive that is not the image for good: saved once, never retried', async () => {
    const { shipper, saves } = make({});
    try {
      shipper.want('c1', 'sha256:id', { configDigest: identity.configDigest, diffIds: [sha(Buffer.from('another layer'))] });
      await until('refused', () => shipper.status()[0]?.state === 'refused');
      assert.match(shipper.status()[0]?.error ?? '', /not the image its identity names/);
      await delay(150);
      assert.equal(saves(), 1, 'not saved again (the backoff is 20-40 ms)');
    } finally {
      await shipper.stop();
    }
  });

  it('backs off and tries again after a failed save, and ships once it works', async () => {
    let fail = 2;
    const { shipper, saves } = make({
      saveImage: () => {
        if (fail-- > 0) return Promise.reject(new Error('engine busy'));
        return Promise.resolve(create({ cwd: archive, portable: true }, ['manifest.json', 'config.json', 'l1']) as unknown as NodeJS.ReadableStream);
      },
    });
    try {
      shipper.want('c1', 'sha256:id', identity);
      await until('shipped after two failures', () => shipper.status()[0]?.state === 'shipped');
      assert.equal(saves(), 3);
      assert.equal(shipper.status()[0]?.failures, 0, 'reset by the success');
    } finally {
      await shipper.stop();
    }
  });

  it('does not save without the image\'s size and the reserve free; waits and tries again', async () => {
    const { shipper, saves } = make({ free: 100 });
    try {
      shipper.want('c1', 'sha256:id', identity);
      await until('two failures', () => (shipper.status()[0]?.failures ?? 0) >= 2);
      assert.match(shipper.status()[0]?.error ?? '', /not enough free space/);
      assert.equal(saves(), 0, 'never saved');
    } finally {
      await shipper.stop();
    }
  });

  it('keeps the image id of each container that wants it, and saves the one still on the engine', async () => {
    // The containerd store: two ids share the config digest; the first container's is gone from the engine.
    const { shipper, saved } = make({ onEngine: (id) => id === 'sha256:new' });
    try {
      shipper.want('c1', 'sha256:old', identity);
      shipper.want('c2', 'sha256:new', identity);
      assert.deepEqual(shipper.status().map((s) => s.imageIds), [['sha256:old', 'sha256:new']]);
      await until('shipped', () => shipper.status()[0]?.state === 'shipped');
      assert.deepEqual(saved, ['sha256:new']);
    } finally {
      await shipper.stop();
    }
  });

  it('forgets an image once no container it ships for is protected, and one container\'s release keeps it for the other', async () => {
    const { shipper } = make({ free: 100 });
    try {
      shipper.want('c1', 'sha256:id', identity);
      shipper.want('c2', 'sha256:id', identity);
      assert.deepEqual(shipper.status().map((s) => s.containers), [['c1', 'c2']]);
      shipper.release('c1');
      assert.deepEqual(shipper.status().map((s) => s.containers), [['c2']]);
      shipper.release('c2');
      assert.deepEqual(shipper.status(), []);
    } finally {
      await shipper.stop();
    }
  });
});
