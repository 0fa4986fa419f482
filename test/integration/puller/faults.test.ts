// The puller against a real Docker engine (the standby) and the embedded S3 server, driven poll by poll. The test
// plays the primary: real changesets published in order, and crafted records, blobs and tars for the hostile and
// faulty cases of THREATS.md ("Target state", "Crashes and storage faults", "Object store").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import type { Puller } from '../../../src/puller/index.js';
import { type Bucket, type Generation, type Seq } from '../../../src/store/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { startFaultProxy } from '../../../src/lab/fault-proxy.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { testS3Store } from '../../support/s3.js';
import { dir as tarDir, file as tarFile, symlinkEntry, tarOf } from '../changeset/craft-tar.js';
import {
  appliedSeq, bucketFor, collectingLogger, craftRecord, gz, Primary, putBlob, readApplied, treeOf, twinSpec, writeHead,
} from './helpers.js';

describe('puller faults and hostile input', { timeout: 240_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-puller-', engine: 'puller-f' });
    await importBusyboxImage(fx.engine.socketPath, 'tl-busybox:other');
  });

  after(() => fx?.close());

  let caseNo = 0;

  interface Case {
    group: string;
    bucket: Bucket;
    primary: Primary;
    stateDir: string;
    lines: string[];
    puller: () => Promise<Puller>;
  }

  /** A fresh group, state dir and primary; `puller()` opens a Puller on them (stopped in after). */
  async function newCase(tag: string, bucketOverride?: Bucket): Promise<Case> {
    caseNo++;
    const group = `g${caseNo}-${tag}`;
    const { log, lines } = collectingLogger();
    const bucket = bucketOverride ?? bucketFor(fx.store, group);
    const root = join(fx.base, group);
    const stateDir = join(root, 'state');
    await mkdir(stateDir, { recursive: true });
    const primary = new Primary(bucket, join(root, 'primary'));
    return {
      group, bucket, primary, stateDir, lines,
      puller: () => fx.openPuller({ bucket, group, stateDir, log }),
    };
  }

  async function statusOf(p: Puller, name: string): Promise<{ stagedSeq: number; reason?: string; twin: string; lag: number | null }> {
    const s = await p.status();
    const c = s.containers.find((x) => x.name === name);
    assert.ok(c, `status lists ${name}: ${JSON.stringify(s)}`);
    return c;
  }

  it('stages three commits in order (baseline)', async () => {
    const c = await newCase('happy');
    const web = await c.primary.container('happy-web', fx.imageId);
    await web.commit(async (u) => {
      await mkdir(join(u, 'etc'));
      await writeFile(join(u, 'etc/one'), '1\n');
    });
    await web.commit(async (u) => writeFile(join(u, 'etc/two'), '2\n'));
    await web.commit(async (u) => {
      await writeFile(join(u, 'etc/one'), 'one again\n');
      await mkdir(join(u, 'srv/x'), { recursive: true });
    });
    const p = await c.puller();
    const report = await p.pollOnce();
    assert.equal(report.bucketReachable, true, String(report.error));
    assert.equal(report.staged, 3);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'happy-web'), 3);
    const upper = await fx.upperOf('happy-web');
    assert.equal(await readFile(join(upper, 'etc/one'), 'utf8'), 'one again\n');
    assert.equal(await readFile(join(upper, 'etc/two'), 'utf8'), '2\n');
    assert.deepEqual(await treeOf(upper), await treeOf(web.upper));
    const st = await statusOf(p, 'happy-web');
    assert.equal(st.stagedSeq, 3);
    assert.equal(st.lag, 0);
    assert.equal(st.reason, undefined);
  });

  it('stops one container at a journal gap, keeps the others flowing, and resumes on a full', async () => {
    const c = await newCase('gap');
    const a = await c.primary.container('gap-a', fx.imageId);
    const b = await c.primary.container('gap-b', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    await a.commit(async (u) => writeFile(join(u, 'three'), '3'));
    await b.commit(async (u) => writeFile(join(u, 'b1'), 'b1'));
    await b.commit(async (u) => writeFile(join(u, 'b2'), 'b2'));
    await fx.store.delete(c.bucket.journalKey(1 as Generation, 2 as Seq));
    const p = await c.puller();
    for (let i = 0; i < 2; i++) await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'gap-a'), 1, 'staging stops at the gap');
    assert.equal(await appliedSeq(c.stateDir, c.group, 'gap-b'), 5, 'the other container flows');
    const upperA = await fx.upperOf('gap-a');
    await assert.rejects(access(join(upperA, 'three')), 'record 3 is not staged past the gap');
    const st = await statusOf(p, 'gap-a');
    assert.match(st.reason ?? '', /gap/);
    assert.match(st.reason ?? '', /missing/, `the reason says the parent record is missing: ${st.reason}`);
    assert.equal(st.lag, 2);
    await b.commit(async (u) => writeFile(join(u, 'b3'), 'b3'));
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'gap-b'), 6);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'gap-a'), 1);
    // A full checkpoint unblocks it and brings the whole tree.
    await a.commit(async (u) => writeFile(join(u, 'four'), '4'), 'full');
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'gap-a'), 7);
    assert.deepEqual(await treeOf(upperA), await treeOf(a.upper));
    assert.equal((await statusOf(p, 'gap-a')).reason, undefined);
  });

  it('stops a container whose record names a parent that is not its own', async () => {
    const c = await newCase('parent');
    const fullA = await putBlob(fx.store, c.bucket, gz(tarOf([tarFile('a1', 'a1')])));
    const fullB = await putBlob(fx.store, c.bucket, gz(tarOf([tarFile('b1', 'b1')])));
    const deltaA = await putBlob(fx.store, c.bucket, gz(tarOf([tarFile('a3', 'a3')])));
    const deltaB = await putBlob(fx.store, c.bucket, gz(tarOf([tarFile('b5', 'b5')])));
    await c.bucket.putSpec('par-a', twinSpec('par-a', fx.imageId));
    await c.bucket.putSpec('par-b', twinSpec('par-b', fx.imageId));
    await c.bucket.writeRecord(craftRecord({ seq: 1, parentSeq: 0, container: 'par-a', kind: 'full', ...fullA }));
    await c.bucket.writeRecord(craftRecord({ seq: 2, parentSeq: 0, container: 'par-b', kind: 'full', ...fullB }));
    // Seq 3 of par-a claims seq 2 (par-b's) as its parent; seq 4 of par-a names seq 3... which is par-a's but unstaged.
    await c.bucket.writeRecord(craftRecord({ seq: 3, parentSeq: 2, container: 'par-a', ...deltaA }));
    await c.bucket.writeRecord(craftRecord({ seq: 5, parentSeq: 2, container: 'par-b', ...deltaB }));
    await writeHead(c.bucket, 5, { 'par-a': 3, 'par-b': 5 });
    const p = await c.puller();
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'par-a'), 1);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'par-b'), 5, 'the missing seq 4 belongs to nobody staged: par-b flows');
    await assert.rejects(access(join(await fx.upperOf('par-a'), 'a3')));
    const st = await statusOf(p, 'par-a');
    assert.match(st.reason ?? '', /gap/);
    assert.match(st.reason ?? '', /par-b/, `the reason names whose record the parent is: ${st.reason}`);
  });

  it('stops a container at a record that does not parse and says why; nothing is skipped', async () => {
    const c = await newCase('garbage');
    const a = await c.primary.container('junk-a', fx.imageId);
    const b = await c.primary.container('junk-b', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    await a.commit(async (u) => writeFile(join(u, 'three'), '3'));
    await b.commit(async (u) => writeFile(join(u, 'b1'), 'b1'));
    await fx.store.put(c.bucket.journalKey(1 as Generation, 2 as Seq), Buffer.from('{"version":1, "seq": 2, garbage'));
    const p = await c.puller();
    for (let i = 0; i < 2; i++) await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'junk-a'), 1);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'junk-b'), 4);
    const upperA = await fx.upperOf('junk-a');
    await assert.rejects(access(join(upperA, 'two')));
    await assert.rejects(access(join(upperA, 'three')), 'nothing is skipped');
    const st = await statusOf(p, 'junk-a');
    assert.match(st.reason ?? '', /gap/);
    assert.match(st.reason ?? '', /not JSON/, `the reason says the parent does not parse: ${st.reason}`);
    const s = await p.status();
    assert.match(s.lastError ?? '', /seq 2/, `the puller-level alert stays until resolved: ${String(s.lastError)}`);
  });

  it('refuses a blob whose bytes do not match its digest, then stages it once the right bytes are back', async () => {
    const c = await newCase('digest');
    const a = await c.primary.container('dig-a', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    const p = await c.puller();
    await p.pollOnce();
    const rec = await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    const key = c.bucket.blobKey(rec.digest);
    const good = await fx.store.getBuffer(key, 10_000_000);
    assert.ok(good);
    await fx.store.put(key, randomBytes(good.length));
    const upper = await fx.upperOf('dig-a');
    const before = await treeOf(upper);
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'dig-a'), 1);
    assert.deepEqual(await treeOf(upper), before, 'nothing written into the upper dir');
    assert.match((await statusOf(p, 'dig-a')).reason ?? '', /digest|match/i);
    await fx.store.put(key, good);
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'dig-a'), 2);
    assert.equal(await readFile(join(upper, 'two'), 'utf8'), '2');
    assert.equal((await statusOf(p, 'dig-a')).reason, undefined);
  });

  it('refuses hostile changesets addressed by their true digest before writing anything', async () => {
    const c = await newCase('hostile');
    const cases: Array<{ name: string; tar: Buffer; entry: RegExp }> = [
      { name: 'evil-dotdot', tar: tarOf([tarFile('aaa-ok', 'fine'), tarFile('../escape', 'pwned')]), entry: /\.\.\/escape/ },
      // A symlink to far outside, then a file through it.
      { name: 'evil-link', tar: tarOf([tarFile('aaa-ok', 'fine'), symlinkEntry('ln', '../../..'), tarFile('ln/escape', 'pwned')]), entry: /ln\/escape/ },
    ];
    const sentinels: string[] = [];
    let seq = 0;
    const head: Record<string, number> = {};
    for (const h of cases) {
      await c.bucket.putSpec(h.name, twinSpec(h.name, fx.imageId));
      const full = await putBlob(fx.store, c.bucket, gz(tarOf([tarFile('base', 'base')])));
      await c.bucket.writeRecord(craftRecord({ seq: ++seq, parentSeq: 0, container: h.name, kind: 'full', ...full }));
      head[h.name] = seq;
    }
    await writeHead(c.bucket, seq, head);
    const p = await c.puller();
    await p.pollOnce();
    const uppers = new Map<string, string>();
    for (const h of cases) {
      const upper = await fx.upperOf(h.name);
      uppers.set(h.name, upper);
      const sentinel = join(dirname(upper), 'escape');
      await writeFile(sentinel, 'sentinel');
      sentinels.push(sentinel);
      const blob = await putBlob(fx.store, c.bucket, gz(h.tar));
      await c.bucket.writeRecord(craftRecord({ seq: ++seq, parentSeq: head[h.name] ?? 0, container: h.name, ...blob }));
      head[h.name] = seq;
    }
    await writeHead(c.bucket, seq, head);
    await p.pollOnce();
    await p.pollOnce();
    for (const [i, h] of cases.entries()) {
      const upper = uppers.get(h.name) ?? '';
      assert.equal(await appliedSeq(c.stateDir, c.group, h.name), i + 1, `${h.name}: seq unchanged`);
      assert.deepEqual([...(await treeOf(upper)).keys()], ['base'], `${h.name}: nothing written`);
      const st = await statusOf(p, h.name);
      assert.match(st.reason ?? '', h.entry, `${h.name}: the reason names the entry: ${st.reason}`);
    }
    for (const s of sentinels) assert.equal(await readFile(s, 'utf8'), 'sentinel');
    assert.deepEqual((await readdir(fx.base)).filter((n) => n === 'escape'), []);
  });

  it('catches up over more than 1000 journal records of two containers, in order', async () => {
    const c = await newCase('many');
    const total = 1100;
    const names = ['many-a', 'many-b'];
    for (const n of names) await c.bucket.putSpec(n, twinSpec(n, fx.imageId));
    // Interleaved by a fixed pattern; each commit sets c/count and adds c/f<k>, so an out-of-order or skipped commit shows.
    const plan: Array<{ seq: number; name: string; k: number; parent: number }> = [];
    const last: Record<string, number> = {};
    const count: Record<string, number> = {};
    for (let seq = 1; seq <= total; seq++) {
      const name = names[(seq * 7) % 3 === 0 ? 1 : 0] ?? 'many-a';
      const k = (count[name] ?? 0) + 1;
      count[name] = k;
      plan.push({ seq, name, k, parent: last[name] ?? 0 });
      last[name] = seq;
    }
    const t0 = Date.now();
    const queue = [...plan];
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let step = queue.shift(); step !== undefined; step = queue.shift()) {
        const pieces = step.k === 1 ? [tarDir('c'), tarFile('c/count', String(step.k)), tarFile(`c/f${step.k}`, String(step.k))] : [tarFile('c/count', String(step.k)), tarFile(`c/f${step.k}`, String(step.k))];
        const blob = await putBlob(fx.store, c.bucket, gz(tarOf(pieces)));
        await c.bucket.writeRecord(craftRecord({ seq: step.seq, parentSeq: step.parent, container: step.name, kind: step.k === 1 ? 'full' : 'delta', ...blob }));
      }
    }));
    await writeHead(c.bucket, total, last);
    const published = Date.now() - t0;
    const p = await c.puller();
    const t1 = Date.now();
    let polls = 0;
    while (polls < 5 && (await appliedSeq(c.stateDir, c.group, 'many-a')) + (await appliedSeq(c.stateDir, c.group, 'many-b')) < (last['many-a'] ?? 0) + (last['many-b'] ?? 0)) {
      const r = await p.pollOnce();
      assert.equal(r.bucketReachable, true, String(r.error));
      polls++;
    }
    const took = Date.now() - t1;
    console.log(`# ${total} records: published in ${published} ms, staged in ${took} ms over ${polls} poll(s)`);
    for (const n of names) {
      assert.equal(await appliedSeq(c.stateDir, c.group, n), last[n], `${n} staged to its last seq`);
      const upper = await fx.upperOf(n);
      assert.equal(await readFile(join(upper, 'c/count'), 'utf8'), String(count[n]));
      const files = (await readdir(join(upper, 'c'))).filter((f) => f.startsWith('f'));
      assert.equal(files.length, count[n], `${n}: every commit's file is there`);
      const st = await statusOf(p, n);
      assert.equal(st.reason, undefined);
      assert.equal(st.lag, 0);
    }
    assert.equal((await readApplied(c.stateDir, c.group))?.cursor, total);
  });

  it('does not replicate a container whose twin has another image, or whose image is absent; others flow', async () => {
    const c = await newCase('image');
    // img-wrong: a twin-labelled container of that name exists, created from another image.
    await dockerCli(fx.engine, ['create', '--name', 'img-wrong', '--network', 'none', '--label', 'twinlayer.twin=true', 'tl-busybox:other', 'sh']);
    // img-alien: a container of that name that is not a twin at all (same image).
    await dockerCli(fx.engine, ['create', '--name', 'img-alien', '--network', 'none', 'tl-busybox:puller', 'sh']);
    const wrong = await c.primary.container('img-wrong', fx.imageId);
    const alien = await c.primary.container('img-alien', fx.imageId);
    const absent = await c.primary.container('img-absent', `sha256:${'0'.repeat(64)}`);
    const ok = await c.primary.container('img-ok', fx.imageId);
    for (const x of [wrong, alien, absent, ok]) await x.commit(async (u) => writeFile(join(u, 'marker'), x.name));
    const wrongUpper = await fx.upperOf('img-wrong');
    const alienUpper = await fx.upperOf('img-alien');
    const p = await c.puller();
    await p.pollOnce();
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'img-ok'), 4);
    assert.equal(await readFile(join(await fx.upperOf('img-ok'), 'marker'), 'utf8'), 'img-ok');
    for (const [name, re] of [['img-wrong', /image/], ['img-alien', /not a twin/], ['img-absent', /not present|image/]] as const) {
      assert.equal(await appliedSeq(c.stateDir, c.group, name), 0, `${name} is not staged`);
      const st = await statusOf(p, name);
      assert.equal(st.twin, name === 'img-absent' ? st.twin : 'refused');
      assert.match(st.reason ?? '', re, `${name}: ${st.reason}`);
    }
    assert.equal((await fx.runtime.twinState('img-absent')).state, 'absent', 'no twin created without its image');
    await assert.rejects(access(join(wrongUpper, 'marker')), 'nothing written into the other-image container');
    await assert.rejects(access(join(alienUpper, 'marker')), 'nothing written into a container that is not a twin');
  });

  it('recreates a removed twin and restages it from the last full commit', async () => {
    const c = await newCase('removed');
    const a = await c.primary.container('rm-a', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    const p = await c.puller();
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'rm-a'), 2);
    const oldId = (await readApplied(c.stateDir, c.group))?.containers['rm-a']?.twinId;
    assert.ok(oldId, 'the applied state records which twin the seq describes');
    await dockerCli(fx.engine, ['rm', 'rm-a']);
    // Twins are checked every twinCheckEvery polls (default 20) and whenever the head moves.
    for (let i = 0; i < 21 && (await fx.runtime.twinState('rm-a')).state === 'absent'; i++) await p.pollOnce();
    const twin = await fx.runtime.twinState('rm-a');
    if (twin.state === 'absent') assert.fail('the twin is recreated from its spec');
    assert.notEqual(twin.id, oldId);
    const applied = (await readApplied(c.stateDir, c.group))?.containers['rm-a'];
    assert.equal(applied?.twinId, twin.id);
    assert.equal(applied?.seq, 2);
    assert.deepEqual(await treeOf(twin.layers.upperDir), await treeOf(a.upper), 'the new twin holds the whole tree again');
    await a.commit(async (u) => writeFile(join(u, 'three'), '3'));
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'rm-a'), 3);
    assert.deepEqual(await treeOf(twin.layers.upperDir), await treeOf(a.upper));
  });

  it('reports the bucket unreachable, changes nothing, catches up when it returns; finalize keeps its deadline', async () => {
    const proxy = await startFaultProxy(fx.s3.endpoint);
    fx.defer(() => proxy.close());
    const viaProxy = testS3Store({ endpoint: proxy.endpoint, bucket: fx.s3.bucket }, { requestTimeoutMs: 2_000 });
    fx.defer(() => viaProxy.destroy());
    const direct = bucketFor(fx.store, `g${caseNo + 1}-down`);
    const c = await newCase('down', bucketFor(viaProxy, `g${caseNo + 1}-down`));
    const primary = new Primary(direct, join(fx.base, c.group, 'primary-direct'));
    const a = await primary.container('down-a', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    const p = await c.puller();
    assert.equal((await p.pollOnce()).bucketReachable, true);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'down-a'), 1);
    const upper = await fx.upperOf('down-a');
    await proxy.refuse();
    await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    const down = await p.pollOnce();
    assert.equal(down.bucketReachable, false);
    assert.ok(down.error);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'down-a'), 1);
    await assert.rejects(access(join(upper, 'two')));
    assert.ok((await p.status()).lastError);
    await proxy.accept();
    assert.equal((await p.pollOnce()).bucketReachable, true);
    assert.equal(await appliedSeq(c.stateDir, c.group, 'down-a'), 2);
    assert.equal(await readFile(join(upper, 'two'), 'utf8'), '2');

    await a.commit(async (u) => writeFile(join(u, 'three'), '3'));
    await proxy.refuse();
    const deadline = 500;
    const t0 = Date.now();
    const fin = await p.finalize(deadline);
    const took = Date.now() - t0;
    assert.equal(fin.bucketReachable, false);
    assert.ok(took < deadline + 1_000, `finalize returned after ${took} ms (deadline ${deadline} ms)`);
    assert.deepEqual(fin.containers.map((x) => [x.name, x.stagedSeq]), [['down-a', 2]]);
    await proxy.accept();
  });

  it('finalize keeps its deadline when the bucket hangs', async () => {
    const proxy = await startFaultProxy(fx.s3.endpoint);
    fx.defer(() => proxy.close());
    const viaProxy = testS3Store({ endpoint: proxy.endpoint, bucket: fx.s3.bucket }, { requestTimeoutMs: 1_000 });
    fx.defer(() => viaProxy.destroy());
    const group = `g${caseNo + 1}-hang`;
    const c = await newCase('hang', bucketFor(viaProxy, group));
    const primary = new Primary(bucketFor(fx.store, group), join(fx.base, c.group, 'primary-direct'));
    const a = await primary.container('hang-a', fx.imageId);
    await a.commit(async (u) => writeFile(join(u, 'one'), '1'));
    const p = await c.puller();
    await p.pollOnce();
    assert.equal(await appliedSeq(c.stateDir, c.group, 'hang-a'), 1);
    await a.commit(async (u) => writeFile(join(u, 'two'), '2'));
    proxy.fail('hang', Infinity);
    const t0 = Date.now();
    const fin = await p.finalize(400);
    const took = Date.now() - t0;
    assert.ok(took < 1_400, `finalize returned after ${took} ms (deadline 400 ms)`);
    assert.equal(fin.timedOut, true);
    assert.equal(fin.bucketReachable, false);
    assert.deepEqual(fin.containers.map((x) => [x.name, x.stagedSeq]), [['hang-a', 1]]);
    // The twins may start now: startTwins does not wait for the hung request.
    const t1 = Date.now();
    const started = await p.startTwins();
    assert.ok(Date.now() - t1 < 3_000, `startTwins waited ${Date.now() - t1} ms`);
    assert.deepEqual(started.containers.map((x) => [x.name, x.ok]), [['hang-a', true]]);
    proxy.pass();
    await dockerCli(fx.engine, ['stop', '-t', '0', 'hang-a']);
  });
});
