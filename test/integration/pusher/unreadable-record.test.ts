// A pusher restarting over a last record it cannot read (review of the volumes merge, finding 3): the record at its
// last seq was replaced in the bucket by one the group did not sign. The pusher cannot trust what it shipped, ships a
// full commit, and says why in its log (the key and the error) instead of swallowing the failure. A real engine, the
// embedded S3 server, the real Pusher. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DockerRuntime } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { Pusher } from '../../../src/pusher/index.js';
import { type Bucket, type CommitRecord, type Generation, type S3BlobStore } from '../../../src/store/index.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger } from '../puller/helpers.js';

const GROUP = 'unreadable';
const NAME = 'keeper';
const IMAGE = 'tl-busybox:unreadable';

describe('pusher: a last record it cannot read forces a full commit, logged', { timeout: 300_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let engine: Engine | undefined;
  let bucket: Bucket;
  const pushers: Pusher[] = [];

  const newPusher = (log: ReturnType<typeof collectingLogger>['log']): Pusher => {
    const p = new Pusher({
      runtime: new DockerRuntime({ socketPath: engine!.socketPath, mountInfoPath: engine!.mountInfoPath }),
      bucket, log, hostId: 'host-a', group: GROUP, label: 'twinlayer.enable', stateDir: join(base, 'state'), excludes: [],
      debounceQuietMs: 5, debounceMaxMs: 20, uploadConcurrency: 2, reconcileIntervalMs: 600_000,
    });
    pushers.push(p);
    return p;
  };

  async function records(): Promise<CommitRecord[]> {
    const out: CommitRecord[] = [];
    for await (const item of bucket.listRecords(1 as Generation, 0)) if ('record' in item && item.record.container === NAME) out.push(item.record);
    return out;
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-unreadable-'));
    s3 = await withS3();
    store = testS3Store(s3);
    engine = await startEngine({ name: 'unreadable' });
    await importBusyboxImage(engine.socketPath, IMAGE);
    await dockerCli(engine, ['run', '-d', '--name', NAME, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE, 'sh', '-c', 'while true; do sleep 1; done']);
    bucket = bucketFor(store, GROUP);
  });

  after(async () => {
    const errors: unknown[] = [];
    for (const p of pushers) await p.stop().catch((e: unknown) => errors.push(e));
    store?.destroy();
    await engine?.stop().catch((e: unknown) => errors.push(e));
    await s3?.close().catch((e: unknown) => errors.push(e));
    if (base !== '') await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  it('logs the key and the error, then ships a full commit', async () => {
    const first = newPusher(collectingLogger().log);
    await first.start();
    await dockerCli(engine!, ['exec', NAME, 'sh', '-c', 'echo one > /state']);
    await first.syncOnce();
    await dockerCli(engine!, ['exec', NAME, 'sh', '-c', 'echo two > /state']);
    await first.syncOnce();
    await first.stop();
    const earlier = await records();
    const last = earlier.at(-1);
    assert.ok(last !== undefined && earlier.length >= 2, JSON.stringify(earlier.map((r) => [r.seq, r.kind])));
    assert.equal(last.kind, 'delta', 'the second commit was a delta');

    // A bucket writer without a key puts an unsigned copy in place of the last record.
    const key = bucket.journalKey(last.generation, last.seq);
    await store!.put(key, Buffer.from(JSON.stringify(last)));
    await assert.rejects(bucket.readRecord(last.generation, last.seq));

    const { log, lines } = collectingLogger();
    const second = newPusher(log);
    await second.start();
    await second.syncOnce();
    const warned = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'last record unreadable; a full commit follows');
    assert.ok(warned, `the fallback is logged:\n${lines.slice(-15).join('\n')}`);
    assert.equal(warned['key'], key);
    assert.equal(warned['container'], NAME);
    assert.match(JSON.stringify(warned['err']), /record/i);
    const later = await records();
    const next = later.find((r) => r.seq > last.seq);
    assert.ok(next !== undefined, 'a commit followed');
    assert.equal(next.kind, 'full');
  });
});
