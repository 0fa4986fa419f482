// Image identity across image stores (issue 11): an image saved on dockerd 20.10 (overlay2) and loaded on dockerd 26
// (containerd store), and back, gets another id but keeps its config digest and diff ids; a spec captured on either
// carries them, and the other engine finds its copy of the image by them, creates the twin from it and adopts it.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { ImageMissingError, TwinRefusedError } from '../../../src/docker/index.js';
import type { DockerRuntime } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, stopAllEngines } from '../../../src/lab/engine.js';
import type { Engine } from '../../../src/lab/engine.js';
import { runtimeFor } from '../../support/engine.js';

const suffix = randomBytes(3).toString('hex');

describe('image identity across overlay2 and the containerd store', { timeout: 180_000 }, () => {
  let o2: Engine;
  let ctd: Engine;
  let rtO2: DockerRuntime;
  let rtCtd: DockerRuntime;

  before(async () => {
    [o2, ctd] = await Promise.all([startEngine({ name: 'id-o2' }), startEngine({ name: 'id-ctd', kind: 'containerd' })]);
    rtO2 = runtimeFor(o2);
    rtCtd = runtimeFor(ctd);
  });

  after(async () => {
    await stopAllEngines();
  });

  for (const [from, to] of [['overlay2', 'containerd'], ['containerd', 'overlay2']] as const) {
    it(`${from} → ${to}: another id, the same identity; the twin is created from the copy and adopted`, async () => {
      const [src, dst] = from === 'overlay2' ? [o2, ctd] : [ctd, o2];
      const [rtSrc, rtDst] = from === 'overlay2' ? [rtO2, rtCtd] : [rtCtd, rtO2];
      const tag = `twl-id-${from.slice(0, 3)}-${suffix}:1`;
      const srcId = await importBusyboxImage(src.socketPath, tag);
      const dstId = await copyImage(src.socketPath, dst.socketPath, tag);
      assert.notEqual(dstId, srcId, 'docker load on the other store gives another id');
      const [a, b] = [await rtSrc.imageIdentity(srcId), await rtDst.imageIdentity(dstId)];
      assert.ok(a !== null && b !== null);
      assert.deepEqual(b, a);
      assert.equal((from === 'overlay2' ? a : b).configDigest, from === 'overlay2' ? srcId : dstId, 'under overlay2 the id is the config digest');
      assert.equal(await rtDst.imageIdentity(srcId), null, 'the source id names no image on the destination');

      const name = `web-${from.slice(0, 3)}`;
      await dockerCli(src, ['create', '--name', name, '--network', 'none', '-l', 'twinlayer.enable=true', tag, 'sh', '-c', 'exec sleep 3600']);
      const spec = await rtSrc.captureSpec(name);
      assert.equal(spec.imageId, srcId);
      assert.deepEqual(spec.imageIdentity, a);
      assert.equal(await rtDst.localImageFor(spec), dstId);
      const twin = await rtDst.ensureTwin(spec, { trusted: false });
      assert.ok(twin.state === 'stopped');
      assert.equal(twin.imageId, dstId, 'created from the destination\'s copy');
      assert.equal(await rtDst.imageMatches(twin.imageId, spec), true);
      assert.equal((await rtDst.ensureTwin(spec, { trusted: false })).state, 'stopped', 'adopted on the next call');

      // Without the identity (a spec of an older twinlayer) only the id matches: the copy is not found.
      const { imageIdentity: _identity, ...bare } = spec;
      assert.equal(await rtDst.localImageFor(bare), null);
      assert.equal(await rtDst.imageMatches(twin.imageId, bare), false);
      await assert.rejects(rtDst.ensureTwin({ ...bare, name: `${name}-bare` }, { trusted: false }), ImageMissingError);
      await assert.rejects(rtDst.ensureTwin(bare, { trusted: false }), TwinRefusedError);

      // Another image's identity matches nothing, and the twin is not adopted for it.
      const other = { ...spec, imageIdentity: { ...a, configDigest: `sha256:${'0'.repeat(64)}` } };
      assert.equal(await rtDst.localImageFor(other), null);
      await assert.rejects(rtDst.ensureTwin(other, { trusted: false }), TwinRefusedError);
    });
  }
});
