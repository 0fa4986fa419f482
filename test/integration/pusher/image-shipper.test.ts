// The primary ships its protected containers' images to the bucket (issue 12 item 4): on a real engine of each kind
// (20.10/overlay2 saves the legacy layout, 26/containerd the OCI one) and the embedded S3 server behind the fault
// proxy. After a ship the bucket holds the config's exact bytes and each layer gzip'd, which gunzips to the tar whose
// sha256 is its diff id; a layer shared with an image shipped before is not uploaded again, nor is anything on a
// second ship (PUTs counted at the proxy); a stop during an upload the proxy holds resolves before that request ends; and a pusher
// ships its container's image only with shipImages. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';

import type { DockerRuntime, ImageIdentity } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, ENGINE_KINDS, startEngine, type Engine } from '../../../src/lab/engine.js';
import { startFaultProxy, type ProxyAnswer, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { Pusher } from '../../../src/pusher/index.js';
import { ImageShipper } from '../../../src/pusher/image-shipper.js';
import { asDigest, type Bucket, type S3BlobStore } from '../../../src/store/index.js';
import { runtimeFor } from '../../support/engine.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger } from '../puller/helpers.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (d: string): ReturnType<typeof asDigest> => asDigest(d.slice('sha256:'.length));
/** The client's timeout through the fault proxy: a held request ends by it unless stop() aborts it first. */
const requestTimeoutMs = 120_000;

for (const kind of ENGINE_KINDS) {
  describe(`image shipper on ${kind === 'overlay2' ? '20.10/overlay2' : '26/containerd'}`, { timeout: 600_000 }, () => {
    let base = '';
    let s3: TestS3 | undefined;
    let direct: S3BlobStore | undefined;
    let proxy: FaultProxy | undefined;
    let viaProxy: S3BlobStore | undefined;
    let engine: Engine | undefined;
    let runtime: DockerRuntime;
    let baseImage = { id: '', identity: null as ImageIdentity | null };
    let derived = { id: '', identity: null as ImageIdentity | null };
    const answers: ProxyAnswer[] = [];
    const cleanups: Array<() => Promise<unknown>> = [];

    before(async () => {
      requireRoot();
      base = await mkdtemp(join(tmpdir(), 'tl-imgship-'));
      s3 = await withS3();
      direct = testS3Store(s3);
      proxy = await startFaultProxy(s3.endpoint);
      proxy.onAnswer((a) => answers.push(a));
      // A held upload is given up only by stop(): no request timeout cuts it first.
      viaProxy = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket }, { requestTimeoutMs });
      engine = await startEngine({ name: `imgship-${kind.slice(0, 4)}`, kind });
      runtime = runtimeFor(engine);
      // A layer larger than what the archive reader holds in memory: streamed to disk as it comes.
      const id = await importBusyboxImage(engine.socketPath, 'tl-busybox:imgship', { payloadBytes: 6 * 1024 * 1024 });
      baseImage = { id, identity: await runtime.imageIdentity(id) };
      // A second layer on top of the first: `docker commit` of a created container with a file copied in.
      await dockerCli(engine, ['create', '--name', 'layered', 'tl-busybox:imgship', 'sh']);
      await dockerCli(engine, ['cp', join(import.meta.dirname, 'image-shipper.test.ts'), 'layered:/added.txt']);
      await dockerCli(engine, ['commit', 'layered', 'tl-busybox:imgship-layered']);
      await dockerCli(engine, ['rm', 'layered']);
      const derivedId = (await dockerCli(engine, ['image', 'inspect', '-f', '{{.Id}}', 'tl-busybox:imgship-layered'])).trim();
      derived = { id: derivedId, identity: await runtime.imageIdentity(derivedId) };
    });

    after(async () => {
      const errors: unknown[] = [];
      for (const c of cleanups.reverse()) await c().catch((e: unknown) => errors.push(e));
      viaProxy?.destroy();
      direct?.destroy();
      await proxy?.close().catch((e: unknown) => errors.push(e));
      await engine?.stop().catch((e: unknown) => errors.push(e));
      await s3?.close().catch((e: unknown) => errors.push(e));
      if (base !== '') await rm(base, { recursive: true, force: true });
      if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
    });

    let n = 0;
    function shipper(bucket: Bucket): { shipper: ImageShipper; lines: string[]; dir: string } {
      const { log, lines } = collectingLogger();
      const dir = join(base, `ship-${n++}`);
      const s = new ImageShipper({ runtime, bucket, dir, log });
      cleanups.push(() => s.stop());
      return { shipper: s, lines, dir };
    }
    const imagePuts = (): number => answers.filter((a) => a.method === 'PUT' && a.path.includes('/images/sha256/')).length;

    it('ships config and layers; a layer shipped before and a second ship upload nothing', async () => {
      assert.ok(baseImage.identity !== null && derived.identity !== null, 'both images have an identity');
      const group = `ship-${kind}`;
      const bucket = bucketFor(viaProxy!, group);
      const { shipper: s } = shipper(bucket);
      const signal = new AbortController().signal;

      const first = await s.ship(baseImage.id, baseImage.identity, signal);
      assert.deepEqual({ uploaded: first.uploaded, present: first.present }, { uploaded: 2, present: 0 }, 'the base image: its config and its layer');
      assert.equal(derived.identity.diffIds.length, 2);
      assert.equal(derived.identity.diffIds[0], baseImage.identity.diffIds[0], 'the derived image shares the base layer');
      const second = await s.ship(derived.id, derived.identity, signal);
      assert.deepEqual({ uploaded: second.uploaded, present: second.present }, { uploaded: 2, present: 1 }, 'the derived image: its config and its top layer only');

      // What the bucket holds, read straight from the server.
      const read = bucketFor(direct!, group);
      for (const image of [baseImage, derived]) {
        const config = await direct!.getBuffer(read.layout.imageKey(hexOf(image.identity!.configDigest)), 16 * 1024 * 1024);
        assert.ok(config !== null, 'the config is in the bucket');
        assert.equal(sha(config), image.identity!.configDigest, 'the config object is the config\'s exact bytes');
        for (const diffId of image.identity!.diffIds) {
          const gz = await direct!.getBuffer(read.layout.imageKey(hexOf(diffId)), 64 * 1024 * 1024);
          assert.ok(gz !== null, `layer ${diffId} is in the bucket`);
          assert.equal(sha(gunzipSync(gz)), diffId, 'the layer object gunzips to the tar of its diff id');
        }
      }
      const keys: string[] = [];
      for await (const k of direct!.list(read.layout.imagesPrefix)) keys.push(k);
      assert.equal(keys.length, 4, 'two configs, two distinct layers');

      const before = imagePuts();
      const again = await s.ship(derived.id, derived.identity, signal);
      assert.deepEqual({ uploaded: again.uploaded, present: again.present }, { uploaded: 0, present: 3 });
      assert.equal(imagePuts(), before, 'no PUT of an image object on the second ship');
    });

    for (const method of ['PUT', 'HEAD']) {
      it(`stop() during ${method === 'PUT' ? 'an upload' : 'a HEAD'} the proxy holds resolves before that request ends, and leaves no temp files`, async () => {
        assert.ok(derived.identity !== null);
        const bucket = bucketFor(viaProxy!, `hang-${method}-${kind}`);
        const { shipper: s, dir } = shipper(bucket);
        const held = proxy!.stats.faults.hang;
        proxy!.fail('hang', Number.POSITIVE_INFINITY, { method, path: /\/images\/sha256\// });
        try {
          s.want('c1', derived.id, derived.identity);
          for (let i = 0; i < 600 && proxy!.stats.faults.hang === held; i++) await delay(50);
          assert.ok(proxy!.stats.faults.hang > held, `a ${method} reached the proxy and is held`);
          assert.equal(s.status()[0]?.state, 'shipping');
          // The held request is never answered: only its own timeout (120 s) would end it. stop() must resolve first,
          // by aborting it, not by waiting for the request to end.
          const gaveUp = new AbortController();
          const winner = await Promise.race([
            s.stop().then(() => 'stop() resolved'),
            delay(requestTimeoutMs, 'the held request timed out first', { signal: gaveUp.signal }),
          ]);
          gaveUp.abort();
          assert.equal(winner, 'stop() resolved');
          assert.deepEqual(await readdir(dir).catch(() => []), [], 'the temp files are gone');
        } finally {
          proxy!.pass();
        }
      });
    }

    it('a pusher ships its container\'s image only with shipImages', async () => {
      assert.ok(derived.identity !== null);
      const label = `tl.imgship-${kind}`;
      await dockerCli(engine!, ['run', '-d', '--name', `prot-${kind}`, '--label', `${label}=true`, '--network', 'none', 'tl-busybox:imgship-layered', 'sh', '-c', 'while true; do sleep 1; done']);
      cleanups.push(() => dockerCli(engine!, ['rm', '-f', `prot-${kind}`]));
      for (const shipImages of [false, true]) {
        const group = `pusher-${kind}-${String(shipImages)}`;
        const bucket = bucketFor(direct!, group);
        const { log } = collectingLogger();
        const pusher = new Pusher({
          runtime, bucket, log, hostId: 'host-a', group, label, stateDir: join(base, `state-${group}`), excludes: [],
          debounceQuietMs: 5, debounceMaxMs: 20, uploadConcurrency: 2, reconcileIntervalMs: 600_000, shipImages,
        });
        cleanups.push(() => pusher.stop());
        await pusher.start();
        await pusher.syncOnce();
        await pusher.imagesIdle();
        const keys: string[] = [];
        for await (const k of direct!.list(bucket.layout.imagesPrefix)) keys.push(k);
        if (!shipImages) {
          assert.deepEqual(keys, [], 'nothing under images/ without shipImages');
          assert.deepEqual(pusher.imageStatus(), []);
        } else {
          assert.equal(keys.length, 3, 'the config and both layers');
          assert.deepEqual(pusher.imageStatus().map((i) => [i.configDigest, i.state, i.containers]), [[derived.identity.configDigest, 'shipped', [`prot-${kind}`]]]);
        }
        await pusher.stop();
      }
    });
  });
}
