// A daemon poll still in flight when a finalize returns (hung on the bucket) must not touch the twins the report
// describes. Before the fix, such a poll came back after the stager froze, read a new spec and a full commit put
// after the finalize, removed the stopped twin as outdated, created another from the new spec and dropped the applied
// seq: the twin that booted was an empty container, not the one the report (and the claim) described. With real
// dockerd twins, s3rver and the lab fault proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { DEFAULT_TWIN_POLICY, specDigest, type TwinSpec } from '../../../src/docker/index.js';
import type { ProxyAnswer } from '../../../src/lab/fault-proxy.js';
import { waitFor } from '../../../src/lab/wait.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, bucketFor, collectingLogger, Primary, twinSpec } from './helpers.js';

describe('a daemon poll in flight when the finalize returned', { timeout: 600_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    // A hung request is given up after 10 s and tried again: far longer than the finalize and the new spec and
    // commit put after it (checked below: the retried poll's head read is answered after they are in the bucket).
    fx = await startPullerFixture({ tmpPrefix: 'tl-latepoll-', engine: 'puller-lp', proxy: { requestTimeoutMs: 10_000, smallRequestTimeoutMs: 10_000 } });
  });

  after(() => fx?.close());

  async function twinOf(name: string): Promise<{ id: string; upper: string; specDigest: string | null; state: string }> {
    const t = await fx.runtime.twinState(name);
    if (t.state === 'absent') assert.fail(`twin ${name} absent`);
    return { id: t.id, upper: t.layers.upperDir, specDigest: t.specDigest, state: t.state };
  }

  it('boots the twin the report describes, with its staged content, not one the late poll made from a newer spec', async () => {
    const group = 'late-poll';
    const name = 'lp-web';
    const stateDir = join(fx.base, 'state');
    const specA: TwinSpec = { ...twinSpec(name, fx.imageId), env: ['V=1'] };
    const specB: TwinSpec = { ...twinSpec(name, fx.imageId), env: ['V=2'] };
    const primary = new Primary(bucketFor(fx.store, group), join(fx.base, 'primary'));
    const web = await primary.container(name, fx.imageId, { spec: specA });
    await web.commit((u) => writeFile(join(u, 'f'), 'staged a1'));

    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.viaProxy, group), group, stateDir, log });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1);
    const twinA = await twinOf(name);
    assert.equal(twinA.specDigest, specDigest(specA));
    const polledAt = (await puller.status()).lastPollAt;

    // The daemon's next poll hangs on its first request; MASTER comes while it does.
    const answers: ProxyAnswer[] = [];
    const stopListening = fx.proxy.onAnswer((a) => answers.push(a));
    try {
      fx.proxy.fail('hang', 1);
      puller.start();
      await waitFor('the daemon poll hangs on the bucket', 30_000, () => Promise.resolve(fx.proxy.stats.faults.hang === 1 ? true : undefined), 5);
      const fin = await puller.finalize(200);
      assert.equal(fin.timedOut, true, 'the deadline passed while the daemon poll hung');
      assert.equal(fin.containers.find((c) => c.name === name)?.stagedSeq, 1);

      // The primary is recreated with another config meanwhile: spec B, then a full commit naming it.
      await web.putSpec(specB);
      await web.commit((u) => writeFile(join(u, 'f'), 'b2'), 'full');
      const publishedAt = Date.now();

      // The late poll comes back (its request given up and tried again) and sees the new head...
      await waitFor('the daemon poll in flight at the finalize ends', 120_000, async () =>
        lines.some((l) => l.includes('poll overtaken by a finalize')) || (await puller.status()).lastPollAt !== polledAt ? true : undefined, 20);
      assert.ok(answers.some((a) => a.at >= publishedAt), `the late poll read the bucket after the new spec and commit were put: ${JSON.stringify(answers)}`);
    } finally {
      stopListening();
    }

    // ...and the twin that boots is the one the report describes, with what was staged into it.
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[name, true]], JSON.stringify(start));
    const booted = await twinOf(name);
    assert.equal(booted.id, twinA.id, 'the twin the report described booted, not one recreated after it');
    assert.equal(booted.specDigest, specDigest(specA));
    assert.equal(await readFile(join(booted.upper, 'f'), 'utf8'), 'staged a1', 'the booted twin holds its staged content');
    assert.equal(await appliedSeq(stateDir, group, name), 1, 'the applied state still describes it');
    assert.equal(puller.position().containers[name], 1);
    assert.ok(!lines.some((l) => l.includes('recreating the stopped twin')), 'the late poll removed no twin');
  });

  it('holds a twin that is not the container its staged seq describes', async () => {
    const group = 'late-replaced';
    const name = 'lr-web';
    const stateDir = join(fx.base, 'state-replaced');
    const spec: TwinSpec = twinSpec(name, fx.imageId);
    const primary = new Primary(bucketFor(fx.store, group), join(fx.base, 'primary-replaced'));
    const web = await primary.container(name, fx.imageId, { spec });
    await web.commit((u) => writeFile(join(u, 'f'), 'staged'));
    const { log } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.store, group), group, stateDir, log });
    await puller.pollOnce();
    const first = await twinOf(name);

    const fin = await puller.finalize(10_000);
    assert.equal(fin.containers.find((c) => c.name === name)?.stagedSeq, 1);
    // Replaced after the report (as a late poll did): same spec, same labels, an empty upper dir.
    await fx.runtime.removeContainer(first.id);
    const other = await fx.runtime.ensureTwin(spec, { group, trusted: false, policy: DEFAULT_TWIN_POLICY, hostProblems: [] });
    assert.notEqual(other.state, 'absent');

    const start = await puller.startTwins();
    const r = start.containers.find((c) => c.name === name);
    assert.equal(r?.ok, false, JSON.stringify(start));
    assert.match(r?.error ?? '', /is not the container .* its staged seq describes/);
    assert.equal((await twinOf(name)).state, 'stopped', 'the replaced twin did not boot');
    const st = (await puller.status()).containers.find((c) => c.name === name);
    assert.match(st?.reason ?? '', /its staged seq describes/, JSON.stringify(st));
  });
});
