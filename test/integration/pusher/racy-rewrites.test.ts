// Racy clean end to end (issue 8, "Change detection that cannot miss a write"): same-size rewrites made inside a
// real container, in the timestamp tick of the read before them, reach the stopped twin. The primary engine's data
// root is a loop-mounted ext3 with whole-second timestamps (test/support/coarse-fs.ts), so every rewrite within a
// second keeps inode, size, mtime and ctime as the pusher last saw them. The real Pusher (short debounce, forced
// flushes) ships to the embedded S3 server; the real Puller stages into a twin on a second engine. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DockerRuntime } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import type { Puller } from '../../../src/puller/index.js';
import { Pusher } from '../../../src/pusher/index.js';
import type { S3BlobStore } from '../../../src/store/index.js';
import { mountExt3, nextTimestampTick, type LoopFs } from '../../support/coarse-fs.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger, openPuller } from '../puller/helpers.js';

const GROUP = 'racy';
const NAME = 'web';
const IMAGE = 'tl-busybox:racy';

describe('same-size rewrites inside a container, within one timestamp tick, reach the twin', { timeout: 240_000 }, () => {
  let base = '';
  let fsA: LoopFs | undefined;
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let engA: Engine | undefined;
  let engB: Engine | undefined;
  let pusher: Pusher | undefined;
  let puller: Puller | undefined;
  let upperA = '';
  const { log, lines } = collectingLogger();

  const exec = (cmd: string): Promise<string> => dockerCli(engA!, ['exec', NAME, 'sh', '-c', cmd], 60_000);
  const lastSeq = (): number => pusher!.status().containers.find((c) => c.name === NAME)?.lastSeq ?? 0;

  /** Polls the puller until the twin's upper dir holds `want` (relative path -> content). */
  async function converged(want: Record<string, string>): Promise<void> {
    const runtime = new DockerRuntime({ socketPath: engB!.socketPath, mountInfoPath: engB!.mountInfoPath });
    let seen: Record<string, string | null> = {};
    try {
      await waitFor(`the twin holds ${JSON.stringify(want)}`, 15_000, async () => {
        await puller!.pollOnce();
        const twin = await runtime.twinState(NAME);
        if (twin.state === 'absent') return undefined;
        seen = {};
        for (const p of Object.keys(want)) seen[p] = await readFile(join(twin.layers.upperDir, p), 'utf8').catch(() => null);
        return Object.keys(want).every((p) => seen[p] === want[p]) ? true : undefined;
      }, 20);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the twin holds ${JSON.stringify(seen)}`, { cause: err });
    }
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-racy-'));
    fsA = await mountExt3(base, 'a', { sizeMb: 512, secondTimestamps: true });
    s3 = await withS3();
    store = testS3Store(s3);
    [engA, engB] = await Promise.all([startEngine({ name: 'racy-a', baseDir: fsA.dir }), startEngine({ name: 'racy-b' })]);
    await importBusyboxImage(engA.socketPath, IMAGE);
    await copyImage(engA.socketPath, engB.socketPath, IMAGE);
    await dockerCli(engA, ['run', '-d', '--name', NAME, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE, 'sh', '-c', 'mkdir -p /data; while true; do sleep 1; done']);
    upperA = (await dockerCli(engA, ['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', NAME])).trim();
    assert.ok(upperA.startsWith(fsA.dir), `the container's upper dir ${upperA} is on the ext3 with whole-second timestamps`);
    const bucket = bucketFor(store, GROUP, log);
    pusher = new Pusher({
      runtime: new DockerRuntime({ socketPath: engA.socketPath, mountInfoPath: engA.mountInfoPath }),
      bucket, log, hostId: 'racy-a', group: GROUP, label: 'twinlayer.enable', stateDir: join(base, 'state-a'), excludes: [],
      debounceQuietMs: 5, debounceMaxMs: 20, uploadConcurrency: 2, reconcileIntervalMs: 600_000,
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
    await fsA?.unmount().catch((e: unknown) => errors.push(e));
    if (base !== '') await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, `cleanup failed\n${lines.slice(-20).join('\n')}`);
  });

  it('ships a rewrite that left the stat as the last flush saw it', async () => {
    await exec('mkdir -p /data && printf init > /data/f');
    await pusher!.syncOnce();
    await converged({ 'data/f': 'init' });
    const upperF = join(upperA, 'data/f');
    let hiddenRounds = 0;
    for (const values of [['aaaa', 'bbbb', 'cccc', 'dddd'], ['eeee', 'ffff', 'gggg', 'hhhh'], ['iiii', 'jjjj', 'kkkk', 'llll']]) {
      // Rewrite and flush until a rewrite keeps the stat the flush before it saw; the round ends on that rewrite,
      // so what the twin must converge to is a write the stat cannot show.
      await nextTimestampTick(join(fsA!.dir, 'tick-probe'));
      let last = '';
      for (const v of values) {
        const seen = await lstat(upperF, { bigint: true });
        await exec(`printf ${v} > /data/f`);
        last = v;
        const now = await lstat(upperF, { bigint: true });
        const hidden = now.ino === seen.ino && now.size === seen.size && now.mtimeNs === seen.mtimeNs && now.ctimeNs === seen.ctimeNs;
        await pusher!.syncOnce();
        if (hidden) {
          hiddenRounds++;
          break;
        }
      }
      await converged({ 'data/f': last });
    }
    // Otherwise no round ended on a rewrite the stat could not show, and the test would prove nothing.
    assert.ok(hiddenRounds >= 1, 'no rewrite kept the stat of the flush before it');
  });

  it('converges after tight loops of same-size in-place rewrites with the pusher shipping all along', async () => {
    // In place (`1<>`: no truncate, no new inode) and paced so that the pusher reads each file several times in the
    // last second of its loop: a read in that second before the last rewrite hides the rest of the loop from the stat.
    const counts = [900, 800, 700, 600];
    const loops = counts.map((n, k) => `(i=0; while [ $i -lt ${n} ]; do printf %04d $i 1<>/data/g${k}; usleep 1000; i=$((i+1)); done) &`).join(' ');
    let done = false;
    const writing = exec(`${loops} wait`).finally(() => {
      done = true;
    });
    // Forced flushes on top of the watcher's debounced ones, while the loops run (bounded).
    let flushes = 0;
    for (; !done && flushes < 2000; flushes++) await pusher!.syncOnce();
    await writing;
    await pusher!.syncOnce();
    assert.ok(flushes > 5, `the pusher flushed ${flushes} times while the loops ran`);
    await converged(Object.fromEntries(counts.map((n, k) => [`data/g${k}`, String(n - 1).padStart(4, '0')])));
  });

  it('ships nothing more from an idle container, before and after its timestamps are old', async () => {
    const seq = lastSeq();
    await pusher!.reconcileNow();
    assert.equal(lastSeq(), seq, 'files still racily clean are compared by content: the same content ships nothing');
    const newest = Math.max(...await Promise.all(['data/f', 'data/g0', 'data/g1', 'data/g2', 'data/g3'].map(async (p) => (await lstat(join(upperA, p))).ctimeMs)));
    await waitFor('the last change is 2 s old (past the window of whole-second stamps)', 10_000, () => Promise.resolve(Date.now() > newest + 2000 ? true : undefined), 50);
    for (let i = 0; i < 2; i++) {
      await pusher!.reconcileNow();
      assert.equal(lastSeq(), seq, 'an idle container publishes nothing');
    }
  });
});
