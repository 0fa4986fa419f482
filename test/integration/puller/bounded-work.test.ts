// Bounded work on the standby (issue 12, item 6), on a real engine and the embedded S3 server behind the fault proxy
// (which counts the GETs and body bytes the puller asks for): a blob that does not match its record is fetched again
// after a backoff, not on every poll; a download stops at the size its record declares; a container that cannot stage
// keeps a bounded queue, and the durable cursor passes the commits of one that only a full checkpoint can move.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import type { Puller } from '../../../src/puller/index.js';
import { asDigest, type Bucket, type Digest } from '../../../src/store/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { appliedSeq, bucketFor, collectingLogger, countsOf, craftRecord, gz, putBlob, readApplied, sha256, twinSpec, writeHead } from './helpers.js';

const MiB = 1024 * 1024;

describe('bounded work on the standby', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  let caseNo = 0;

  interface Case {
    group: string;
    /** The primary's view (straight to the server). */
    writer: Bucket;
    /** The puller's view (through the proxy). */
    reader: Bucket;
    stateDir: string;
    lines: string[];
    head: Record<string, number>;
    publish: (name: string, blob: { digest: Digest; size: number; counts?: { files: number; deletions: number; bytes: number } }, kind?: 'full' | 'delta') => Promise<number>;
    commit: (name: string, path: string, body: string, kind?: 'full' | 'delta') => Promise<number>;
    open: (opts?: { maxQueued?: number }) => Promise<Puller>;
    getsOf: (digest: Digest) => number;
  }

  async function newCase(tag: string, names: string[], specOf: (name: string) => ReturnType<typeof twinSpec> = (n) => twinSpec(n, fx.imageId)): Promise<Case> {
    caseNo++;
    const group = `w${caseNo}-${tag}`;
    const writer = bucketFor(fx.store, group);
    const reader = bucketFor(fx.viaProxy, group);
    const stateDir = join(fx.base, group, 'state');
    await mkdir(stateDir, { recursive: true });
    for (const n of names) await writer.putSpec(n, specOf(n));
    const { log, lines } = collectingLogger();
    let seq = 0;
    const head: Record<string, number> = {};
    const gets = new Map<string, number>();
    fx.proxy.onAnswer((a) => {
      if (a.method === 'GET') gets.set(a.path, (gets.get(a.path) ?? 0) + 1);
    });
    const publish: Case['publish'] = async (name, blob, kind = 'delta') => {
      seq++;
      await writer.writeRecord(craftRecord({ seq, parentSeq: head[name] ?? 0, container: name, kind, digest: blob.digest, size: blob.size, ...(blob.counts ? { counts: blob.counts } : {}) }));
      head[name] = seq;
      await writeHead(writer, seq, head);
      return seq;
    };
    const commit: Case['commit'] = async (name, path, body, kind = 'delta') => publish(name, await putBlob(fx.store, writer, gz(tarOf([tarFile(path, body)]))), kind);
    return {
      group, writer, reader, stateDir, lines, head, publish, commit,
      open: (opts = {}) => fx.openPuller({ bucket: reader, group, stateDir, log, ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }) }),
      getsOf: (digest) => [...gets.entries()].filter(([path]) => path.includes(digest)).reduce((n, [, c]) => n + c, 0),
    };
  }

  async function statusOf(p: Puller, name: string): Promise<{ stagedSeq: number; reason?: string; refusedCommit?: { seq: number } }> {
    const c = (await p.status()).containers.find((x) => x.name === name);
    assert.ok(c, `status lists ${name}`);
    return c;
  }

  /** Polls `p` (explicit polls) until `name` staged `seq`, at most `polls` times. */
  async function stagedBy(c: Case, p: Puller, name: string, seq: number, polls = 20): Promise<void> {
    for (let i = 0; i < polls && (await appliedSeq(c.stateDir, c.group, name)) < seq; i++) await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, name), seq, `${name} staged ${seq}: ${JSON.stringify(await statusOf(p, name))}`);
  }

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-bounded-', engine: 'puller-w', proxy: true });
  });

  after(() => fx?.close());

  it('fetches a blob that does not match its record again only after a backoff, while the others flow; an explicit poll tries at once', async () => {
    const c = await newCase('backoff', ['bad', 'calm']);
    await c.commit('bad', 'base', 'bad 1', 'full');
    await c.commit('calm', 'base', 'calm 1', 'full');
    const p = await c.open();
    await p.pollOnce();
    // The record names the digest of the right bytes; the bucket holds others of the same length under it.
    const good = gz(tarOf([tarFile('next', 'bad 2')]));
    const digest = asDigest(sha256(good));
    await fx.store.put(c.writer.blobKey(digest), randomBytes(good.length));
    const badSeq = await c.publish('bad', { digest, size: good.length, counts: countsOf(good) });
    p.start();
    const windowMs = 5_000;
    const t0 = Date.now();
    let calmSeq = 0;
    for (let i = 0; Date.now() - t0 < windowMs && i < 1000; i++) {
      if (i === 20) calmSeq = await c.commit('calm', 'more', 'calm 2');
      await delay(50);
    }
    const gets = c.getsOf(digest);
    console.log(`# a blob that does not match its record, daemon polling every 50 ms for ${windowMs} ms: ${gets} GETs of it`);
    // Three GETs per attempt (the bucket re-fetches a mismatch twice), attempts at 0, 2 and 6 s: the old code fetched
    // it three times on every poll.
    assert.ok(gets >= 3 && gets <= 9, `${gets} GETs of the bad blob in ${windowMs} ms`);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'calm'), calmSeq, 'the other container staged meanwhile');
    const st = await statusOf(p, 'bad');
    assert.equal(st.stagedSeq, 1);
    assert.match(st.reason ?? '', /does not match its digest.*fetched again after/, String(st.reason));
    // The right bytes are back: an explicit poll does not wait for the backoff.
    await fx.store.put(c.writer.blobKey(digest), good);
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'bad'), badSeq);
    assert.equal(await readFile(join(await fx.upperOf('bad'), 'next'), 'utf8'), 'bad 2');
    assert.equal((await statusOf(p, 'bad')).reason, undefined);
  });

  it('stops a download at the size its record declares and does not fetch it on every poll', async () => {
    const c = await newCase('cap', ['liar']);
    await c.commit('liar', 'base', 'liar 1', 'full');
    const p = await c.open();
    await p.pollOnce();
    const big = gz(tarOf([tarFile('big', randomBytes(48 * MiB))]));
    const blob = await putBlob(fx.store, c.writer, big);
    // The record says the blob is 1000 bytes.
    await c.publish('liar', { ...blob, size: 1000, counts: { files: 1, deletions: 0, bytes: 100 } });
    const bytes0 = fx.proxy.stats.bodyBytes;
    p.start();
    for (let i = 0; i < 100 && !/larger than its record/.test((await statusOf(p, 'liar')).reason ?? ''); i++) await delay(50);
    await delay(2_000);
    const gets = c.getsOf(blob.digest);
    const relayed = fx.proxy.stats.bodyBytes - bytes0;
    console.log(`# a 48 MiB blob whose record declares 1000 bytes, 2 s of daemon polls: ${gets} GETs, ${relayed} body bytes through the proxy`);
    assert.match((await statusOf(p, 'liar')).reason ?? '', /larger than its record declares/);
    assert.ok(gets >= 1 && gets <= 2, `${gets} GETs`);
    assert.ok(relayed < 16 * MiB, `${relayed} bytes relayed`);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'liar'), 1);
    await access(join(await fx.upperOf('liar'), 'base'));
  });

  it('passes over the deltas of a container only a full checkpoint can move: the cursor goes on, also across a restart', async () => {
    const c = await newCase('refused', ['stuck', 'flow']);
    await c.commit('stuck', 'base', 'stuck 1', 'full');
    await c.commit('flow', 'base', 'flow 1', 'full');
    let p = await c.open();
    await p.pollOnce();
    // Refused from its record alone (more entries than the limits allow): never downloaded.
    const hostile = await putBlob(fx.store, c.writer, gz(tarOf([tarFile('x', 'x')])));
    const refusedSeq = await c.publish('stuck', { ...hostile, counts: { files: 100_000_000, deletions: 0, bytes: 1 } });
    const passed: Digest[] = [];
    for (let i = 0; i < 6; i++) {
      const body = gz(tarOf([tarFile(`after-${i}`, String(i))]));
      await c.publish('stuck', await putBlob(fx.store, c.writer, body));
      passed.push(asDigest(sha256(body)));
    }
    const flowSeq = await c.commit('flow', 'more', 'flow 2');
    await p.pollOnce();
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'flow'), flowSeq);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'stuck'), 1);
    const st = await statusOf(p, 'stuck');
    assert.equal(st.refusedCommit?.seq, refusedSeq);
    assert.match(st.reason ?? '', /refused.*waiting for a full checkpoint/);
    const applied = await readApplied(c.stateDir, c.group);
    // The old code kept the cursor before the refused commit for as long as the container waited.
    assert.equal(applied?.cursor, flowSeq, 'the durable cursor passed the refused commit and the deltas after it');
    for (const d of passed) assert.equal(c.getsOf(d), 0, 'a delta passed over is not downloaded');

    // Restarted: the container still waits, says why, and nothing of it is read again.
    await p.stop();
    p = await c.open();
    await p.pollOnce();
    assert.match((await statusOf(p, 'stuck')).reason ?? '', /waiting for a full checkpoint/);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'stuck'), 1);
    const late = await c.commit('stuck', 'late', 'passed over too');
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'stuck'), 1);
    assert.equal(c.getsOf(asDigest(sha256(gz(tarOf([tarFile('late', 'passed over too')]))))), 0, `delta ${late} passed over unread`);

    // The next full checkpoint moves it, and its deltas are followed again.
    const full = await c.commit('stuck', 'base', 'stuck rebuilt', 'full');
    const after = await c.commit('stuck', 'after-full', 'followed');
    await stagedBy(c, p, 'stuck', after);
    assert.ok(after > full);
    const st2 = await statusOf(p, 'stuck');
    assert.equal(st2.reason, undefined);
    assert.equal(st2.refusedCommit, undefined);
    assert.equal(await readFile(join(await fx.upperOf('stuck'), 'after-full'), 'utf8'), 'followed');
    assert.equal((await readApplied(c.stateDir, c.group))?.cursor, after);
  });

  it('bounds the queue of a container that cannot stage: past the bound it waits for its next full checkpoint', async () => {
    // A twin that keeps running once started (the busybox `sh` of the default spec exits at once).
    const c = await newCase('held', ['busy', 'other'], (n) => ({ ...twinSpec(n, fx.imageId), cmd: ['sh', '-c', 'sleep 3600'] }));
    await c.commit('busy', 'base', 'busy 1', 'full');
    await c.commit('other', 'base', 'other 1', 'full');
    const p = await c.open({ maxQueued: 5 });
    await p.pollOnce();
    await dockerCli(fx.engine, ['start', 'busy']);
    try {
      await c.commit('busy', 'b2', '2');
      await p.pollOnce();
      assert.match((await statusOf(p, 'busy')).reason ?? '', /running/);
      for (let i = 3; i <= 9; i++) await c.commit('busy', `b${i}`, String(i));
      const otherSeq = await c.commit('other', 'o2', '2');
      await p.pollOnce();
      await p.pollOnce();
      assert.match((await statusOf(p, 'busy')).reason ?? '', /more than 5 commits were queued while it could not stage .*waiting for a full checkpoint/);
      assert.equal(await appliedSeq(c.stateDir, c.group, 'other'), otherSeq);
      assert.equal((await readApplied(c.stateDir, c.group))?.cursor, otherSeq, 'the cursor does not wait for the dropped queue');
    } finally {
      await dockerCli(fx.engine, ['stop', '-t', '0', 'busy']);
    }
    // Stopped again: the dropped commits are not staged piecemeal; its next full checkpoint brings it up to date.
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'busy'), 1);
    const full = await c.commit('busy', 'base', 'busy all', 'full');
    await stagedBy(c, p, 'busy', full);
    assert.equal((await statusOf(p, 'busy')).reason, undefined);
  });
});
