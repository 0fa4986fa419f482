// The finalize deadline against a standby behind on many commits (issue 8 item 2; the quick chaos soak, seed
// 701728250, booted twins holding a commit past the seq its claim was made from). The invariant, with real dockerd
// twins: once the twins boot, each upper dir equals exactly the state at the seq the finalize report says, which is
// also what position() (the claim's basis) and the applied-state file say. Checked file by file against a reference:
// the same blobs staged one by one into a copy of the twin's upper dir.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { stageChangeset } from '../../../src/changeset/index.js';
import type { Puller } from '../../../src/puller/index.js';
import { waitFor } from '../../../src/lab/wait.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { diffStates, upperState, type UpperState } from '../../support/upper-state.js';
import { dir as tarDir, file as tarFile, tarOf, type Piece } from '../changeset/craft-tar.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, putBlob, twinSpec, writeHead } from './helpers.js';

const run = promisify(execFile);
const fname = (i: number): string => `f${String(i).padStart(4, '0')}`;

/** Commit `seq` of a container: the first is full; each rewrites every file of data/ and adds marker m/<seq>, as a
 *  write of the chaos soak does. The dirs are carried, so their mtimes are the commit's, not "now". */
function commitTar(seq: number, files: number): Buffer {
  const pieces: Piece[] = [tarDir('data', { mode: 0o755 })];
  for (let i = 0; i < files; i++) pieces.push(tarFile(`data/${fname(i)}`, `${seq} ${i} `.repeat(20 + (seq % 5)), { mode: seq % 2 === 0 ? 0o600 : 0o644, uid: seq }));
  pieces.push(tarDir('m', { mode: 0o755 }));
  for (let k = 1; k <= seq; k++) pieces.push(tarFile(`m/${String(k).padStart(4, '0')}`, `marker ${k}`));
  return tarOf(pieces);
}

describe('the finalize deadline with a standby behind on many commits', { timeout: 900_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    // A hung request is given up after 2 s and tried again: the poll that sent it stays in flight that long.
    fx = await startPullerFixture({ tmpPrefix: 'tl-fdeadline-', engine: 'puller-fd', proxy: { requestTimeoutMs: 2_000, smallRequestTimeoutMs: 2_000 } });
  });

  after(() => fx?.close());

  /** The journal's seq of commit `k` (1-based) of the `i`th of `n` containers: their commits interleave. */
  const seqOf = (k: number, i: number, n: number): number => (k - 1) * n + i + 1;

  /** Publishes commits from..to of every container (the first with its spec) and moves the head past them. */
  async function publish(group: string, names: string[], from: number, to: number, files: number): Promise<void> {
    const bucket = bucketFor(fx.store, group);
    const n = names.length;
    if (from === 1) for (const name of names) await bucket.putSpec(name, twinSpec(name, fx.imageId));
    for (let k = from; k <= to; k++) {
      for (const [i, name] of names.entries()) {
        const b = await putBlob(fx.store, bucket, gz(commitTar(k, files)));
        await bucket.writeRecord(craftRecord({ seq: seqOf(k, i, n), parentSeq: k === 1 ? 0 : seqOf(k - 1, i, n), container: name, kind: k === 1 ? 'full' : 'delta', ...b }));
      }
    }
    await writeHead(bucket, seqOf(to, n - 1, n), Object.fromEntries(names.map((name, i) => [name, seqOf(to, i, n)])));
  }

  /** The state after every commit 1..last (by commit, not seq): commit 1 as the twin holds it, then each later blob staged into a copy. */
  async function references(name: string, last: number, files: number): Promise<UpperState[]> {
    const upper = await fx.upperOf(name);
    const ref = join(fx.base, `ref-${name}`);
    await mkdir(ref);
    await run('cp', ['-a', upper, join(ref, 'upper')]);
    const out: UpperState[] = [];
    out[1] = await upperState(upper);
    for (let k = 2; k <= last; k++) {
      const blob = join(ref, `c${k}.tar.gz`);
      await writeFile(blob, gz(commitTar(k, files)));
      await stageChangeset(blob, 'delta', { upperDir: join(ref, 'upper'), tmpDir: join(ref, 'tmp') });
      out[k] = await upperState(join(ref, 'upper'));
    }
    await rm(ref, { recursive: true, force: true });
    return out;
  }

  /** The invariant: every twin booted, at exactly the seq the report says, as position() and the file say too. */
  async function checkBooted(
    puller: Puller, group: string, stateDir: string, names: string[], refs: Map<string, UpperState[]>,
    fin: Awaited<ReturnType<Puller['finalize']>>, what: string,
  ): Promise<Map<string, number>> {
    const position = puller.position();
    const start = await puller.startTwins();
    assert.deepEqual(start.containers.map((c) => [c.name, c.ok]).sort(), names.map((n) => [n, true]), `${what}: ${JSON.stringify(start)}`);
    const seqs = new Map<string, number>();
    for (const [i, name] of names.entries()) {
      const reported = fin.containers.find((c) => c.name === name)?.stagedSeq ?? -1;
      const k = Math.floor((reported - i - 1) / names.length) + 1;
      assert.equal(seqOf(k, i, names.length), reported, `${what}: ${name}: the reported seq ${reported} is one of its commits`);
      seqs.set(name, k);
      assert.equal(position.containers[name], reported, `${what}: ${name}: the claim's basis is the reported seq`);
      assert.equal(puller.position().containers[name], reported, `${what}: ${name}: nothing recorded after the report`);
      assert.equal(await appliedSeq(stateDir, group, name), reported, `${what}: ${name}: the applied-state file says the reported seq`);
      const upper = await fx.upperOf(name);
      const expected = refs.get(name)?.[k];
      if (expected === undefined) assert.fail(`${what}: ${name}: no reference for commit ${k} (seq ${reported})`);
      const diff = diffStates(expected, await upperState(upper), 2000n);
      assert.deepEqual(diff, [], `${what}: ${name}: the booted twin is exactly at the reported seq ${reported} (its commit ${k})`);
      assert.deepEqual(await readdir(join(upper, '..', 'twinlayer-tmp')), [], `${what}: ${name}: no undo log left`);
    }
    return seqs;
  }

  it('a daemon poll stuck on the bucket when the finalize began stages nothing after the report', async () => {
    const group = 'fdl-daemon';
    const names = ['fd-a', 'fd-b'];
    const files = 60;
    const last = 8;
    const stateDir = join(fx.base, 'state-daemon');
    await publish(group, names, 1, 1, files);
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket: bucketFor(fx.viaProxy, group), group, stateDir, log });
    await puller.pollOnce();
    const refs = new Map<string, UpperState[]>();
    for (const [i, name] of names.entries()) {
      assert.equal(await appliedSeq(stateDir, group, name), seqOf(1, i, names.length));
      refs.set(name, await references(name, last, files));
    }
    await publish(group, names, 2, last, files);
    const polledAt = (await puller.status()).lastPollAt;

    // The daemon's next poll hangs on its first request; MASTER comes while it does.
    fx.proxy.fail('hang', 1);
    puller.start();
    await waitFor('the daemon poll hangs on the bucket', 30_000, () => Promise.resolve(fx.proxy.stats.faults.hang === 1 ? true : undefined), 5);
    const fin = await puller.finalize(200);
    assert.equal(fin.timedOut, true, 'the deadline passed while the daemon poll hung');
    // The daemon poll comes back after the deadline (its request given up and tried again) with every record, and
    // stops there (a poll a finalize overtook touches nothing; one that went on would set lastPollAt)...
    await waitFor('the daemon poll in flight at the finalize ends', 60_000, async () =>
      lines.some((l) => l.includes('poll overtaken by a finalize')) || (await puller.status()).lastPollAt !== polledAt ? true : undefined, 20);
    // ...and whatever it started ends before the twins boot (a poll joins polls in flight and waits for all staging).
    await puller.pollOnce();
    const seqs = await checkBooted(puller, group, stateDir, names, refs, fin, 'daemon poll after the deadline');
    console.log(`# daemon poll in flight at a ${fin.ms} ms finalize: booted at commit ${JSON.stringify(Object.fromEntries(seqs))} of ${last}; log lines ${lines.length}`);
  });

  it('a deadline at many points of the applies: every booted twin is exactly at the reported seq', async () => {
    const files = 400;
    const last = 6;
    const rounds = 8;
    let undone = 0;
    const landed: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const group = `fdl-r${r}`;
      const names = [0, 1, 2].map((i) => `r${r}-c${i}`);
      const stateDir = join(fx.base, `state-r${r}`);
      await publish(group, names, 1, 1, files);
      const { log, lines } = collectingLogger();
      const puller = await fx.openPuller({ bucket: bucketFor(fx.store, group), group, stateDir, log });
      await puller.pollOnce();
      const refs = new Map<string, UpperState[]>();
      for (const name of names) refs.set(name, await references(name, last, files));
      await publish(group, names, 2, last, files);

      // The point: container r%3 has staged at least its commit `seq` and its next commit's undo log holds `bytes`; the
      // deadline then fires `deadlineMs` later (while the finalize reads the bucket or waits for the applies).
      const watched = names[r % 3] ?? assert.fail('no name');
      const seq = 1 + (r % (last - 2));
      const bytes = [200, 4_000, 9_000, 14_000][r % 4] ?? 200;
      const deadlineMs = [1, 40, 120, 5][r % 4] ?? 1;
      const log0 = join(await fx.upperOf(watched), '..', 'twinlayer-tmp', 'txn', 'undo.log');
      puller.start();
      await waitFor(`${watched} staged ${seq} and applies the next (undo log ${bytes} bytes)`, 120_000, async () => {
        if ((await appliedSeq(stateDir, group, watched)) < seqOf(seq, r % 3, names.length)) return undefined;
        return ((await lstat(log0).catch(() => null))?.size ?? 0) >= bytes ? true : undefined;
      }, 2);
      const fin = await puller.finalize(deadlineMs);
      const seqs = await checkBooted(puller, group, stateDir, names, refs, fin, `round ${r}`);
      const undos = lines.filter((l) => l.includes('commit undone after a failure midway')).length;
      undone += undos;
      landed.push(`${[...seqs.values()].join('/')}${fin.timedOut ? '' : ' (in time)'}, ${undos} undone`);
      await puller.stop();
    }
    console.log(`# deadline at ${rounds} points, ${last} commits of ${files} files per container: booted at commit ${landed.join('; ')}`);
    assert.ok(undone > 0, 'some deadline landed in the middle of an apply (otherwise the invariant was not tested there)');
  });
});
