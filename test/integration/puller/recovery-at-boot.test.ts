// A commit left half staged must not boot (review of issue 8, findings 2 and 6), with real dockerd twins and the
// embedded S3 server. A staging process killed with SIGKILL in the middle of commit 2 leaves its undo log; then:
// - the puller opens while its twins cannot be inspected (Docker answers, the twin's state cannot be read): the twin
//   is marked for recovery before anything can fail, and MASTER (before any poll) boots it with commit 1 whole;
// - the undo log appears behind an open puller's back: MASTER finds it (one lstat per twin) and undoes it first;
// - the machine restarted (the log names another boot): the upper dir is untrusted, the twin is held at MASTER and
//   reported while the bucket is out of reach, and restaged from the latest full checkpoint before it boots once
//   the bucket answers within the finalize deadline.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { lstat, mkdir, readFile, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { stageChangeset, type StageIntent } from '../../../src/changeset/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import type { Digest } from '../../../src/store/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { testS3Store } from '../../support/s3.js';
import { killTree } from '../../support/kill-tree.js';
import { freePort } from '../../support/twinlayer.js';
import { diffStates, upperState, type UpperState } from '../../support/upper-state.js';
import { commit1, commit2 } from './big-commits.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, openPuller, putBlob, readApplied, twinSpec, writeHead } from './helpers.js';

const run = promisify(execFile);
const stageChild = new URL('../changeset/stage-child.ts', import.meta.url).pathname;

describe('a commit left half staged never boots half', { timeout: 600_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-rboot-', engine: 'puller-rb' });
  });

  after(() => fx?.close());

  interface Scene {
    group: string;
    name: string;
    stateDir: string;
    upper: string;
    beforeC2: UpperState;
    afterC2: UpperState;
    c2: { digest: Digest; size: number };
    twinId: string;
  }

  /** Commit 1 staged by a puller (then stopped) and commit 2 published; the states before and after commit 2. */
  async function scene(group: string): Promise<Scene> {
    const name = `${group}-web`;
    const stateDir = join(fx.base, `state-${group}`);
    const bucket = bucketFor(fx.store, group);
    await bucket.putSpec(name, twinSpec(name, fx.imageId));
    const b1 = await putBlob(fx.store, bucket, gz(commit1()));
    await bucket.writeRecord(craftRecord({ seq: 1, parentSeq: 0, container: name, kind: 'full', ...b1 }));
    await writeHead(bucket, 1, { [name]: 1 });
    const p = await openPuller({ socketPath: fx.engine.socketPath, mountInfoPath: fx.engine.mountInfoPath, bucket, group, stateDir, log: collectingLogger().log });
    try {
      await p.pollOnce();
    } finally {
      await p.stop();
    }
    assert.equal(await appliedSeq(stateDir, group, name), 1);
    const twin = await fx.runtime.twinState(name);
    if (twin.state === 'absent') assert.fail(`twin ${name} absent`);
    const upper = twin.layers.upperDir;
    const beforeC2 = await upperState(upper);
    const ref = join(fx.base, `ref-${group}`);
    await mkdir(ref);
    await run('cp', ['-a', upper, join(ref, 'upper')]);
    await writeFile(join(ref, 'c2.tar.gz'), gz(commit2()));
    await stageChangeset(join(ref, 'c2.tar.gz'), 'delta', { upperDir: join(ref, 'upper'), tmpDir: join(ref, 'tmp') });
    const afterC2 = await upperState(join(ref, 'upper'));
    const b2 = await putBlob(fx.store, bucket, gz(commit2()));
    await bucket.writeRecord(craftRecord({ seq: 2, parentSeq: 1, container: name, ...b2 }));
    await writeHead(bucket, 2, { [name]: 2 });
    return { group, name, stateDir, upper, beforeC2, afterC2, c2: b2, twinId: twin.id };
  }

  const txnOf = (s: Scene): string => join(dirname(s.upper), 'twinlayer-tmp', 'txn');

  /** A staging process (the standby's, as the puller stages) killed with SIGKILL in the middle of commit 2. */
  async function killMidCommit2(s: Scene): Promise<void> {
    const blob = join(fx.base, `c2-${s.group}.tar.gz`);
    await writeFile(blob, gz(commit2()));
    const intent: StageIntent = { container: s.name, twinId: s.twinId, generation: 1, seq: 2, digest: s.c2.digest };
    const p = spawn(process.execPath, ['--import', 'tsx', stageChild, blob, 'delta', s.upper, join(dirname(s.upper), 'twinlayer-tmp'), join(fx.base, `rec-${s.group}`), JSON.stringify(intent)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    try {
      await waitFor('the undo log of commit 2 reaches 8 KiB', 120_000, async () => {
        if (p.exitCode !== null) throw new Error(`the staging process ended before it was killed: ${stderr}`);
        return ((await lstat(join(txnOf(s), 'undo.log')).catch(() => null))?.size ?? 0) >= 8 * 1024 ? true : undefined;
      }, 2);
    } finally {
      // With the tools it started, as systemd kills a unit: one left running could change the upper dir later.
      if (p.pid !== undefined) await killTree(p.pid);
      await exited;
    }
    assert.ok((await lstat(join(txnOf(s), 'undo.log')).catch(() => null)) !== null, 'killed with commit 2 half staged');
    assert.notDeepEqual(diffStates(s.beforeC2, await upperState(s.upper), 2000n), [], 'the upper dir holds part of commit 2');
  }

  async function startedAt(name: string): Promise<string> {
    return (await dockerCli(fx.engine, ['inspect', '--format', '{{.State.StartedAt}}', name])).trim();
  }

  it('a twin whose state cannot be read at open is marked for recovery first: MASTER before any poll boots it with commit 1 whole', async () => {
    const s = await scene('rb-open');
    await killMidCommit2(s);
    // Docker answers (info, listing), but no twin's state can be read: its mount table is not there yet.
    const mountInfo = join(fx.base, 'mountinfo-link');
    await symlink(join(fx.base, 'no-mountinfo-yet'), mountInfo);
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ mountInfoPath: mountInfo, bucket: bucketFor(fx.store, s.group), group: s.group, stateDir: s.stateDir, log });
    assert.ok(lines.some((l) => l.includes('a commit left half staged could not be undone')), 'recovery at open failed');
    assert.ok((await lstat(txnOf(s)).catch(() => null)) !== null, 'the undo log is still there');
    await unlink(mountInfo);
    await symlink(fx.engine.mountInfoPath, mountInfo);

    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[s.name, true]], JSON.stringify(start));
    assert.notEqual(await startedAt(s.name), '0001-01-01T00:00:00Z', 'the twin booted');
    assert.deepEqual(diffStates(s.beforeC2, await upperState(s.upper), 2000n), [], 'booted with commit 1 whole');
    assert.equal(await lstat(txnOf(s)).catch(() => null), null, 'no undo log left');
    assert.ok(!lines.some((l) => l.includes('a twin about to boot holds a commit left half staged')), 'marked at open, not found by the check before boot');
  });

  it('an undo log that appears behind an open puller is found right before the boot and undone first', async () => {
    const s = await scene('rb-late');
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.store, s.group), group: s.group, stateDir: s.stateDir, log });
    await killMidCommit2(s);
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[s.name, true]], JSON.stringify(start));
    assert.ok(lines.some((l) => l.includes('a twin about to boot holds a commit left half staged')), 'found right before the boot');
    assert.deepEqual(diffStates(s.beforeC2, await upperState(s.upper), 2000n), [], 'booted with commit 1 whole');
    assert.equal(await lstat(txnOf(s)).catch(() => null), null, 'no undo log left');
  });

  it('after a restart of the machine the twin is held at MASTER while the bucket is out of reach, and restaged before it boots once it answers', async () => {
    const s = await scene('rb-power');
    await killMidCommit2(s);
    // The log was written before the machine restarted: its boot id is not this boot's.
    const logFile = join(txnOf(s), 'undo.log');
    const text = await readFile(logFile, 'utf8');
    const nl = text.indexOf('\n');
    const header = JSON.parse(text.slice(0, nl)) as { bootId: string };
    header.bootId = 'a-boot-before-the-power-loss';
    await writeFile(logFile, JSON.stringify(header) + text.slice(nl));

    // The bucket is out of reach: nothing answers on its port.
    const deadStore = testS3Store({ endpoint: `http://127.0.0.1:${await freePort()}`, bucket: fx.s3.bucket });
    try {
      const { log, lines } = collectingLogger();
      const cut = await fx.openPuller({ bucket: bucketFor(deadStore, s.group), group: s.group, stateDir: s.stateDir, log });
      assert.ok(lines.some((l) => l.includes('interrupted by a restart of the machine')), 'the restart is noticed');
      assert.match((await readApplied(s.stateDir, s.group) as { held?: Record<string, string> } | null)?.held?.[s.name] ?? '', /restart of the machine/, 'held durably');
      const fin = await cut.finalize(1_500);
      assert.equal(fin.bucketReachable, false);
      assert.match(fin.containers.find((c) => c.name === s.name)?.error ?? '', /restart of the machine/);
      const start = await cut.startTwins();
      const r = start.containers.find((c) => c.name === s.name);
      assert.equal(r?.ok, false, JSON.stringify(start));
      assert.match(r?.error ?? '', /not started: .*restart of the machine.*full checkpoint/);
      assert.equal(await startedAt(s.name), '0001-01-01T00:00:00Z', 'the twin did not boot');
      assert.match((await cut.status()).containers.find((c) => c.name === s.name)?.reason ?? '', /restart of the machine/);
      await cut.stop();
    } finally {
      deadStore.destroy();
    }

    // The agent starts again and the bucket answers: restaged from the full checkpoint (commit 1), then commit 2.
    const { log } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.store, s.group), group: s.group, stateDir: s.stateDir, log });
    const fin = await puller.finalize(60_000);
    assert.equal(fin.containers.find((c) => c.name === s.name)?.stagedSeq, 2, JSON.stringify(fin));
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[s.name, true]], JSON.stringify(start));
    assert.deepEqual(diffStates(s.afterC2, await upperState(s.upper), null), [], 'booted with commits 1 and 2 whole');
    assert.equal((await readApplied(s.stateDir, s.group) as { held?: Record<string, string> } | null)?.held?.[s.name], undefined, 'trusted again');
  });
});
