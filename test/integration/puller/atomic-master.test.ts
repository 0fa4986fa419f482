// Atomic staging at MASTER (issue 8 item 2) with real dockerd twins: a promotion that comes while a large commit is
// being applied into a twin, and a standby process killed with SIGKILL in the middle of one and then promoted. Each
// time the twin boots with the whole commit or with none of it, checked file by file (type, content, mode, owner,
// mtime, xattrs, hard links, presence) against the state before the commit and the state after it (the same blob
// staged into a copy).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { stageChangeset } from '../../../src/changeset/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { s3Env } from '../../support/s3.js';
import { testKeyEnv } from '../../support/signing.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { diffStates, upperState, type UpperState } from '../../support/upper-state.js';
import { commit1, commit2 } from './big-commits.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, putBlob, twinSpec, writeHead } from './helpers.js';

const run = promisify(execFile);
describe('MASTER while a commit is being staged', { timeout: 600_000 }, () => {
  let fx: PullerFixture;
  const procs: TwinlayerProcess[] = [];

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-amaster-', engine: 'puller-am' });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    await fx?.close();
  });

  /** Publishes commit 1 (a full one, with the spec) of `name` in `group`, or commit 2 when `second`. */
  async function publish(group: string, name: string, second: boolean): Promise<void> {
    const bucket = bucketFor(fx.store, group);
    if (!second) {
      await bucket.putSpec(name, twinSpec(name, fx.imageId));
      const b1 = await putBlob(fx.store, bucket, gz(commit1()));
      await bucket.writeRecord(craftRecord({ seq: 1, parentSeq: 0, container: name, kind: 'full', ...b1 }));
      await writeHead(bucket, 1, { [name]: 1 });
      return;
    }
    const b2 = await putBlob(fx.store, bucket, gz(commit2()));
    await bucket.writeRecord(craftRecord({ seq: 2, parentSeq: 1, container: name, ...b2 }));
    await writeHead(bucket, 2, { [name]: 2 });
  }

  /** The state after commit 2: its blob staged into a copy of the twin's upper dir as it is before it. */
  async function stateAfterCommit2(upper: string, name: string): Promise<UpperState> {
    const ref = join(fx.base, `ref-${name}`);
    await mkdir(ref);
    await run('cp', ['-a', upper, join(ref, 'upper')]);
    const blob = join(ref, 'c2.tar.gz');
    await writeFile(blob, gz(commit2()));
    await stageChangeset(blob, 'delta', { upperDir: join(ref, 'upper'), tmpDir: join(ref, 'tmp') });
    return upperState(join(ref, 'upper'));
  }

  /** Resolves once the undo log of the commit being staged into `upper`'s twin holds at least `bytes`. */
  async function midApply(upper: string, bytes: number): Promise<void> {
    const log = join(upper, '..', 'twinlayer-tmp', 'txn', 'undo.log');
    await waitFor(`the undo log under ${upper} reaches ${bytes} bytes`, 120_000, async () => ((await lstat(log).catch(() => null))?.size ?? 0) >= bytes ? true : undefined, 2);
  }

  /** Whole or none: the upper dir equals the state before or after the commit, as the staged seq says. */
  function wholeOrNone(now: UpperState, beforeC2: UpperState, afterC2: UpperState, stagedSeq: number, what: string): 'before' | 'after' {
    const asBefore = diffStates(beforeC2, now, 2000n);
    const asAfter = diffStates(afterC2, now, null);
    if (asBefore.length > 0 && asAfter.length > 0) assert.fail(`${what}: a mix of before and after.\nvs before: ${asBefore.join('\n')}\nvs after: ${asAfter.join('\n')}`);
    const is = asBefore.length === 0 ? 'before' : 'after';
    assert.equal(stagedSeq, is === 'before' ? 1 : 2, `${what}: the staged seq says what the twin holds`);
    return is;
  }

  async function startedAt(name: string): Promise<string> {
    return (await dockerCli(fx.engine, ['inspect', '--format', '{{.State.StartedAt}}', name])).trim();
  }

  it('a promotion in the middle of an apply undoes it: the twin boots with commit 1 whole', async () => {
    const group = 'amaster';
    const name = 'am-web';
    const stateDir = join(fx.base, 'state-a');
    await publish(group, name, false);
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.store, group), group, stateDir, log });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1);
    const upper = await fx.upperOf(name);
    const beforeC2 = await upperState(upper);
    const afterC2 = await stateAfterCommit2(upper, name);

    await publish(group, name, true);
    puller.start();
    await midApply(upper, 8 * 1024);
    const fin = await puller.finalize(100);
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[name, true]], JSON.stringify(start));
    assert.notEqual(await startedAt(name), '0001-01-01T00:00:00Z', 'the twin booted');
    const stagedSeq = fin.containers.find((c) => c.name === name)?.stagedSeq ?? -1;
    const is = wholeOrNone(await upperState(upper), beforeC2, afterC2, stagedSeq, 'after MASTER');
    console.log(`# MASTER mid-apply: the twin booted with the state ${is} commit 2 (staged seq ${stagedSeq}, finalize ${fin.ms} ms)`);
    assert.equal(is, 'before', 'the deadline undid the apply under way');
    assert.ok(lines.some((l) => l.includes('commit undone after a failure midway')), 'the undo is logged');
    assert.deepEqual(await readdir(join(upper, '..', 'twinlayer-tmp')), [], 'no undo log left');
  });

  it('a standby killed with SIGKILL mid-commit and then promoted boots its twin with the whole commit or none of it', async () => {
    const group = 'akill';
    const name = 'ak-web';
    const stateDir = join(fx.base, 'state-k');
    await publish(group, name, false);
    const env = {
      ...s3Env(fx.s3),
      TWINLAYER_GROUP: group,
      TWINLAYER_HOST_ID: 'standby',
      TWINLAYER_DOCKER_SOCKET: fx.engine.socketPath,
      TWINLAYER_STATE_DIR: stateDir,
      TWINLAYER_POLL_INTERVAL_MS: '50',
      TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}`,
      TWINLAYER_HOOK_TOKEN: 'atomic-master-token-0123456789',
      TWINLAYER_LOG_LEVEL: 'debug',
      ...(await testKeyEnv(fx.base)),
    };
    const first = spawnTwinlayer(['pull'], env);
    procs.push(first);
    await waitFor('commit 1 staged', 120_000, async () => ((await appliedSeq(stateDir, group, name)) === 1 ? true : undefined), 50);
    const upper = await fx.upperOf(name);
    const beforeC2 = await upperState(upper);
    const afterC2 = await stateAfterCommit2(upper, name);

    await publish(group, name, true);
    await midApply(upper, 8 * 1024);
    assert.equal(await first.kill('SIGKILL'), 'SIGKILL');
    assert.ok((await lstat(join(upper, '..', 'twinlayer-tmp', 'txn', 'undo.log')).catch(() => null)) !== null, 'killed with a commit half staged');

    // The agent (or `twinlayer pull`) starts again and MASTER comes at once: recovery at open, then finalize.
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.store, group), group, stateDir, log });
    assert.ok(lines.some((l) => l.includes('a commit left half staged was undone')), 'recovered at start');
    assert.deepEqual(diffStates(beforeC2, await upperState(upper), 2000n), [], 'undone: exactly commit 1');
    const fin = await puller.finalize(100);
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]), [[name, true]], JSON.stringify(start));
    const stagedSeq = fin.containers.find((c) => c.name === name)?.stagedSeq ?? -1;
    const is = wholeOrNone(await upperState(upper), beforeC2, afterC2, stagedSeq, 'after the kill and MASTER');
    console.log(`# SIGKILL mid-commit, then MASTER: the twin booted with the state ${is} commit 2 (staged seq ${stagedSeq})`);
  });
});
