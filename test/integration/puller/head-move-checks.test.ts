// What a moved head costs before staging (issue 13: a 4 KiB write staged in the twin within 100 ms): new deltas of a
// container whose twin is in place go straight to staging, which checks that twin itself before it writes; the
// keeper's full pass (the specs' listing, the twins' listing, the host lookups) comes first only when the head brings
// something it must look at: here a full commit (its spec is read again). A real engine, the real Puller, the embedded
// S3 server, and a relay in front of the engine's socket that counts the puller's Docker requests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { startDockerCallCounter, type DockerCallCounter } from '../../support/docker-calls.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, collectingLogger, craftedJournal, twinSpec } from './helpers.js';

describe('a moved head and the twin checks', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  let counter: DockerCallCounter;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-head-move-', engine: 'puller-hm' });
    counter = await startDockerCallCounter(join(fx.base, 'docker.sock'), fx.engine.socketPath);
    fx.defer(() => counter.close());
  });

  after(() => fx?.close());

  it('stages a delta for a twin in place without the keeper\'s pass first; a full commit gets it', async () => {
    const group = 'hm-run';
    const name = 'hm-web';
    const j = craftedJournal(fx.store, group, name);
    await j.writer.putSpec(name, twinSpec(name, fx.imageId));
    const stateDir = join(fx.base, group);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    const p = await fx.openPuller({ socketPath: counter.path, bucket: j.writer, log, group, stateDir });
    await j.publish({ a: 'one' }, 'full');
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1, lines.join('\n'));

    const listings = (): number => counter.counts().get('GET /containers/json') ?? 0;
    for (let i = 0; i < 3; i++) {
      const seq = await j.publish({ a: `one.${i}` });
      counter.reset();
      await p.pollOnce();
      assert.equal(await appliedSeq(stateDir, group, name), seq, lines.join('\n'));
      assert.equal(listings(), 0, `no listing of the twins before staging delta ${seq}: ${JSON.stringify(Object.fromEntries(counter.counts()))}`);
    }

    const full = await j.publish({ b: 'two' }, 'full');
    counter.reset();
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), full, lines.join('\n'));
    assert.ok(listings() >= 1, `the keeper's pass looked at the twins before the full commit: ${JSON.stringify(Object.fromEntries(counter.counts()))}`);
    const upper = await fx.upperOf(name);
    assert.equal(await readFile(join(upper, 'b'), 'utf8'), 'two');
  });
});
