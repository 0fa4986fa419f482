// Large files as content-defined chunks end to end (issue 10): a busybox container on engine A appends to, edits in
// the middle, truncates, extends with a hole, replaces and deletes a large file; the real Pusher ships to the
// embedded S3 server and the real Puller stages into the twin on engine B. After each step the twin's upper dir
// holds the primary's bytes (sha256 of the file in both upper dirs), and the bytes uploaded per commit, counted at
// the store, stay within the bounds. A record whose chunk list declares a million chunks is refused by the
// puller without the list being fetched. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { maxChunkBytes } from '../../../src/changeset/index.js';
import { DockerRuntime } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import type { Puller } from '../../../src/puller/index.js';
import { Pusher } from '../../../src/pusher/index.js';
import { asSeq, type Bucket, type S3BlobStore } from '../../../src/store/index.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger, openPuller } from '../puller/helpers.js';
import { WrappedStore } from '../store/helpers.js';

const GROUP = 'chunks';
const NAME = 'logger';
const IMAGE = 'tl-busybox:chunks';
const FILE = 'data/big.log';

async function digestOf(path: string): Promise<string | null> {
  const buf = await readFile(path).catch(() => null);
  return buf === null ? null : createHash('sha256').update(buf).digest('hex');
}

describe('large files in chunks, container to twin through the real pusher and puller', { timeout: 600_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let wrapped: WrappedStore | undefined;
  let engA: Engine | undefined;
  let engB: Engine | undefined;
  let pusher: Pusher | undefined;
  let puller: Puller | undefined;
  let bucket: Bucket;
  let upperA = '';
  let sent = 0;
  const { log, lines } = collectingLogger();

  const exec = (cmd: string): Promise<string> => dockerCli(engA!, ['exec', NAME, 'sh', '-c', cmd], 120_000);

  /** Ships what the container wrote; returns the stored bytes uploaded meanwhile. */
  async function shipped(): Promise<number> {
    const before = sent;
    await pusher!.syncOnce();
    shipFrom = shipTo;
    shipTo = lines.length;
    return sent - before;
  }
  /** The log since the shipped() before the last one ended (the write that the last one shipped, and its builds):
   *  what the pusher built and published then explains a figure over its bound. */
  let shipFrom = 0;
  let shipTo = 0;
  const shipLog = (): string => lines.slice(shipFrom, shipTo).filter((l) => /"msg":"(built|published|changeset)/.test(l)).slice(-20).join('\n');

  /** Polls the puller until the twin's upper dir holds the primary's `FILE` (or lacks it, as the primary does). */
  async function converged(): Promise<void> {
    const runtime = new DockerRuntime({ socketPath: engB!.socketPath, mountInfoPath: engB!.mountInfoPath });
    const want = await digestOf(join(upperA, FILE));
    let seen: string | null = null;
    try {
      await waitFor(`the twin holds ${FILE} as the primary does`, 60_000, async () => {
        await puller!.pollOnce();
        const twin = await runtime.twinState(NAME);
        if (twin.state === 'absent') return undefined;
        seen = await digestOf(join(twin.layers.upperDir, FILE));
        const wh = await stat(join(twin.layers.upperDir, FILE)).catch(() => null);
        // A deleted file is a whiteout (char device) in the twin's upper dir, which has no content.
        if (want === null) return wh === null || wh.isCharacterDevice() ? true : undefined;
        return seen === want ? true : undefined;
      }, 50);
    } catch (err) {
      throw new Error(`${(err as Error).message}: primary ${want}, twin ${seen}\n${lines.slice(-15).join('\n')}`, { cause: err });
    }
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-chunks-'));
    s3 = await withS3();
    store = testS3Store(s3);
    wrapped = new WrappedStore(store);
    wrapped.afterPut = async (_key, body) => {
      sent += Buffer.isBuffer(body) ? body.length : (await stat(body.file)).size;
    };
    [engA, engB] = await Promise.all([startEngine({ name: 'chunks-a' }), startEngine({ name: 'chunks-b' })]);
    await importBusyboxImage(engA.socketPath, IMAGE);
    await copyImage(engA.socketPath, engB.socketPath, IMAGE);
    await dockerCli(engA, ['run', '-d', '--name', NAME, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE, 'sh', '-c', 'mkdir -p /data; while true; do sleep 1; done']);
    upperA = (await dockerCli(engA, ['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', NAME])).trim();
    bucket = bucketFor(wrapped, GROUP, log);
    pusher = new Pusher({
      runtime: new DockerRuntime({ socketPath: engA.socketPath, mountInfoPath: engA.mountInfoPath }),
      bucket, log, hostId: 'chunks-a', group: GROUP, label: 'twinlayer.enable', stateDir: join(base, 'state-a'), excludes: [],
      debounceQuietMs: 5, debounceMaxMs: 20, uploadConcurrency: 4, reconcileIntervalMs: 600_000,
    });
    await pusher.start();
    puller = await openPuller({ socketPath: engB.socketPath, mountInfoPath: engB.mountInfoPath, bucket, group: GROUP, stateDir: join(base, 'state-b'), log });
  });

  after(async () => {
    const errors: unknown[] = [];
    await pusher?.stop().catch((e: unknown) => errors.push(e));
    await puller?.stop().catch((e: unknown) => errors.push(e));
    store?.destroy();
    for (const e of [engA, engB]) await e?.stop().catch((err: unknown) => errors.push(err));
    await s3?.close().catch((e: unknown) => errors.push(e));
    if (base !== '') await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, `cleanup failed\n${lines.slice(-20).join('\n')}`);
  });

  it('a new 24 MiB file reaches the twin byte for byte', async () => {
    await exec(`mkdir -p /data && head -c ${24 * 1024 * 1024} /dev/urandom > /${FILE}`);
    const bytes = await shipped();
    assert.ok(bytes >= 24 * 1024 * 1024, `the new file was uploaded (${bytes} bytes)`);
    await converged();
  });

  it('appends cost the tail chunk each', async () => {
    for (let i = 0; i < 5; i++) {
      await exec(`head -c 1000 /dev/urandom >> /${FILE}`);
      const bytes = await shipped();
      assert.ok(bytes <= maxChunkBytes + 64 * 1024, `an append of 1000 bytes uploaded ${bytes} bytes\n${shipLog()}`);
    }
    await converged();
  });

  it('a 4 KiB edit in the middle costs at most two chunks', async () => {
    await exec(`head -c 4096 /dev/urandom | dd of=/${FILE} bs=4096 seek=3000 conv=notrunc 2>/dev/null`);
    const bytes = await shipped();
    assert.ok(bytes <= 2 * maxChunkBytes + 64 * 1024, `a 4 KiB edit uploaded ${bytes} bytes\n${shipLog()}`);
    await converged();
  });

  it('truncated, extended with a hole, replaced whole, deleted: the twin follows', async () => {
    await exec(`truncate -s 5000000 /${FILE}`);
    assert.ok(await shipped() <= 2 * maxChunkBytes + 64 * 1024, 'a truncation ships at most the new tail chunk');
    await converged();
    await exec(`truncate -s 20000000 /${FILE}`);
    assert.ok(await shipped() <= 2 * 1024 * 1024, 'a hole ships compressed zero chunks, each once');
    await converged();
    await exec(`head -c 3000000 /dev/urandom > /${FILE}`);
    await shipped();
    await converged();
    await exec(`rm /${FILE}`);
    await shipped();
    await converged();
  });

  it('a record whose chunk list declares a million chunks is refused before the list is fetched', async () => {
    await exec(`head -c 2000000 /dev/urandom > /${FILE}`);
    // Holds the pusher's record back from the puller: the test publishes a hostile twin of it instead.
    await pusher!.syncOnce();
    const runtime = new DockerRuntime({ socketPath: engB!.socketPath, mountInfoPath: engB!.mountInfoPath });
    const seq = pusher!.status().containers.find((c) => c.name === NAME)?.lastSeq ?? 0;
    const rec = await bucket.readRecord(pusher!.generation!, asSeq(seq));
    assert.ok(rec?.chunks !== undefined, 'the last commit ships its file in chunks');
    await bucket.writeRecord({ ...rec, chunks: { ...rec.chunks, count: 1_000_000 } });
    const listKey = bucket.blobKey(rec.chunks.digest);
    const readsBefore = wrapped!.keysRead.length;
    await waitFor('the puller refuses the commit', 30_000, async () => {
      await puller!.pollOnce();
      const c = (await puller!.status()).containers.find((x) => x.name === NAME);
      return c?.refusedCommit?.seq === seq ? true : undefined;
    }, 50);
    const c = (await puller!.status()).containers.find((x) => x.name === NAME);
    assert.match(c?.refusedCommit?.reason ?? '', /1000000 chunks; the limit is/);
    assert.ok(!wrapped!.keysRead.slice(readsBefore).includes(listKey), 'the chunk list was not fetched');
    const twin = await runtime.twinState(NAME);
    assert.ok(twin.state !== 'absent');
    assert.equal(await digestOf(join(twin.layers.upperDir, FILE)), null, 'nothing of the refused commit was written');
  });
});
