// The keeper's full check of the twins on an idle standby (issue 13 item 5: 200 containers per host): the twins are
// listed once per check and one that is as the last check left it is not inspected again, so the check's Docker work
// does not grow with the number of twins; a twin removed, started or stopped since is still seen at the next check.
// A real engine, the real Puller, the embedded S3 server, and a relay in front of the engine's socket that counts the
// puller's Docker requests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { Puller } from '../../../src/puller/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { startDockerCallCounter, type DockerCallCounter } from '../../support/docker-calls.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { bucketFor, collectingLogger, twinSpec } from './helpers.js';

describe('the idle standby\'s twin checks', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  let counter: DockerCallCounter;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-idle-checks-', engine: 'puller-ic' });
    counter = await startDockerCallCounter(join(fx.base, 'docker.sock'), fx.engine.socketPath);
    fx.defer(() => counter.close());
  });

  after(() => fx?.close());

  async function twinOf(p: Puller, name: string): Promise<string | undefined> {
    return (await p.status()).containers.find((c) => c.name === name)?.twin;
  }

  it('lists the twins once per check and inspects none that did not change; a removed, started or stopped twin is seen', async () => {
    const group = 'ic-idle';
    const names = Array.from({ length: 8 }, (_, i) => `ic-${i}`);
    const bucket = bucketFor(fx.store, group);
    // ic-1 keeps running once started (the default spec's `sh` exits at once).
    for (const n of names) await bucket.putSpec(n, { ...twinSpec(n, fx.imageId), ...(n === 'ic-1' ? { cmd: ['sleep', '3600'] } : {}) });
    const stateDir = join(fx.base, group);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    // A full check on every poll: the check itself is what is counted.
    const p = await fx.openPuller({ socketPath: counter.path, bucket, log, group, stateDir, twinCheckEvery: 1 });
    await p.pollOnce();
    await p.pollOnce();
    for (const n of names) assert.equal(await twinOf(p, n), 'stopped', `${n}: ${lines.slice(-5).join('\n')}`);

    counter.reset();
    const polls = 5;
    for (let i = 0; i < polls; i++) await p.pollOnce();
    const counts = Object.fromEntries(counter.counts());
    // Before: every check inspected each twin (and its image) again: 8 twins, 5 checks, 40 container inspects.
    assert.equal(counter.counts().get('GET /containers/*/json') ?? 0, 0, `container inspects in ${polls} idle checks: ${JSON.stringify(counts)}`);
    assert.equal(counter.counts().get('GET /containers/json') ?? 0, polls, `one listing per check: ${JSON.stringify(counts)}`);
    assert.ok(counter.total() <= 2 * polls, `Docker requests in ${polls} idle checks of ${names.length} twins: ${JSON.stringify(counts)}`);

    // Removed: created again at the next check.
    const idOf = async (name: string): Promise<string | null> => {
      const t = await fx.runtime.twinState(name);
      return t.state === 'absent' ? null : t.id;
    };
    const removedId = await idOf('ic-0');
    await dockerCli(fx.engine, ['rm', '-f', 'ic-0']);
    await p.pollOnce();
    const againId = await idOf('ic-0');
    assert.ok(removedId !== null && againId !== null && againId !== removedId, `the removed twin is back, a new container: ${removedId} -> ${againId}`);
    assert.equal(await twinOf(p, 'ic-0'), 'stopped');

    // Started by hand, then stopped: each seen at the next check.
    await dockerCli(fx.engine, ['start', 'ic-1']);
    await p.pollOnce();
    assert.equal(await twinOf(p, 'ic-1'), 'running');
    await dockerCli(fx.engine, ['stop', '-t', '0', 'ic-1']);
    await p.pollOnce();
    assert.equal(await twinOf(p, 'ic-1'), 'stopped');
  });
});
