// The puller with many containers and a dockerd that dies (review of issue 8): twelve containers staging in one
// poll put one abort listener on its signal, not one each (past ten, Node 20 and 22 warned MaxListenersExceeded); while dockerd is
// down (SIGKILLed) nothing is refused — it is logged once as the engine being unavailable, every twin is kept — and
// once dockerd is back on the same data root the same twins are used and staging goes on.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { DockerRuntime } from '../../../src/docker/index.js';
import { killHard, withDescendants } from '../../../src/lab/processes.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, putBlob, twinSpec, writeHead } from './helpers.js';

const GROUP = 'engine-down';
const N = 12;
const names = Array.from({ length: N }, (_, i) => `ed-${String(i).padStart(2, '0')}`);

describe('puller: many containers, and a dockerd that dies and comes back', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(`${w.name}: ${w.message}`);
  };

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-edown-', engine: 'puller-ed' });
    process.on('warning', onWarning);
  });

  after(async () => {
    process.off('warning', onWarning);
    await fx?.close();
  });

  it('stages twelve containers in one poll without a listener warning; a dead dockerd refuses nothing and is logged once', async () => {
    const bucket = bucketFor(fx.store, GROUP);
    const stateDir = join(fx.base, 'state');
    for (const [i, n] of names.entries()) {
      await bucket.putSpec(n, twinSpec(n, fx.imageId));
      const blob = await putBlob(fx.store, bucket, gz(tarOf([tarFile('f', `${n} 1`)])));
      await bucket.writeRecord(craftRecord({ seq: i + 1, parentSeq: 0, container: n, kind: 'full', ...blob }));
    }
    await writeHead(bucket, N, Object.fromEntries(names.map((n, i) => [n, i + 1])));

    const { log, lines } = collectingLogger();
    // The mount table of our own mount namespace, which the engine shares: it outlives a dockerd pid.
    const puller = await fx.openPuller({ mountInfoPath: '/proc/self/mountinfo', bucket: bucketFor(fx.store, GROUP, log), group: GROUP, stateDir, log });
    // The listeners on the poll's signal, sampled at every turn of the event loop while the poll stages (Node 24 no
    // longer warns about an AbortSignal's listeners; Node 20 and 22 did, past ten).
    const controller = new AbortController();
    let most = 0;
    let done = false;
    const polling = puller.pollOnce(controller.signal).finally(() => {
      done = true;
    });
    for (const deadline = Date.now() + 120_000; !done && Date.now() < deadline;) {
      most = Math.max(most, getEventListeners(controller.signal, 'abort').length);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await polling;
    await new Promise((resolve) => setImmediate(resolve));
    for (const [i, n] of names.entries()) assert.equal(await appliedSeq(stateDir, GROUP, n), i + 1, `${n} staged`);
    assert.equal(most, 1, 'one abort listener on the poll\'s signal for all the containers staging');
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0, 'removed once they are done');
    assert.deepEqual(warnings.filter((w) => w.includes('MaxListenersExceeded')), [], 'no listener warning');

    const runtime = new DockerRuntime({ socketPath: fx.engine.socketPath, mountInfoPath: '/proc/self/mountinfo' });
    const ids = new Map<string, string>();
    for (const n of names) {
      const t = await runtime.twinState(n);
      if (t.state === 'absent') assert.fail(`no twin of ${n}`);
      ids.set(n, t.id);
    }

    // Dockerd dies; the primary goes on (the head moves, so every twin is checked at the next poll).
    const survivors = await killHard(await withDescendants([fx.engine.pid, ...(await fx.engine.containerPids())]));
    assert.deepEqual(survivors, [], 'dockerd is gone');
    const first = names[0] ?? 'ed-00';
    const blob = await putBlob(fx.store, bucket, gz(tarOf([tarFile('f', `${first} 2`)])));
    await bucket.writeRecord(craftRecord({ seq: N + 1, parentSeq: 1, container: first, ...blob }));
    await writeHead(bucket, N + 1, Object.fromEntries(names.map((n, i) => [n, i === 0 ? N + 1 : i + 1])));
    for (let i = 0; i < 3; i++) await puller.pollOnce();
    const down = lines.filter((l) => l.includes('docker engine unavailable'));
    assert.equal(down.length, 1, `logged once: ${down.join('\n')}`);
    assert.deepEqual(lines.filter((l) => l.includes('twin refused')), [], 'nothing refused');
    const status = await puller.status();
    for (const n of names) {
      const c = status.containers.find((x) => x.name === n);
      assert.equal(c?.twin, 'stopped', `${n} keeps its twin: ${JSON.stringify(c)}`);
    }
    assert.equal(await appliedSeq(stateDir, GROUP, first), 1);

    // Dockerd back on the same data root: the same twins, and the commit is staged.
    await fx.engine.restart();
    await puller.pollOnce();
    await puller.pollOnce();
    assert.ok(lines.some((l) => l.includes('docker engine answers again')), 'recovery logged');
    assert.equal(await appliedSeq(stateDir, GROUP, first), N + 1);
    for (const n of names) {
      const t = await runtime.twinState(n);
      assert.equal(t.state !== 'absent' ? t.id : null, ids.get(n), `${n}: the same twin`);
    }
    const t = await runtime.twinState(first);
    if (t.state === 'absent') assert.fail('twin gone');
    assert.equal(await readFile(join(t.layers.upperDir, 'f'), 'utf8'), `${first} 2`);
    assert.deepEqual(lines.filter((l) => l.includes('twin refused')), []);
  });
});
