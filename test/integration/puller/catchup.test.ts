// A standby catching up (issue 8's rejoin criterion, issue 13): a container's run of queued commits asks the engine
// once a commit (the read that ends a commit is the next one's check); a twin started after that read, while the next
// commit is fetched, gets nothing written (the look at the mount table right before the first write); a full
// checkpoint queued behind deltas supersedes them (they are not fetched). A real engine, the real Puller, the embedded
// S3 server behind the fault proxy (which counts blob GETs and starts the twin mid-download), and a relay in front of
// the engine's socket that counts the puller's Docker requests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Puller } from '../../../src/puller/index.js';
import type { Digest } from '../../../src/store/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { startDockerCallCounter, type DockerCallCounter } from '../../support/docker-calls.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, bucketFor, collectingLogger, craftedJournal, twinSpec } from './helpers.js';

describe('a standby catching up', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  let counter: DockerCallCounter;
  const gets = new Map<string, number>();
  /** Called (synchronously, before the answer is relayed) with the path of every blob GET the server answered. */
  let onBlobGet: ((path: string) => void) | null = null;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-catchup-', engine: 'puller-cu', proxy: true });
    fx.proxy.onAnswer((a) => {
      if (a.method !== 'GET') return;
      gets.set(a.path, (gets.get(a.path) ?? 0) + 1);
      if (a.path.includes('/blobs/')) onBlobGet?.(a.path);
    });
    counter = await startDockerCallCounter(join(fx.base, 'docker.sock'), fx.engine.socketPath);
    fx.defer(() => counter.close());
  });

  after(() => fx?.close());

  const blobGets = (group: string, digest: Digest): number =>
    [...gets.entries()].filter(([path]) => path.includes(`/${group}/`) && path.includes(digest)).reduce((n, [, c]) => n + c, 0);

  /** A puller whose Docker requests go through the counting relay; `cmd` is the twin's (a long one can be started). */
  async function open(group: string, name: string, cmd: string[] = ['sh']): Promise<{ p: Puller; stateDir: string; lines: string[] }> {
    const reader = bucketFor(fx.viaProxy, group);
    await reader.putSpec(name, { ...twinSpec(name, fx.imageId), cmd });
    const stateDir = join(fx.base, group);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    const p = await fx.openPuller({ socketPath: counter.path, bucket: reader, log, group, stateDir });
    return { p, stateDir, lines };
  }

  async function assertHolds(name: string, files: Map<string, string>): Promise<void> {
    const upper = await fx.upperOf(name);
    for (const [path, body] of files) assert.equal(await readFile(join(upper, path), 'utf8'), body, path);
  }

  it('a run of queued commits asks the engine once a commit and ends equal to the primary', async () => {
    const group = 'cu-run';
    const name = 'cu-web';
    const j = craftedJournal(fx.store, group, name);
    const { p, stateDir, lines } = await open(group, name);
    await j.publish({ a: 'one' }, 'full');
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1, lines.join('\n'));
    const deltas = 12;
    let last = 0;
    for (let i = 0; i < deltas; i++) last = await j.publish({ [`f${i % 3}`]: `v${i}`, a: `one.${i}` });
    counter.reset();
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), last, lines.join('\n'));
    const inspects = counter.counts().get('GET /containers/*/json') ?? 0;
    // One read before the run's first commit, one that ends each commit (the next one's check); a poll's twin check
    // (ensureTwins, when the head moved) may add one. Two a commit before.
    assert.ok(inspects <= deltas + 2, `container inspects for ${deltas} commits: ${inspects} (${JSON.stringify(Object.fromEntries(counter.counts()))})`);
    await assertHolds(name, j.files);
  });

  it('a twin started after the last commit was recorded, while the next is fetched, gets nothing written; staged once stopped', async () => {
    const group = 'cu-start';
    const name = 'cu-started';
    const j = craftedJournal(fx.store, group, name);
    const { p, stateDir, lines } = await open(group, name, ['sleep', '3600']);
    await j.publish({ a: 'one' }, 'full');
    await j.publish({ b: 'two' });
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 2, lines.join('\n'));
    const third = await j.publish({ c: 'three' });
    const fourth = await j.publish({ d: 'four' });
    const fifth = await j.publish({ e: 'five' });
    // Commit 4's download begins after commit 3 was recorded and the read that ended it (commit 4's check) found the
    // twin stopped: the twin is started before the blob's bytes reach the puller (the event loop waits for `docker
    // start`).
    const digest = j.blobs.get(fourth)!;
    let started = 0;
    onBlobGet = (path) => {
      if (!path.includes(digest) || started++ > 0) return;
      execFileSync('docker', ['-H', `unix://${fx.engine.socketPath}`, 'start', name], { timeout: 60_000, stdio: 'ignore' });
    };
    try {
      await p.pollOnce();
    } finally {
      onBlobGet = null;
    }
    assert.equal(started, 1, 'the twin was started during the download');
    assert.equal(await appliedSeq(stateDir, group, name), third, 'commit 3 staged, nothing after it');
    const upper = await fx.upperOf(name);
    assert.equal(await readFile(join(upper, 'c'), 'utf8'), 'three');
    await assert.rejects(access(join(upper, 'd')), { code: 'ENOENT' }, 'commit 4 was not written into the running twin');
    const status = (await p.status()).containers.find((c) => c.name === name);
    assert.match(status?.reason ?? '', /twin is running or mounted; staging paused/, JSON.stringify(status));
    assert.ok(lines.some((l) => l.includes('the twin was started before the commit was written')), 'logged');

    await dockerCli(fx.engine, ['stop', '-t', '0', name]);
    for (let i = 0; i < 20 && (await appliedSeq(stateDir, group, name)) < fifth; i++) await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), fifth, lines.slice(-20).join('\n'));
    await assertHolds(name, j.files);
  });

  it('a full checkpoint queued behind deltas supersedes them: they are not fetched', async () => {
    const group = 'cu-full';
    const name = 'cu-behind';
    const j = craftedJournal(fx.store, group, name);
    const { p, stateDir, lines } = await open(group, name);
    await j.publish({ a: 'one', b: 'two' }, 'full');
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1, lines.join('\n'));
    const superseded = [await j.publish({ c: 'three' }), await j.publish({ b: 'two.2' }), await j.publish({ d: 'four' })];
    const full = await j.publish({ a: 'one.2', e: 'five' }, 'full');
    const last = await j.publish({ f: 'six' });
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), last, lines.join('\n'));
    for (const s of superseded) assert.equal(blobGets(group, j.blobs.get(s)!), 0, `delta ${s} was not fetched`);
    assert.equal(blobGets(group, j.blobs.get(full)!), 1, 'the full checkpoint was fetched once');
    await assertHolds(name, j.files);
    // The full checkpoint made the upper dir exactly itself: what only the superseded deltas wrote is gone.
    await assert.rejects(access(join(await fx.upperOf(name), 'c')), { code: 'ENOENT' });
  });
});
