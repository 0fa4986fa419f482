// A caught-up standby and periodic checkpoints (issue 12 item 1, review of ckpt12): a checkpoint that restates the
// commit the twin staged last (CommitRecord.sameAs) is recorded without fetching its blob or writing into the twin
// (the files keep their inodes: staging renames new ones in), also when the twin was a few deltas behind when it was
// read (they are staged first); a standby that starts the container from that checkpoint stages it whole; a twin that
// waited (running) longer than the retention with such deltas queued, whose blobs GC deleted meanwhile, moves on to the
// checkpoint and stages it whole instead of fetching the first delta's blob for ever. A real engine, the real Puller,
// the embedded S3 server behind the fault proxy, which counts the blob GETs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Puller } from '../../../src/puller/index.js';
import type { Bucket, Digest, Seq } from '../../../src/store/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { appliedSeq, bucketFor, collectingLogger, craftedJournal, twinSpec } from './helpers.js';

describe('a standby records a checkpoint it holds already', { timeout: 300_000 }, () => {
  let fx: PullerFixture;
  const gets = new Map<string, number>();

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-ckpt-trusted-', engine: 'puller-ck', proxy: true });
    fx.proxy.onAnswer((a) => {
      if (a.method === 'GET') gets.set(a.path, (gets.get(a.path) ?? 0) + 1);
    });
  });

  after(() => fx?.close());

  /** GETs of the blob `digest` of `group` (another group's journal may hold a blob of the same bytes). */
  const blobGets = (group: string, digest: Digest): number =>
    [...gets.entries()].filter(([path]) => path.includes(`/${group}/`) && path.includes(digest)).reduce((n, [, c]) => n + c, 0);

  /** `cmd`: the twin's command (the default `sh` exits at once when started). */
  async function open(group: string, name: string, tag: string, cmd?: string[]): Promise<{ p: Puller; stateDir: string; lines: string[]; reader: Bucket }> {
    const reader = bucketFor(fx.viaProxy, group);
    await reader.putSpec(name, { ...twinSpec(name, fx.imageId), ...(cmd === undefined ? {} : { cmd }) });
    const stateDir = join(fx.base, `${group}-${tag}`);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    const p = await fx.openPuller({ bucket: reader, group, stateDir, log });
    return { p, stateDir, lines, reader };
  }

  async function stagedBy(p: Puller, stateDir: string, group: string, name: string, seq: number): Promise<void> {
    for (let i = 0; i < 20 && (await appliedSeq(stateDir, group, name)) < seq; i++) await p.pollOnce();
    const status = (await p.status()).containers.find((c) => c.name === name);
    assert.equal(await appliedSeq(stateDir, group, name), seq, `${name} staged ${seq}: ${JSON.stringify(status)}`);
    assert.equal(status?.reason, undefined, 'nothing wrong');
  }

  const inode = async (path: string): Promise<number> => (await lstat(path)).ino;

  it('records a checkpoint restating what the twin staged without fetching it or writing into the twin, also a few deltas behind', async () => {
    const group = 'ck-caught-up';
    const name = 'ck-web';
    const j = craftedJournal(fx.store, group, name);
    const { p, stateDir, lines } = await open(group, name, 'a');
    await j.publish({ a: 'one', b: 'two' }, 'full');
    await stagedBy(p, stateDir, group, name, 1);
    await j.publish({ c: 'three' });
    await stagedBy(p, stateDir, group, name, 2);
    const upper = await fx.upperOf(name);
    const before = { a: await inode(join(upper, 'a')), c: await inode(join(upper, 'c')) };

    const restating = await j.publish({}, 'full', true);
    await stagedBy(p, stateDir, group, name, restating);
    assert.equal(blobGets(group, j.blobs.get(restating)!), 0, 'its blob was not fetched');
    assert.deepEqual({ a: await inode(join(upper, 'a')), c: await inode(join(upper, 'c')) }, before, 'nothing was written into the twin');
    assert.ok(lines.some((l) => l.includes('full checkpoint recorded without staging') && l.includes(name)), 'logged');

    // Two deltas, a checkpoint restating the second, a delta after it: read in one poll, the deltas are staged and the
    // checkpoint recorded.
    await j.publish({ d: 'four' });
    await j.publish({ e: 'five' });
    const second = await j.publish({}, 'full', true);
    const last = await j.publish({ f: 'six' });
    await stagedBy(p, stateDir, group, name, last);
    assert.equal(blobGets(group, j.blobs.get(second)!), 0, 'its blob was not fetched');
    assert.equal(await inode(join(upper, 'a')), before.a);
    for (const [path, body] of j.files) assert.equal(await readFile(join(upper, path), 'utf8'), body, path);
  });

  it('a standby that starts the container from a restating checkpoint stages it whole', async () => {
    const group = 'ck-fresh';
    const name = 'ck-new';
    const j = craftedJournal(fx.store, group, name);
    await j.publish({ a: 'one' }, 'full');
    await j.publish({ b: 'two' });
    const restating = await j.publish({}, 'full', true);
    const after = await j.publish({ c: 'three' });
    const { p, stateDir } = await open(group, name, 'b');
    await stagedBy(p, stateDir, group, name, after);
    assert.equal(blobGets(group, j.blobs.get(1)!), 0, 'it started at the checkpoint the head names');
    assert.equal(blobGets(group, j.blobs.get(restating)!), 1, 'the checkpoint was fetched and staged');
    const upper = await fx.upperOf(name);
    for (const [path, body] of j.files) assert.equal(await readFile(join(upper, path), 'utf8'), body, path);
  });

  it('a twin that waited past the retention with deltas queued before a restating checkpoint, their blobs deleted by GC, stages the checkpoint whole', async () => {
    const group = 'ck-retired';
    const name = 'ck-waited';
    const j = craftedJournal(fx.store, group, name);
    const { p, stateDir, lines } = await open(group, name, 'c', ['sh', '-c', 'sleep 3600']);
    await j.publish({ a: 'one', b: 'two' }, 'full');
    await stagedBy(p, stateDir, group, name, 1);
    // The twin runs (an operator, a test boot): staging pauses while the primary writes on and checkpoints.
    await dockerCli(fx.engine, ['start', name]);
    const deltas = [await j.publish({ c: 'three' }), await j.publish({ b: 'two.2' })];
    const restating = await j.publish({}, 'full', true);
    await p.pollOnce();
    assert.equal(await appliedSeq(stateDir, group, name), 1, 'nothing staged into the running twin');
    assert.match((await p.status()).containers.find((c) => c.name === name)?.reason ?? '', /running/);
    // Retention passes: GC deletes the records before the checkpoint and their blobs (the puller queued them already).
    for (const seq of deltas) {
      await fx.store.delete(j.writer.blobKey(j.blobs.get(seq)!));
      await fx.store.delete(j.writer.journalKey(1 as never, seq as Seq));
    }
    await dockerCli(fx.engine, ['stop', '-t', '0', name]);
    // Old code: the first delta's blob was fetched after every backoff (each explicit poll at once), the twin stayed at 1.
    await stagedBy(p, stateDir, group, name, restating);
    assert.equal(blobGets(group, j.blobs.get(deltas[0]!)!), 1, 'the gone blob was asked for once');
    assert.equal(blobGets(group, j.blobs.get(deltas[1]!)!), 0, 'nor the next delta\'s');
    assert.equal(blobGets(group, j.blobs.get(restating)!), 1, 'the checkpoint was fetched and staged whole');
    const upper = await fx.upperOf(name);
    for (const [path, body] of j.files) assert.equal(await readFile(join(upper, path), 'utf8'), body, path);
    assert.ok(lines.some((l) => l.includes('retired by retention') && l.includes(name)), 'logged');
    // And it follows on from there.
    const next = await j.publish({ d: 'four' });
    await stagedBy(p, stateDir, group, name, next);
    assert.equal(await readFile(join(upper, 'd'), 'utf8'), 'four');
  });
});
