// Periodic full checkpoints (issue 12, item 1) with the real Pusher on engine A and the real Puller on engine B, the
// embedded S3 server between them: a checkpoint follows once the deltas since the last one weigh more than the share
// of the container or the last one is older than the age; and after many small commits a new standby (empty state
// dir) reads only the journal records from the newest checkpoint on (the journal GETs counted at the fault proxy the
// puller reads through), and ends with the primary's files.
//
// The commits write straight into the container's upper dir from the test (the pusher watches that dir; a `docker
// exec` per commit would make 10 000 commits take an hour). TWINLAYER_CATCHUP_COMMITS sets how many (default 2000;
// the figure is 10 000). Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { DockerRuntime } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import type { Puller } from '../../../src/puller/index.js';
import { Pusher } from '../../../src/pusher/index.js';
import { DEFAULT_CHECKPOINT_POLICY, type CheckpointPolicy } from '../../../src/pusher/checkpoint-policy.js';
import { type CommitRecord, type Generation, type S3BlobStore } from '../../../src/store/index.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { appliedSeq, bucketFor, collectingLogger, openPuller } from '../puller/helpers.js';

const IMAGE = 'tl-busybox:ckpt';
const g1 = 1 as Generation;
const COMMITS = Number(process.env['TWINLAYER_CATCHUP_COMMITS'] ?? 2000);

describe('periodic full checkpoints', { timeout: 1_800_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let direct: S3BlobStore | undefined;
  let proxy: FaultProxy | undefined;
  let viaProxy: S3BlobStore | undefined;
  let engA: Engine | undefined;
  let engB: Engine | undefined;
  let runtimeA: DockerRuntime;
  const pushers: Pusher[] = [];
  const pullers: Puller[] = [];

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-ckpt-'));
    s3 = await withS3();
    direct = testS3Store(s3);
    proxy = await startFaultProxy(s3.endpoint);
    viaProxy = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket });
    [engA, engB] = await Promise.all([startEngine({ name: 'ckpt-a' }), startEngine({ name: 'ckpt-b' })]);
    runtimeA = new DockerRuntime({ socketPath: engA.socketPath, mountInfoPath: engA.mountInfoPath });
    await importBusyboxImage(engA.socketPath, IMAGE);
    await copyImage(engA.socketPath, engB.socketPath, IMAGE);
  });

  after(async () => {
    const errors: unknown[] = [];
    for (const p of pullers) await p.stop().catch((e: unknown) => errors.push(e));
    for (const p of pushers) await p.stop().catch((e: unknown) => errors.push(e));
    direct?.destroy();
    viaProxy?.destroy();
    await proxy?.close().catch((e: unknown) => errors.push(e));
    const stopped = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    for (const r of stopped) if (r.status === 'rejected') errors.push(r.reason);
    await s3?.close().catch((e: unknown) => errors.push(e));
    if (base !== '') await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  /** A protected container on A (its own label and group), its pusher with `checkpoints`, and a commit helper that
   *  writes a file into its upper dir and waits until the pusher has published it. */
  async function primary(name: string, checkpoints?: CheckpointPolicy) {
    const label = `tl.${name}`;
    const group = `ckpt-${name}`;
    await dockerCli(engA!, ['run', '-d', '--name', name, '--label', `${label}=true`, '--network', 'none', IMAGE, 'sh', '-c', 'mkdir -p /data; while true; do sleep 1; done']);
    const found = (await runtimeA.listProtected(label)).find((c) => c.name === name);
    assert.ok(found !== undefined, `${name} is protected`);
    const upper = found.layers.upperDir;
    await mkdir(join(upper, 'data'), { recursive: true });
    const bucket = bucketFor(direct!, group);
    const { log, lines } = collectingLogger();
    const pusher = new Pusher({
      runtime: runtimeA, bucket, log, hostId: 'host-a', group, label, stateDir: join(base, `state-a-${name}`), excludes: [],
      debounceQuietMs: 5, debounceMaxMs: 20, uploadConcurrency: 2, reconcileIntervalMs: 600_000,
      // The commits here come back to back: a checkpoint goes right after the delta that made it due, without the
      // quiet period it waits for otherwise (checkpoint-replicator.test.ts tests that wait).
      checkpoints: { ...DEFAULT_CHECKPOINT_POLICY, quietMs: 0, ...checkpoints },
    });
    pushers.push(pusher);
    await pusher.start();
    await pusher.syncOnce();
    const records = async (): Promise<CommitRecord[]> => {
      const out: CommitRecord[] = [];
      for await (const item of bucket.listRecords(g1, 0)) {
        if (!('record' in item)) assert.fail(`journal item ${item.seq}: ${item.error}`);
        if (item.record.container === name) out.push(item.record);
      }
      return out;
    };
    /** Writes `body` to /data/<file> and waits until the pusher has published it (a burst of one file: one delta). */
    const commit = async (file: string, body: string): Promise<void> => {
      const path = join(upper, 'data', file);
      await writeFile(path, body);
      const mtime = String((await lstat(path, { bigint: true })).mtimeNs);
      // The watcher's event may come after syncOnce looked: syncOnce again until the write is out (bounded).
      for (let i = 0; i < 200; i++) {
        await pusher.syncOnce();
        if ((await shippedMtime(`data/${file}`)) === mtime) return;
        await delay(5);
      }
      assert.fail(`the write of ${file} was not published`);
    };
    const shippedState = join(base, `state-a-${name}`, 'push', group, `${name}.json`);
    /** The mtime the committed shipped state records for `path`: the file as it was when its commit went out. */
    const shippedMtime = async (path: string): Promise<string | null> => {
      const text = await readFile(shippedState, 'utf8').catch(() => null);
      if (text === null) return null;
      const state = JSON.parse(text) as { shipped: { entries: Array<[string, { m?: string }]> } };
      return state.shipped.entries.find(([p]) => p === path)?.[1].m ?? null;
    };
    return { name, group, upper, bucket, pusher, lines, records, commit };
  }

  const kinds = (records: CommitRecord[]): string => records.map((r) => (r.kind === 'full' ? 'F' : 'd')).join('');
  const checkpointReasons = (lines: string[]): string[] =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'published' && typeof l['checkpoint'] === 'string').map((l) => String(l['checkpoint']));

  it('publishes a checkpoint once the deltas since the last one weigh more than the share of the container', async () => {
    // The container weighs 1 MiB at least and each delta 4 KiB at least: past 2 % of it (20 972 bytes), 6 deltas.
    const p = await primary('sharer', { deltaShare: 0.02, maxAgeMs: 3_600_000 });
    for (let i = 0; i < 20; i++) await p.commit(`f${i % 4}`, `value ${i}\n`);
    const seen = kinds(await p.records());
    assert.match(seen, /^F(d{6}F)+d{0,5}$/, `every 6 deltas a checkpoint: ${seen}`);
    assert.ok((seen.match(/F/g) ?? []).length >= 3, seen);
    const reasons = checkpointReasons(p.lines);
    assert.equal(reasons.length, (seen.match(/F/g) ?? []).length - 1, 'one logged reason per checkpoint');
    for (const r of reasons) assert.match(r, /^share: 6 deltas weigh 24576 bytes, over 0.02 of 1048576/);
  });

  it('publishes a checkpoint once the last one is older than the age and deltas followed it', async () => {
    const maxAgeMs = 3000;
    const p = await primary('ager', { deltaShare: 1000, maxAgeMs });
    await p.commit('a', 'one\n');
    await p.commit('b', 'two\n');
    // Past the age of the newest checkpoint (the first full sync, unless the two commits took longer than the age).
    const newest = (await p.records()).filter((r) => r.kind === 'full').at(-1);
    assert.ok(newest !== undefined);
    const wait = Date.parse(newest.publishedAt) + maxAgeMs + 100 - Date.now();
    if (wait > 0) await delay(wait);
    await p.commit('a', 'three\n');
    const records = await p.records();
    const seen = kinds(records);
    assert.match(seen, /^F(d+F)+$/, `the delta after the age, then a checkpoint: ${seen}`);
    const fulls = records.filter((r) => r.kind === 'full');
    for (let i = 1; i < fulls.length; i++) assert.ok(Date.parse(fulls[i]!.publishedAt) - Date.parse(fulls[i - 1]!.publishedAt) > maxAgeMs, seen);
    const reasons = checkpointReasons(p.lines);
    assert.equal(reasons.length, fulls.length - 1);
    for (const r of reasons) assert.match(r, /^age: /);
    // Nothing more without a delta, however old the checkpoint gets.
    await delay(maxAgeMs + 100);
    await p.pusher.reconcileNow();
    assert.equal(kinds(await p.records()), seen);
  });

  it(`a new standby after ${COMMITS} small commits reads only the records from the newest checkpoint on`, async () => {
    assert.ok(COMMITS >= 300, 'enough commits for checkpoints of the default policy (128 deltas of a small container)');
    // The default policy: 0.5 of the container (1 MiB at least), 4 KiB per delta at least.
    const p = await primary('counter');
    const started = Date.now();
    for (let i = 0; i < COMMITS; i++) await p.commit(`f${i % 100}`, `commit ${i}\n`);
    const commitMs = Date.now() - started;
    const records = await p.records();
    const head = await p.bucket.readHead(g1);
    assert.ok(head.status === 'ok');
    const lastFull = head.head.lastFull?.['counter'];
    const last = head.head.containers['counter'];
    assert.ok(lastFull !== undefined && last !== undefined, JSON.stringify(head.head));
    assert.equal(records.find((r) => r.seq === lastFull)?.kind, 'full');
    assert.equal(records.at(-1)?.seq, last);
    const fulls = records.filter((r) => r.kind === 'full').length;
    assert.ok(fulls >= 2, `checkpoints were published: ${fulls}`);

    // A new standby: an empty state dir on engine B, reading through the proxy.
    const journalGets: number[] = [];
    let requests = 0;
    const stopCounting = proxy!.onAnswer((a) => {
      requests++;
      const m = /\/twinlayer\/ckpt-counter\/gen\/1\/journal\/(\d{16})\.json$/.exec(a.path.split('?')[0] ?? '');
      if (a.method === 'GET' && m !== null) journalGets.push(Number(m[1]));
    });
    const stateDir = join(base, 'state-b');
    const { log, lines } = collectingLogger();
    const puller = await openPuller({ socketPath: engB!.socketPath, mountInfoPath: engB!.mountInfoPath, bucket: bucketFor(viaProxy!, p.group), group: p.group, stateDir, log });
    pullers.push(puller);
    for (let i = 0; i < 400 && (await appliedSeq(stateDir, p.group, 'counter')) < last; i++) await puller.pollOnce();
    stopCounting();
    assert.equal(await appliedSeq(stateDir, p.group, 'counter'), last, `staged up to the head:\n${lines.slice(-10).join('\n')}`);
    const below = journalGets.filter((s) => s < lastFull);
    assert.deepEqual(below, [], 'no record before the newest checkpoint is read');
    // The records from the checkpoint to the head, and the checkpoint once more to check what the head says of it.
    assert.ok(journalGets.length <= last - lastFull + 1 + 1, `journal GETs ${journalGets.length} for ${last - lastFull + 1} records`);

    // The twin holds what the primary holds.
    const twin = await new DockerRuntime({ socketPath: engB!.socketPath, mountInfoPath: engB!.mountInfoPath }).twinState('counter');
    assert.ok(twin.state !== 'absent');
    const files = async (dir: string): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const f of (await readdir(dir)).sort()) out[f] = await readFile(join(dir, f), 'utf8');
      return out;
    };
    assert.deepEqual(await files(join(twin.layers.upperDir, 'data')), await files(join(p.upper, 'data')));
    console.log(JSON.stringify({
      commits: COMMITS, commitMs, records: records.length, checkpoints: fulls, lastFull, head: last,
      standbyJournalGets: journalGets.length, standbyRequests: requests,
    }));
  });
});
