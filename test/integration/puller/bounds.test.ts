// Hostile blobs against the puller on a real engine and the embedded S3 server (issue 8, "Nothing half-applied, no
// stall from one bad blob"): a gzip bomb is refused at once (before its download when its record declares it, at
// its first header when the record lies), never fetched again, and holds back no other container; a slow blob
// within its declared bounds stages nothing of another container late, and a finalize deadline abandons its
// validation. GETs are counted by wrapping the real store (WrappedStore).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import type { Puller } from '../../../src/puller/index.js';
import type { Bucket, Digest } from '../../../src/store/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { WrappedStore } from '../store/helpers.js';
import { file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { zeroBomb } from '../changeset/bomb-blobs.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, putBlob, twinSpec, writeHead } from './helpers.js';

const GiB = 1024 ** 3;

describe('puller against gzip bombs and slow blobs', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  let caseNo = 0;

  /** A group whose bucket reads go through a WrappedStore, with a little journal writer for crafted commits. */
  async function newCase(tag: string, names: string[]): Promise<{
    group: string; bucket: Bucket; wrapped: WrappedStore; stateDir: string; lines: string[]; puller: Puller;
    publish: (name: string, gzBytes: Buffer, opts?: { kind?: 'full' | 'delta'; counts?: { files: number; deletions: number; bytes: number } }) => Promise<{ seq: number; digest: Digest }>;
    getsOf: (digest: Digest) => number;
  }> {
    caseNo++;
    const group = `b${caseNo}-${tag}`;
    const wrapped = new WrappedStore(fx.store);
    const bucket = bucketFor(wrapped, group);
    const stateDir = join(fx.base, group, 'state');
    await mkdir(stateDir, { recursive: true });
    for (const n of names) await bucket.putSpec(n, twinSpec(n, fx.imageId));
    let seq = 0;
    const head: Record<string, number> = {};
    const publish = async (name: string, gzBytes: Buffer, opts: { kind?: 'full' | 'delta'; counts?: { files: number; deletions: number; bytes: number } } = {}): Promise<{ seq: number; digest: Digest }> => {
      const blob = await putBlob(fx.store, bucket, gzBytes);
      seq++;
      await bucket.writeRecord(craftRecord({ seq, parentSeq: head[name] ?? 0, container: name, kind: opts.kind ?? 'delta', ...blob, ...(opts.counts ? { counts: opts.counts } : {}) }));
      head[name] = seq;
      await writeHead(bucket, seq, head);
      return { seq, digest: blob.digest };
    };
    for (const n of names) await publish(n, gz(tarOf([tarFile('base', n)])), { kind: 'full' });
    const { log, lines } = collectingLogger();
    const puller = await fx.openPuller({ bucket, group, stateDir, log });
    await puller.pollOnce();
    for (const n of names) assert.equal(await appliedSeq(stateDir, group, n), names.indexOf(n) + 1, `${n}: base staged`);
    const getsOf = (digest: Digest): number => wrapped.keysRead.filter((k) => k === bucket.blobKey(digest)).length;
    return { group, bucket, wrapped, stateDir, lines, puller, publish, getsOf };
  }

  async function statusOf(p: Puller, name: string): Promise<{ stagedSeq: number; reason?: string; refusedCommit?: { seq: number; digest: string; reason: string } }> {
    const c = (await p.status()).containers.find((x) => x.name === name);
    assert.ok(c, `status lists ${name}`);
    return c;
  }

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-bounds-', engine: 'puller-b' });
  });

  after(() => fx?.close());

  it('refuses a 64 MiB bomb declaring a 70 GiB file at once, never fetches it again, and stages another container in the same poll', async () => {
    const c = await newCase('bomb', ['calm', 'bomb-lie', 'bomb-told']);
    // 64 MiB of gzip expanding to 64 GiB of zeros after a header that declares a 70 GiB file.
    const bomb = zeroBomb('bomb', 70 * GiB, 64 * 1024);
    assert.ok(bomb.length > 60 * 1024 * 1024 && bomb.length < 70 * 1024 * 1024, `bomb is ${bomb.length} bytes`);
    // One record lies (it declares 10 bytes): refused at the first header. One tells (70 GiB): refused unread.
    const lie = await c.publish('bomb-lie', bomb, { counts: { files: 1, deletions: 0, bytes: 10 } });
    const told = await c.publish('bomb-told', bomb, { counts: { files: 1, deletions: 0, bytes: 70 * GiB } });
    const calm = await c.publish('calm', gz(tarOf([tarFile('next', 'calm 2')])));
    const t0 = Date.now();
    const report = await c.puller.pollOnce();
    const took = Date.now() - t0;
    console.log(`# poll with two bombs and one commit: ${took} ms`);
    assert.equal(report.bucketReachable, true, String(report.error));
    assert.ok(took < 60_000, `the poll took ${took} ms`);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'calm'), calm.seq, 'the other container staged in the same poll');
    const calmUpper = await fx.upperOf('calm');
    await access(join(calmUpper, 'next'));
    for (const [name, rec, why] of [['bomb-lie', lie, /commit record declares/], ['bomb-told', told, /expansion ratio|limit/]] as const) {
      assert.equal(await appliedSeq(c.stateDir, c.group, name), name === 'bomb-lie' ? 2 : 3, `${name}: seq did not move`);
      const st = await statusOf(c.puller, name);
      assert.match(st.reason ?? '', /refused/, `${name}: ${st.reason}`);
      assert.equal(st.refusedCommit?.seq, rec.seq);
      assert.equal(st.refusedCommit?.digest, rec.digest);
      assert.match(st.refusedCommit?.reason ?? '', why, `${name}: ${st.refusedCommit?.reason}`);
    }
    // The same digest for both: the lie's was downloaded once, the told one never (refused from its record alone).
    assert.equal(lie.digest, told.digest);
    assert.equal(c.getsOf(lie.digest), 1, 'downloaded once, for the record that lied');
    for (let i = 0; i < 3; i++) await c.puller.pollOnce();
    assert.equal(c.getsOf(lie.digest), 1, 'a refused blob is not fetched again');
    assert.match((await statusOf(c.puller, 'bomb-lie')).reason ?? '', /refused/);
    // A full checkpoint unblocks the container.
    const full = await c.publish('bomb-lie', gz(tarOf([tarFile('base', 'rebuilt')])), { kind: 'full' });
    await c.puller.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'bomb-lie'), full.seq);
    const st = await statusOf(c.puller, 'bomb-lie');
    assert.equal(st.reason, undefined);
    assert.equal(st.refusedCommit, undefined);
  });

  it('a slow blob within its declared bounds holds back no other container, and a finalize deadline abandons its validation', async () => {
    const c = await newCase('slow', ['slow', 'quick']);
    // A 10 GiB file of zeros, then more zeros past the end marker: read for seconds, then refused (padding). 24 MiB
    // of gzip, so 10 GiB is within the 512:1 expansion bound, and the record tells the truth about the file.
    const declared = 10 * GiB;
    const slowBlob = zeroBomb('big', declared, 24 * 1024);
    const slow = await c.publish('slow', slowBlob, { counts: { files: 1, deletions: 0, bytes: declared } });
    const blobFile = join(c.stateDir, 'pull', c.group, 'blobs', `${slow.digest}.${slow.seq}`);
    c.puller.start();
    // Bounded wait for the download to land: validation starts right after it.
    for (let i = 0; i < 400; i++) {
      if (await access(blobFile).then(() => true, () => false)) break;
      await delay(25);
    }
    await access(blobFile).catch(async (err: unknown) => assert.fail(`no download: ${String(err)}; ${JSON.stringify(await statusOf(c.puller, 'slow'))}`));
    const q = await c.publish('quick', gz(tarOf([tarFile('q1', 'quick 1')])));
    const publishedQuickAt = Date.now();
    let stagedQuickAt = 0;
    for (let i = 0; i < 800 && stagedQuickAt === 0; i++) {
      if ((await appliedSeq(c.stateDir, c.group, 'quick')) === q.seq) stagedQuickAt = Date.now();
      else await delay(25);
    }
    assert.notEqual(stagedQuickAt, 0, 'the other container was staged while the slow blob was validated');
    console.log(`# the other container's commit staged ${stagedQuickAt - publishedQuickAt} ms after it was published`);
    const slowSt = await statusOf(c.puller, 'slow');
    assert.equal(slowSt.refusedCommit, undefined, `the slow blob is still being validated: ${slowSt.reason}`);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'slow'), 1);

    // MASTER now: the finalize deadline is not held by the validation in progress.
    const q2 = await c.publish('quick', gz(tarOf([tarFile('q2', 'quick 2')])));
    const deadline = 1000;
    const t0 = Date.now();
    const fin = await c.puller.finalize(deadline);
    const took = Date.now() - t0;
    console.log(`# finalize(${deadline}) while a 10 GiB blob was validated: ${took} ms`);
    assert.ok(took < deadline + 1_500, `finalize returned after ${took} ms`);
    assert.deepEqual(fin.containers.map((x) => [x.name, x.stagedSeq]), [['quick', q2.seq], ['slow', 1]]);
    assert.ok(c.lines.some((l) => l.includes('staging stopped by a deadline') && l.includes('"slow"')), 'the validation was abandoned');
    assert.equal((await statusOf(c.puller, 'slow')).refusedCommit, undefined, 'an abandoned validation is no refusal');

    // Back to following (a lost claim): the blob is validated whole this time, refused, and not fetched again.
    c.puller.resume();
    for (let i = 0; i < 2400 && (await statusOf(c.puller, 'slow')).refusedCommit === undefined; i++) await delay(25);
    const refused = await statusOf(c.puller, 'slow');
    assert.match(refused.refusedCommit?.reason ?? '', /padding after the end of the archive/, String(refused.reason));
    const gets = c.getsOf(slow.digest);
    assert.equal(gets, 2, 'fetched once before the deadline, once after');
    for (let i = 0; i < 3; i++) await c.puller.pollOnce();
    assert.equal(c.getsOf(slow.digest), gets, 'not fetched again once refused');
    assert.equal(await appliedSeq(c.stateDir, c.group, 'slow'), 1);
  });

  it('refuses a twin whose spec joins another container\'s or the host\'s network namespace; the status says why', async () => {
    const c = await newCase('netns', ['net-ok']);
    const hostile = [['net-container', 'container:net-ok'], ['net-ns', 'ns:/proc/1/ns/net']] as const;
    for (const [name, mode] of hostile) {
      await c.bucket.putSpec(name, { ...twinSpec(name, fx.imageId), networkMode: mode });
      await c.publish(name, gz(tarOf([tarFile('base', name)])), { kind: 'full' });
    }
    const ok = await c.publish('net-ok', gz(tarOf([tarFile('more', 'ok')])));
    await c.puller.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'net-ok'), ok.seq, 'the others flow');
    for (const [name, mode] of hostile) {
      const st = (await c.puller.status()).containers.find((x) => x.name === name);
      assert.equal(st?.twin, 'refused', `${name}: ${JSON.stringify(st)}`);
      assert.match(st?.reason ?? '', /networkMode/);
      assert.ok(st?.reason?.includes(JSON.stringify(mode)), `${name}: the reason names the mode: ${st?.reason}`);
      assert.equal((await fx.runtime.twinState(name)).state, 'absent', `${name}: no twin created`);
      assert.equal(await appliedSeq(c.stateDir, c.group, name), 0);
    }
  });
});
