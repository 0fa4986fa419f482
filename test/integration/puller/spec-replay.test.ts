// A signed spec replayed onto its own key (review of issue 8, finding 1): a spec's signature binds it to
// containers/<name>/spec.json only, so a bucket writer without a key can put back an older spec the primary once
// signed (another config, other privileges). Every record names the spec it belongs to; the puller (real dockerd,
// the embedded S3 server) uses a spec only when the newest record of its container names it; any other is not used,
// the container waiting for a record naming it (status and log; not a refusal: a new spec is put before its commit) — after a restart (the spec read again) and when a new full commit makes it read the spec
// again — while the twin made from the named spec stays as it is.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { specDigest, twinSpecSchema, type TwinSpec } from '../../../src/docker/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, bucketFor, collectingLogger, Primary, twinSpec } from './helpers.js';

const GROUP = 'spec-replay';

describe('puller: a signed spec put back at its own key is not used unless the newest record names it', { timeout: 300_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-specreplay-', engine: 'puller-sr' });
  });

  after(() => fx?.close());

  // A command that keeps running, so the booted twin is still running when the test looks (`sh` alone exits at once).
  const specWith = (env: string[]): TwinSpec => twinSpecSchema.parse({ ...twinSpec('web', fx.imageId), cmd: ['sleep', '600'], env });

  async function twinOf(name: string): Promise<{ id: string; specDigest: string | null; upper: string }> {
    const t = await fx.runtime.twinState(name);
    if (t.state === 'absent') throw new Error(`no twin of ${name}`);
    return { id: t.id, specDigest: t.specDigest, upper: t.layers.upperDir };
  }

  it('does not use the replayed spec after a restart and at the next full commit, keeps the twin, and takes the named spec back', async () => {
    const bucket = bucketFor(fx.store, GROUP);
    const stateDir = join(fx.base, 'state');
    const specA = specWith(['V=1']);
    const specB = specWith(['V=2']);
    const primary = new Primary(bucket, join(fx.base, 'primary'));
    const web = await primary.container('web', fx.imageId, { spec: specA });
    await web.commit((u) => writeFile(join(u, 'f'), 'a1'));
    const signedA = await fx.store.getBuffer(bucket.specKey('web'), 1 << 20);
    assert.ok(signedA, 'spec A is in the bucket');

    const { log, lines } = collectingLogger();
    let puller = await fx.openPuller({ bucket: bucketFor(fx.store, GROUP, log), group: GROUP, stateDir, log });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, 'web'), 1);
    assert.equal((await twinOf('web')).specDigest, specDigest(specA));

    // The primary's container is recreated with another config: spec B, then a full commit naming it.
    await web.putSpec(specB);
    await web.commit((u) => writeFile(join(u, 'f'), 'b2'), 'full');
    await puller.pollOnce();
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, 'web'), 2);
    const twinB = await twinOf('web');
    assert.equal(twinB.specDigest, specDigest(specB), 'the twin was recreated from spec B');

    // A bucket writer puts back the older spec the primary signed (it verifies: right key, right signer).
    await fx.store.put(bucket.specKey('web'), signedA);
    assert.deepEqual(await bucket.getSpec('web'), JSON.parse(JSON.stringify(specA)), 'the replayed spec verifies on its own');

    // 1. The standby restarts: the spec is read again; the staged record names B.
    await puller.stop();
    puller = await fx.openPuller({ bucket: bucketFor(fx.store, GROUP, log), group: GROUP, stateDir, log });
    await puller.pollOnce();
    let st = (await puller.status()).containers.find((c) => c.name === 'web');
    // Not refused (a new spec put before the commit naming it looks the same): the container waits for a record
    // naming the spec read, and the replayed one is not used.
    assert.notEqual(st?.twin, 'refused', JSON.stringify(st));
    assert.match(st?.reason ?? '', /^waiting for a record naming spec [0-9a-f]{12}: .*is not the spec the staged record 2 of generation 1 names/);
    assert.ok(lines.some((l) => l.includes('waiting for a record naming it') && l.includes('is not the spec')), 'the wait is logged');
    assert.ok(!lines.some((l) => l.includes('twin refused')), 'not logged as a refusal');
    let twin = await twinOf('web');
    assert.equal(twin.id, twinB.id, 'the twin made from spec B is kept, not recreated from the replayed spec');
    assert.equal(twin.specDigest, specDigest(specB));

    // The spec B back (the primary puts it again): accepted, and staging goes on into the same twin.
    await web.putSpec(specB);
    await web.commit((u) => writeFile(join(u, 'f'), 'b3'));
    await puller.pollOnce();
    await puller.pollOnce();
    st = (await puller.status()).containers.find((c) => c.name === 'web');
    assert.equal(st?.twin, 'stopped', JSON.stringify(st));
    assert.equal(await appliedSeq(stateDir, GROUP, 'web'), 3);
    assert.equal((await twinOf('web')).id, twinB.id);

    // 2. Replayed again, while the puller runs: a full commit (naming B) makes it read the spec again.
    await fx.store.put(bucket.specKey('web'), signedA);
    await web.commit((u) => writeFile(join(u, 'f'), 'b4'), 'full');
    await puller.pollOnce();
    st = (await puller.status()).containers.find((c) => c.name === 'web');
    assert.equal(st?.twin, 'stopped', JSON.stringify(st));
    assert.match(st?.reason ?? '', /^waiting for a record naming spec [0-9a-f]{12}: .*is not the spec record 4 of generation 1 names/);
    // The spec in use stays B: a failover meanwhile restores B's restart policy, not none and not the replayed one's.
    assert.equal(specDigest(puller.specs().get('web') ?? assert.fail('no spec kept')), specDigest(specB));
    twin = await twinOf('web');
    assert.equal(twin.id, twinB.id);
    assert.equal(twin.specDigest, specDigest(specB));
    assert.equal(await readFile(join(twin.upper, 'f'), 'utf8'), 'b3', 'nothing was staged into the twin while the spec is not the one named');
    assert.equal(await appliedSeq(stateDir, GROUP, 'web'), 3);

    // MASTER meanwhile: the twin that boots is the one made from spec B.
    const fin = await puller.finalize(10_000);
    assert.equal(fin.containers.find((c) => c.name === 'web')?.stagedSeq, 3);
    const started = await puller.startTwins();
    assert.deepEqual(started.containers.map((c) => [c.name, c.ok]), [['web', true]]);
    const booted = await fx.runtime.twinState('web');
    if (booted.state !== 'running') throw new Error(`the twin did not boot: ${booted.state}`);
    assert.equal(booted.specDigest, specDigest(specB));
  });
});
