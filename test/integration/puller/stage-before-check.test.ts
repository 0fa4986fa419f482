// A change the daemon's poll reads is staged without waiting for the keeper's full check of the twins (a listing of
// the specs, then of the twins), which stood between a 4 KiB commit in the bucket and its twin (issue 13's ≤ 100 ms
// row): a head naming only containers ready for staging calls for no check, and one naming a new container has the
// ready ones staged while the check runs. A twin in doubt waits for the check: a commit naming another spec than the
// twin's is not staged before the keeper has recreated it. Here the check's spec listing hangs while a gate is
// closed. Real dockerd twins, the embedded S3 server, the real Puller.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { specDigest, type TwinSpec } from '../../../src/docker/index.js';
import { waitFor } from '../../../src/lab/wait.js';
import type { S3BlobStore } from '../../../src/store/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, bucketFor, collectingLogger, Primary, twinSpec } from './helpers.js';

/** The fixture's store, whose spec listings wait while the gate is closed. */
function gatedStore(store: S3BlobStore): { store: S3BlobStore; close(): void; open(): void; held(): number } {
  let gate: Promise<void> | null = null;
  let release = (): void => undefined;
  let held = 0;
  const list = async function* (prefix: string, startAfter?: string): AsyncGenerator<string> {
    if (gate !== null && prefix.endsWith('/containers/')) {
      held++;
      await gate;
    }
    yield* store.list(prefix, startAfter);
  };
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'list') return list;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    store: proxy,
    close: () => {
      gate ??= new Promise<void>((resolve) => { release = resolve; });
    },
    open: () => {
      release();
      gate = null;
    },
    held: () => held,
  };
}

describe('the daemon stages before the keeper\'s check', { timeout: 300_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-stage-first-', engine: 'puller-sf' });
  });

  after(() => fx?.close());

  /** A primary with container `name` at commit 1 (writing `f`), and a puller of `group` that staged it, reading the
   *  bucket through a gate (closed: the keeper's spec listings hang); no periodic check. */
  async function stagedBehindGate(group: string, name: string, primaryDir: string, first: string, spec?: TwinSpec) {
    const stateDir = join(fx.base, group);
    const primary = new Primary(bucketFor(fx.store, group), join(fx.base, primaryDir));
    const c = await primary.container(name, fx.imageId, ...(spec === undefined ? [] : [{ spec }]));
    await c.commit((u) => writeFile(join(u, 'f'), first));
    const gated = gatedStore(fx.store);
    fx.defer(() => gated.open());
    const { log, lines } = collectingLogger();
    // No periodic check meanwhile: the only one that could come is one a moved head calls for.
    const puller = await fx.openPuller({ bucket: bucketFor(gated.store, group), group, stateDir, log, twinCheckEvery: 1_000_000 });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1, lines.slice(-5).join('\n'));
    return { stateDir, primary, container: c, gated, puller };
  }

  it('stages a commit of a ready container without the keeper\'s check', async () => {
    const group = 'stage-first';
    const name = 'sf-web';
    const { stateDir, container: web, gated, puller } = await stagedBehindGate(group, name, 'primary', 'one');

    gated.close();
    try {
      puller.start();
      await web.commit((u) => writeFile(join(u, 'f'), 'two'));
      await waitFor('commit 2 staged', 30_000, async () => (await appliedSeq(stateDir, group, name)) === 2 || undefined, 10);
      assert.equal(await readFile(join(await fx.upperOf(name), 'f'), 'utf8'), 'two');
      assert.equal(gated.held(), 0, 'the moved head naming only a ready container had the specs listed');
    } finally {
      gated.open();
    }
    await puller.stop();
  });

  it('stages a ready container\'s commit while the check a new container calls for is still listing the specs', async () => {
    const group = 'stage-first-new';
    const name = 'sf-old';
    const { stateDir, primary, container: old, gated, puller } = await stagedBehindGate(group, name, 'primary-new', 'one');

    gated.close();
    try {
      // Both in the bucket before the daemon's first poll reads the head: a new container and a commit of the old.
      const added = await primary.container('sf-added', fx.imageId);
      await added.commit((u) => writeFile(join(u, 'g'), 'new'));
      await old.commit((u) => writeFile(join(u, 'f'), 'two'));
      puller.start();
      await waitFor('the old container\'s commit staged', 30_000, async () => (await appliedSeq(stateDir, group, name)) === 3 || undefined, 10);
      assert.equal(await readFile(join(await fx.upperOf(name), 'f'), 'utf8'), 'two');
      // The check the new container called for did run, and waits on the bucket: the new twin is not there yet.
      await waitFor('the keeper\'s spec listing', 10_000, () => Promise.resolve(gated.held() > 0 || undefined), 10);
      assert.equal(await appliedSeq(stateDir, group, 'sf-added'), 0);
    } finally {
      gated.open();
    }
    await waitFor('the new container staged once the check ran', 60_000, async () => (await appliedSeq(stateDir, group, 'sf-added')) === 2 || undefined, 20);
    assert.equal(await readFile(join(await fx.upperOf('sf-added'), 'g'), 'utf8'), 'new');
    await puller.stop();
  });

  it('leaves a commit naming another spec than its twin\'s for after the check', async () => {
    const group = 'stage-first-spec';
    const name = 'sf-spec';
    const specA: TwinSpec = { ...twinSpec(name, fx.imageId), env: ['V=1'] };
    const specB: TwinSpec = { ...twinSpec(name, fx.imageId), env: ['V=2'] };
    const { stateDir, container: web, gated, puller } = await stagedBehindGate(group, name, 'primary-spec', 'a1', specA);

    gated.close();
    try {
      puller.start();
      await web.putSpec(specB);
      await web.commit((u) => writeFile(join(u, 'f'), 'b2'), 'full');
      await waitFor('the keeper\'s spec listing', 30_000, () => Promise.resolve(gated.held() > 0 || undefined), 10);
      // The head moved and the check hangs: nothing is staged into the twin of spec A meanwhile.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await appliedSeq(stateDir, group, name), 1, 'a commit of spec B staged into the twin of spec A before the check');
    } finally {
      gated.open();
    }
    // Once the check ran: the twin is recreated from spec B and the commit staged into it.
    await waitFor('commit 2 staged into a twin of spec B', 60_000, async () => (await appliedSeq(stateDir, group, name)) === 2 || undefined, 20);
    const twin = await fx.runtime.twinState(name);
    assert.ok(twin.state !== 'absent' && twin.specDigest === specDigest(specB), `twin of spec B: ${JSON.stringify(twin)}`);
    assert.equal(await readFile(join(await fx.upperOf(name), 'f'), 'utf8'), 'b2');
    await puller.stop();
  });
});
