// The standby's image loader against a real engine and s3rver: an image put in the bucket as the primary ships it is
// loaded by its identity, once for two containers; a tampered layer is refused before the engine sees anything and
// loads once the right object is back (after a backoff, not at once); a pause (a finalize) aborts a load in flight.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { twinSpecSchema, type ImageIdentity } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import { ImageLoader } from '../../../src/puller/image-loader.js';
import { Bucket, Signatures } from '../../../src/store/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { shipImage, type ShippedImage } from '../../support/ship-image.js';
import { testKey, testSignatures } from '../../support/signing.js';
import { WrappedStore } from '../store/helpers.js';
import { appliedSeq, collectingLogger, Primary, twinSpec } from './helpers.js';

const REF = 'tl-img:payload';
const GROUP = 'imgload';

describe('image loader: images through the bucket', () => {
  let fx: PullerFixture;
  let shipped: ShippedImage;
  let wrapped: WrappedStore;
  let bucket: Bucket;
  const logs = collectingLogger();
  let workDir: string;
  let identity: ImageIdentity;
  const loaders: ImageLoader[] = [];

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-imgload-', engine: 'imgload' });
    // A layer of some size (random: it does not compress), so that a load is in flight long enough to abort.
    await importBusyboxImage(fx.engine.socketPath, REF, { payloadBytes: 24 * 1024 * 1024 });
    wrapped = new WrappedStore(fx.store);
    bucket = new Bucket(wrapped, { signatures: testSignatures(), prefix: 'twinlayer', group: GROUP });
    shipped = await shipImage(fx.engine, REF, fx.store, bucket.layout);
    identity = { configDigest: shipped.configDigest, diffIds: shipped.diffIds };
    workDir = join(fx.base, 'images');
  });
  after(async () => {
    for (const l of loaders) await l.stop();
    await fx.close();
  });

  function loader(retryMs = 300): ImageLoader {
    const l = new ImageLoader({ runtime: fx.runtime, bucket, log: logs.log, workDir, retryBaseMs: retryMs, retryMaxMs: retryMs, rangeBytes: 1024 * 1024, reserveBytes: 0 });
    loaders.push(l);
    return l;
  }

  async function removeImage(): Promise<void> {
    await dockerCli(fx.engine, ['rmi', '-f', REF]).catch(() => undefined);
    const id = await fx.runtime.imageWithIdentity(identity);
    if (id !== null) await dockerCli(fx.engine, ['rmi', '-f', id]);
    assert.equal(await fx.runtime.imageWithIdentity(identity), null, 'the engine has the image no more');
  }

  /** `reached` resolves when a load has read 4 MiB into the largest layer (the read goes on: only a signal stops it). */
  function midwayThroughTheLayer(): { bigKey: string; reached: Promise<void> } {
    const [bigDiffId] = [...shipped.layers].sort((a, b) => b[1].length - a[1].length)[0]!;
    const bigKey = bucket.images.keyOf(bigDiffId);
    const reached = new Promise<void>((resolve) => {
      wrapped.beforeRange = (key, start) => {
        if (key === bigKey && start >= 4 * 1024 * 1024) resolve();
      };
    });
    return { bigKey, reached };
  }

  /** Like midwayThroughTheLayer, but that read is held until `release()` (its signal is not seen while held): a load
   *  cannot finish before then. `held()` says whether it still is. */
  function heldMidwayThroughTheLayer(): { reached: Promise<void>; held: () => boolean; release: () => void } {
    const [bigDiffId] = [...shipped.layers].sort((a, b) => b[1].length - a[1].length)[0]!;
    const bigKey = bucket.images.keyOf(bigDiffId);
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = false;
    let once = false;
    const reached = new Promise<void>((resolve) => {
      wrapped.beforeRange = async (key, start) => {
        if (key !== bigKey || start < 4 * 1024 * 1024 || once) return;
        once = true;
        holding = true;
        resolve();
        await gate;
        holding = false;
      };
    });
    return { reached, held: () => holding, release };
  }

  const configReads = (): number => wrapped.ranges.filter((r) => r.key === shipped.keys[0]).length;

  it('loads an image by its identity, one load for two containers, tagged as it was run', async () => {
    await removeImage();
    const l = loader();
    await l.open();
    const before = configReads();
    l.request('a', { identity, ref: REF });
    const second = l.request('b', { identity, ref: REF });
    assert.match(second, /loading it from the bucket|waiting to load/);
    await l.settled();
    const id = await fx.runtime.imageWithIdentity(identity);
    assert.notEqual(id, null, `loaded:\n${logs.lines.slice(-10).join('\n')}`);
    assert.equal((await fx.runtime.imageByRef(REF))?.id, id, 'tagged as the spec\'s image reference');
    assert.equal(configReads() - before, 1, 'the two containers shared one load');
    assert.deepEqual(await readdir(workDir), [], 'the work dir is empty afterwards');
    assert.ok(logs.lines.some((line) => line.includes('image layer fetched and checked')), 'progress is logged');
  });

  it('an unsigned spec gets no image from the bucket: its twin is held and the status says why', async () => {
    await removeImage();
    const group = 'imgload-unsigned';
    const unsigned = new Bucket(wrapped, { prefix: 'twinlayer', group, signatures: new Signatures({ signer: null, trusted: [testKey.trusted], acceptUnsigned: true }) });
    // The image's objects are in this group's bucket too: only the spec's signature keeps them out.
    for (const key of shipped.keys) {
      const body = await fx.store.getBuffer(key, 64 * 1024 * 1024);
      assert.ok(body !== null);
      await fx.store.put(key.replace(`/${GROUP}/`, `/${group}/`), body);
    }
    await unsigned.putSpec('rogue', twinSpecSchema.parse({ ...twinSpec('rogue', shipped.configDigest), image: REF, imageIdentity: identity }));
    const stateDir = join(fx.base, 'state-unsigned');
    const p = await fx.openPuller({ bucket: unsigned, group, stateDir, log: logs.log, trustUnsignedSpecs: false, imageLoad: { reserveBytes: 0 } });
    await p.pollOnce();
    const rogue = (await p.status()).containers.find((c) => c.name === 'rogue');
    assert.match(rogue?.reason ?? '', /not loaded from the bucket: the spec is not signed by a key the group trusts/, JSON.stringify(rogue));
    assert.equal(rogue?.twin, 'absent');
    assert.deepEqual(wrapped.ranges.filter((r) => r.key.includes(`/${group}/images/`)), [], 'no image object was read');
    assert.equal(await fx.runtime.imageWithIdentity(identity), null);
  });

  it('refuses a tampered layer before the engine sees anything, and loads it after a backoff once it is put back', async () => {
    await removeImage();
    const [diffId, tar] = [...shipped.layers].at(-1)!;
    const key = bucket.images.keyOf(diffId);
    const bad = Buffer.from(tar);
    bad[bad.length - 5000] = (bad[bad.length - 5000] ?? 0) ^ 0xff;
    await fx.store.put(key, gzipSync(bad));
    const backoffMs = 5_000;
    const l = loader(backoffMs);
    const refusedAt = Date.now();
    l.request('a', { identity, ref: REF });
    await l.settled();
    const status = l.request('a', { identity, ref: REF });
    assert.match(status, /refused: .*digest/, status);
    assert.equal(await fx.runtime.imageWithIdentity(identity), null, 'the engine has no such image');
    assert.equal(await fx.runtime.imageByRef(REF), null);
    assert.deepEqual(await readdir(workDir), [], 'nothing is left in the work dir');

    await fx.store.put(key, gzipSync(tar));
    // Asked again at once (every poll asks): no new load before the backoff has passed.
    const reads = configReads();
    l.request('a', { identity, ref: REF });
    await l.settled();
    assert.equal(configReads(), reads, 'no load within the backoff');
    // Asked every 200 ms, as polls do: loaded once the backoff (counted from the refusal) has passed, not before.
    let loaded: string | null = null;
    for (let i = 0; i < 75 && loaded === null; i++) {
      await new Promise((r) => setTimeout(r, 200));
      l.request('a', { identity, ref: REF });
      await l.settled();
      loaded = await fx.runtime.imageWithIdentity(identity);
    }
    assert.notEqual(loaded, null, `loaded after the object was put back:\n${logs.lines.slice(-10).join('\n')}`);
    assert.ok(Date.now() - refusedAt >= backoffMs, 'not before the backoff passed');
  });

  it('a pause (a finalize) aborts the load in flight; none starts until resume', async () => {
    await removeImage();
    const l = loader();
    const { bigKey, reached } = midwayThroughTheLayer();
    try {
      l.request('a', { identity, ref: REF });
      await reached;
      l.pause();
      await l.settled();
    } finally {
      wrapped.beforeRange = undefined;
    }
    const ranges = wrapped.ranges.filter((r) => r.key === bigKey).length;
    assert.equal(await fx.runtime.imageWithIdentity(identity), null, 'the aborted load gave the engine nothing');
    assert.deepEqual(await readdir(workDir), [], 'the aborted load left nothing in the work dir');
    assert.match(l.request('a', { identity, ref: REF }), /paused/);
    await l.settled();
    assert.equal(wrapped.ranges.filter((r) => r.key === bigKey).length, ranges, 'no load started while paused');
    l.resume();
    await l.settled();
    assert.notEqual(await fx.runtime.imageWithIdentity(identity), null, 'loaded after resume, without a backoff');
  });

  it('a puller holds the twin while its image loads; a finalize aborts the load at once, resume loads it and the twin is made', async () => {
    await removeImage();
    const primary = new Primary(bucket, join(fx.base, 'primary'));
    const spec = twinSpecSchema.parse({ ...twinSpec('web', shipped.configDigest), image: REF, imageIdentity: identity });
    const web = await primary.container('web', shipped.configDigest, { spec });
    await web.commit(async (u) => writeFile(join(u, 'marker'), 'from the bucket'));
    const stateDir = join(fx.base, 'state-puller');
    const p = await fx.openPuller({ bucket, group: GROUP, stateDir, log: logs.log, imageLoad: { reserveBytes: 0, rangeBytes: 1024 * 1024 } });
    const aborts = (): number => logs.lines.filter((l) => l.includes('image load aborted')).length;
    const abortsBefore = aborts();
    const hold = heldMidwayThroughTheLayer();
    // Released after a minute at the latest, so that a finalize that waits for the load fails the test, not hangs it.
    const safety = setTimeout(hold.release, 60_000);
    let report;
    let heldWhenFinalized: boolean;
    try {
      await p.pollOnce();
      const held = (await p.status()).containers.find((c) => c.name === 'web');
      assert.match(held?.reason ?? '', /loading it from the bucket|waiting to load/, JSON.stringify(held));
      await hold.reached;
      report = await p.finalize(5_000);
      heldWhenFinalized = hold.held();
    } finally {
      hold.release();
      clearTimeout(safety);
      wrapped.beforeRange = undefined;
    }
    // The load could not have finished (nor the finalize have waited for it): its read was still held.
    assert.ok(heldWhenFinalized, 'the finalize resolved while the load\'s read of the layer was still held');
    assert.equal(report.timedOut, false, 'the finalize did not run into its deadline');
    await waitFor('the load reported aborted', 10_000, () => Promise.resolve(aborts() > abortsBefore ? true : undefined), 50);
    const web0 = report.containers.find((c) => c.name === 'web');
    assert.equal(web0?.stagedSeq, 0);
    assert.match(web0?.error ?? '', /image/);
    const images = join(stateDir, 'pull', GROUP, 'images');
    await waitFor('the aborted load cleaned up its work dir', 10_000, async () => ((await readdir(images)).length === 0 ? true : undefined), 50);
    assert.equal(await fx.runtime.imageWithIdentity(identity), null, 'the aborted load gave the engine nothing');
    p.resume();
    await waitFor('the twin made from the loaded image and staged', 30_000, async () => {
      await p.pollOnce();
      return (await appliedSeq(stateDir, GROUP, 'web')) === 1 ? true : undefined;
    }, 100);
    assert.equal(await readFile(join(await fx.upperOf('web'), 'marker'), 'utf8'), 'from the bucket');
  });
});
