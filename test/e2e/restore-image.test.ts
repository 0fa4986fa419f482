// Issue 12 items 3 and 5 end to end, `twinlayer restore --image` and `--to`: a real container on engine A (dockerd
// 20.10, overlay2) runs a scripted history (files made, rewritten, chmod and chown, a setuid copy-up, image files
// deleted and renamed, an image dir removed and made again (opaque), symlinks, hard links, a file in chunks appended to
// and replaced, a file rewritten under a 0750 1234:5678 dir of the image), published by the real `twinlayer push` into
// the embedded S3 server; `docker export` of the container is recorded at each commit.
// - Restore equality: `restore --seq n --image` and `--at t --image` into A give an image whose container exports
//   exactly as the primary did at that commit; `restore --seq n --to dir`, its upper dir mounted over the base image's
//   layers, holds the same tree.
// - Layer portability: the image built from the bucket is loaded into a FRESH engine on the containerd image store
//   (engine B: not the engine that made the changesets, another image store), whose container exports the same, the
//   0750 1234:5678 parent dir included. So does an image stacked by hand from the base image's layers and each
//   changeset's tar as a layer (test/support/stacked-image.ts), but for the file in chunks, which other tools read as
//   an empty file. Engine B gets the base image from the bucket alone (images through the bucket).
// - Refusals load nothing: an engine without the base image, a tag that exists (without --force), a tampered blob.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { create as createTar } from 'tar';
import { startS3Server } from '../../src/s3server/index.js';
import { Bucket, S3BlobStore, type CommitRecord, type Generation } from '../../src/store/index.js';
import { silentLogger } from '../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../src/lab/engine.js';
import { importBusyboxImage } from '../../src/lab/busybox-image.js';
import { shipImage } from '../support/ship-image.js';
import { readExport, diffTrees, type Tree } from '../support/export-tree.js';
import { pusherCaughtUp } from '../support/pusher-status.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../support/twinlayer.js';
import { twinlayerEngineEnv } from '../support/engine.js';
import { requireRoot } from '../support/overlay.js';
import { loadStackedImage } from '../support/stacked-image.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { waitFor } from '../../src/lab/wait.js';

const run = promisify(execFile);
const BUCKET = 'twinlayer-rimage';
const GROUP = 'rimage';
const BASE = 'tl-rimage:base';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

/** What Docker puts into every container (its init layer and mount points): not part of the container's layer. */
const initLayer = /^(dev|proc|sys)(\/|$)|^etc\/mtab$/;

function withoutInit(t: Tree): Tree {
  return new Map([...t].filter(([p]) => !initLayer.test(p)));
}

interface Step {
  generation: Generation;
  record: CommitRecord;
  tree: Tree;
}

describe('twinlayer restore --image', { timeout: 900_000 }, () => {
  let base = '';
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engA: Engine;
  let engB: Engine;
  let store: S3BlobStore;
  let bucket: Bucket;
  let keys: GroupKeys;
  let restoreTmp = '';
  const procs: TwinlayerProcess[] = [];
  const mounted: string[] = [];
  const steps: Step[] = [];

  const env = (engine: Engine, extra: Record<string, string> = {}): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: GROUP,
    TWINLAYER_HOST_ID: 'host-a',
    ...keys.env('host-a'),
    ...twinlayerEngineEnv(engine),
    TWINLAYER_STATE_DIR: join(base, 'state-a'),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    // A step's writes (well under a second) make one commit: its export is that commit's.
    TWINLAYER_DEBOUNCE_QUIET_MS: '300',
    TWINLAYER_DEBOUNCE_MAX_MS: '20000',
    TWINLAYER_RECONCILE_INTERVAL_MS: '60000',
    TWINLAYER_CHUNK_THRESHOLD_BYTES: String(1024 * 1024),
    // No periodic full checkpoint within the history (replacing the 3 MB file would call one): the later commits are
    // deltas, restored on top of the first.
    TWINLAYER_CHECKPOINT_DELTA_SHARE: '1000',
    TWINLAYER_HOOK_LISTEN: '127.0.0.1:0',
    TWINLAYER_HOOK_TOKEN: 'rimage-token-0123456789abcdef',
    // The pusher ships no image: the refusal case needs a bucket without the base image, and the portability case puts
    // it there itself (test/support/ship-image.ts) once that is checked.
    TWINLAYER_SHIP_IMAGES: 'false',
    ...extra,
  });
  const exec = (cmd: string): Promise<string> => dockerCli(engA, ['exec', 'web', 'sh', '-c', cmd]);

  async function restore(engine: Engine, args: string[]): Promise<{ code: number | string; out: string }> {
    // Its temp dirs go under restoreTmp: a test checks that nothing is left there.
    const p = spawnTwinlayer(['restore', 'web', ...args], { ...env(engine), TMPDIR: restoreTmp, TWINLAYER_STATE_DIR: join(base, 'no-state') });
    const timer = setTimeout(() => void p.kill('SIGKILL'), 300_000);
    const code = await p.exited;
    clearTimeout(timer);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(await readdir(restoreTmp), [], `restore ${args.join(' ')} left its temp dir behind`);
    return { code, out: p.lines.join('\n') };
  }

  async function exportOf(engine: Engine, container: string): Promise<Tree> {
    return withoutInit(await readExport(await new Docker({ socketPath: engine.socketPath }).getContainer(container).export()));
  }

  /** `docker export` of a container created (not started) from `image` on `engine`; the container is removed after. */
  async function exportOfImage(engine: Engine, image: string): Promise<Tree> {
    const name = `probe-${Math.random().toString(36).slice(2, 10)}`;
    await dockerCli(engine, ['create', '--name', name, '--network', 'none', image]);
    try {
      return await exportOf(engine, name);
    } finally {
      await dockerCli(engine, ['rm', name]);
    }
  }

  /** Runs `cmd` in the container, waits for the pusher to publish all of it, and records the export at that commit. */
  async function step(cmd: string, then?: () => Promise<void>): Promise<Step> {
    const before = steps.at(-1)?.record.seq ?? 0;
    await exec(cmd);
    await then?.();
    const at = await waitFor('the pusher published the step', 60_000, async () => {
      const g = (await bucket.listGenerations()).at(-1);
      if (g === undefined) return undefined;
      const head = await bucket.readHead(g);
      const seq = head.status === 'ok' ? head.head.containers['web'] : undefined;
      if (seq === undefined || seq <= before || !(await pusherCaughtUp(join(base, 'state-a'), GROUP, 'web', seq))) return undefined;
      return { g, seq };
    }, 100);
    const rec = await bucket.readRecord(at.g, at.seq);
    assert.ok(rec !== null, `record ${at.seq}`);
    const s: Step = { generation: at.g, record: rec, tree: await exportOf(engA, 'web') };
    steps.push(s);
    return s;
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-rimage-'));
    restoreTmp = join(base, 'restore-tmp');
    await mkdir(restoreTmp);
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    [engA, engB] = await Promise.all([startEngine({ name: 'rimg-a' }), startEngine({ name: 'rimg-b', kind: 'containerd' })]);
    await importBusyboxImage(engA.socketPath, 'tl-busybox:rimage');
    // The base image: a 0750 1234:5678 dir with a file, a dir the container removes and makes again, files it deletes
    // and renames, a command and an env of its own.
    await dockerCli(engA, ['run', '--name', 'prep', '--network', 'none', 'tl-busybox:rimage', 'sh', '-c', [
      'mkdir -p /srv/img /etc/conf.d /var/www /data/deep/tree',
      'echo base > /srv/img/f && chown -R 1234:5678 /srv/img && chmod 750 /srv/img',
      'echo one > /etc/conf.d/one && echo two > /etc/conf.d/two',
      'echo index > /var/www/index.html && echo gone > /var/www/old.txt && echo leaf > /data/deep/tree/leaf',
    ].join(' && ')]);
    await dockerCli(engA, ['commit', '--change', 'ENV IMAGE_ENV=1', '--change', 'CMD ["sh"]', 'prep', BASE]);
    await dockerCli(engA, ['rm', 'prep']);
    await dockerCli(engA, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--label', 'app=web', '-e', 'MODE=prod', '-w', '/srv',
      '--network', 'none', BASE, 'sh', '-c', 'while true; do sleep 1; done']);
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: GROUP, log: silentLogger });
    procs.push(spawnTwinlayer(['push'], env(engA, { TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}` })));

    // 1: new files and dirs with owners and modes, a symlink, hard links, a file in chunks.
    await step([
      'mkdir -p /srv/app && echo secret=1 > /srv/app/config && chmod 640 /srv/app/config && chown -R 4321:8765 /srv/app && chmod 750 /srv/app',
      'ln /srv/app/config /srv/app/config.hard && ln -s /etc/app.conf /srv/link && echo "listen 8080" > /etc/app.conf',
      'dd if=/dev/urandom of=/srv/big.bin bs=1024 count=3072 2>/dev/null',
    ].join(' && '), async () => {
      // An xattr (busybox has no setfattr): set from the host through the container's merged dir.
      const merged = (await dockerCli(engA, ['inspect', '-f', '{{.GraphDriver.Data.MergedDir}}', 'web'])).trim();
      await run('setfattr', ['-n', 'user.note', '-v', 'kept', join(merged, 'srv/app/config')]);
    });
    // 2: image files deleted and renamed, a setuid copy-up, an owner changed, the chunked file appended to.
    await step([
      'rm /etc/conf.d/one /var/www/old.txt && mv /var/www/index.html /var/www/moved.html',
      'chmod 4755 /bin/busybox && chown 100000:100001 /etc/app.conf && chmod 600 /etc/app.conf',
      'dd if=/dev/urandom bs=1024 count=200 2>/dev/null >> /srv/big.bin',
    ].join(' && '));
    // 3: an image dir removed and made again (opaque), an image tree removed, a file rewritten under the 0750 dir.
    await step([
      'rm -rf /etc/conf.d && mkdir /etc/conf.d && echo three > /etc/conf.d/three',
      'rm -rf /data/deep && echo two > /srv/img/f',
    ].join(' && '));
    // 4: the chunked file replaced whole, a hard link and a symlink removed, a file emptied, the image file again.
    await step([
      'dd if=/dev/urandom of=/srv/big.bin bs=1024 count=1500 2>/dev/null && rm /srv/app/config.hard /srv/link',
      ': > /etc/app.conf && echo three > /srv/img/f',
    ].join(' && '));
  });

  after(async () => {
    for (const m of mounted) await run('umount', ['-l', m]).catch(() => undefined);
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('the history reached the bucket as a full checkpoint and deltas, the large file in chunks', () => {
    assert.equal(steps.length, 4);
    assert.ok(steps.every((s) => s.generation === steps[0]!.generation), 'one generation');
    assert.equal(steps[0]!.record.kind, 'full');
    assert.deepEqual(steps.map((s) => s.record.kind), ['full', 'delta', 'delta', 'delta']);
    assert.ok(steps[0]!.record.chunks !== undefined, 'the 3 MB file ships in chunks');
    const img = steps[2]!.tree.get('srv/img');
    assert.deepEqual([img?.mode, img?.uid, img?.gid], [0o750, 1234, 5678]);
  });

  it('refuses, loading nothing, on an engine without the base image when the bucket has not got it either', async () => {
    const r = await restore(engB, ['--image', 'tl-restored:none']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /the engine has not got the container's image tl-rimage:base \(sha256:[0-9a-f]{64}.*loading it from the bucket failed: .*not in the bucket/);
    await assert.rejects(dockerCli(engB, ['image', 'inspect', 'tl-restored:none']));
  });

  it('restore --seq n --image gives, for every commit, an image whose container exports as the primary did then', async () => {
    for (const [i, s] of steps.entries()) {
      const tag = `tl-restored:seq${s.record.seq}`;
      const r = await restore(engA, ['--seq', String(s.record.seq), '--image', tag]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /"msg":"image loaded"/);
      const diff = diffTrees(s.tree, await exportOfImage(engA, tag), ['primary', 'restored']);
      assert.deepEqual(diff, [], `step ${i + 1} (seq ${s.record.seq}):\n${diff.slice(0, 20).join('\n')}`);
    }
    // The xattr rides in the layer (docker export does not show xattrs): the restored image's top layer on overlay2.
    const top = (await dockerCli(engA, ['image', 'inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', `tl-restored:seq${steps[0]!.record.seq}`])).trim();
    const { stdout } = await run('getfattr', ['--only-values', '-n', 'user.note', join(top, 'srv/app/config')]);
    assert.equal(stdout, 'kept');
    // The image's config is the container's: its command, env, working dir and labels (twinlayer's own left out).
    const cfg = JSON.parse(await dockerCli(engA, ['image', 'inspect', '-f', '{{json .Config}}', `tl-restored:seq${steps[3]!.record.seq}`])) as {
      Cmd: string[]; Env: string[]; WorkingDir: string; Labels: Record<string, string>;
    };
    assert.deepEqual(cfg.Cmd, ['sh', '-c', 'while true; do sleep 1; done']);
    assert.ok(cfg.Env.includes('MODE=prod') && cfg.Env.includes('IMAGE_ENV=1'), cfg.Env.join(' '));
    assert.equal(cfg.WorkingDir, '/srv');
    assert.deepEqual(cfg.Labels, { app: 'web' });
  });

  it('restore --at t --image: the newest commit published at or before t', async () => {
    const [s2, s3rec] = [steps[1]!, steps[2]!];
    const between = new Date((Date.parse(s2.record.publishedAt) + Date.parse(s3rec.record.publishedAt)) / 2).toISOString();
    for (const [at, want] of [[between, s2], [s3rec.record.publishedAt, s3rec]] as const) {
      const tag = `tl-restored:at${want.record.seq}`;
      const r = await restore(engA, ['--at', at, '--image', tag]);
      assert.equal(r.code, 0, r.out);
      const diff = diffTrees(want.tree, await exportOfImage(engA, tag), ['primary', 'restored']);
      assert.deepEqual(diff, [], `--at ${at} (seq ${want.record.seq}):\n${diff.slice(0, 20).join('\n')}`);
    }
  });

  it('restore --seq n --to dir: the upper dir mounted over the base image\'s layers holds the same tree', async () => {
    const data = JSON.parse(await dockerCli(engA, ['image', 'inspect', '-f', '{{json .GraphDriver.Data}}', BASE])) as { UpperDir: string; LowerDir?: string };
    const lower = [data.UpperDir, ...(data.LowerDir === undefined ? [] : [data.LowerDir])].join(':');
    for (const s of [steps[1]!, steps[3]!]) {
      const dir = join(base, `to-${s.record.seq}`);
      const r = await restore(engA, ['--seq', String(s.record.seq), '--to', dir]);
      assert.equal(r.code, 0, r.out);
      const merged = join(base, `merged-${s.record.seq}`);
      const work = join(base, `work-${s.record.seq}`);
      await mkdir(merged);
      await mkdir(work);
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(dir, 'upper')},workdir=${work},redirect_dir=off,index=off,metacopy=off`, merged]);
      mounted.push(merged);
      try {
        const tree = withoutInit(await readExport(createTar({ cwd: merged, portable: false }, ['.']).pipe(new PassThrough())));
        const diff = diffTrees(s.tree, tree, ['primary', 'mounted']);
        assert.deepEqual(diff, [], `seq ${s.record.seq}:\n${diff.slice(0, 20).join('\n')}`);
      } finally {
        await run('umount', [merged]);
        mounted.pop();
      }
    }
  });

  it('layer portability: the image from the bucket alone (its base image too), loaded into a fresh engine on the containerd store, exports as the primary', async () => {
    // The base image reaches the engine through the bucket, as the primary ships it.
    await shipImage(engA, BASE, store, bucket.layout);
    const last = steps[3]!;
    const r = await restore(engB, ['--image', 'tl-restored:fresh']);
    assert.equal(r.code, 0, r.out);
    const tree = await exportOfImage(engB, 'tl-restored:fresh');
    const diff = diffTrees(last.tree, tree, ['primary', 'fresh engine']);
    assert.deepEqual(diff, [], diff.slice(0, 20).join('\n'));
    const img = tree.get('srv/img');
    assert.deepEqual([img?.mode, img?.uid, img?.gid], [0o750, 1234, 5678], 'the parent dir of a file rewritten in a delta');
    const app = tree.get('srv/app');
    assert.deepEqual([app?.mode, app?.uid, app?.gid], [0o750, 4321, 8765]);
    // The export of the primary now equals it too (nothing changed since the last step).
    assert.deepEqual(diffTrees(await exportOf(engA, 'web'), tree, ['primary', 'fresh engine']), []);
  });

  it('layer portability, changeset by changeset: the base image\'s layers and every changeset of the history as a layer of its own, loaded into the fresh engine, export as the primary', async () => {
    // The changesets as the bucket holds them (the full checkpoint first, then the deltas), stacked by hand: what any
    // OCI tool would make of them. Parent dirs of changed entries travel with them (item 5): without them the
    // containerd store's applier makes srv/img 0755 root:root.
    const dir = join(base, 'stacked');
    const blobs: string[] = [];
    await mkdir(join(dir, 'blobs'), { recursive: true });
    // Every commit of the container from the full checkpoint on: a step's writes may take more than one.
    const first = steps[0]!.record.seq;
    const last = steps[3]!.record.seq;
    for (let seq = first; seq <= last; seq++) {
      const rec = await bucket.readRecord(steps[0]!.generation, seq);
      if (rec === null || rec.container !== 'web') continue;
      const file = join(dir, 'blobs', `${seq}.tar.gz`);
      await bucket.downloadBlob(rec.digest, rec.size, file);
      blobs.push(file);
    }
    assert.ok(blobs.length >= steps.length, `${blobs.length} changesets`);
    const tag = 'tl-stacked:changesets';
    await loadStackedImage(new Docker({ socketPath: engA.socketPath }), new Docker({ socketPath: engB.socketPath }), BASE, blobs, join(dir, 'image'), tag);
    const tree = await exportOfImage(engB, tag);
    // A file shipped in chunks (above the 1 MiB threshold: the 3 MB file, and busybox copied up by its chmod) is, in
    // its changeset, an empty body naming its chunk list (DESIGN.md, chunk-list.ts): other tools read it as an empty
    // file; `restore --image` assembles it (the cases above). Everything else is exactly the primary.
    const chunked = ['bin/busybox', 'srv/big.bin'];
    for (const path of chunked) {
      assert.equal(tree.get(path)?.size, 0, `${path} reads back empty outside twinlayer`);
      assert.ok((steps[3]!.tree.get(path)?.size ?? 0) > 1024 * 1024, `${path} is above the chunking threshold`);
    }
    const unchunked = (t: Tree): Tree => new Map([...t].filter(([p]) => !chunked.includes(p)));
    const diff = diffTrees(unchunked(steps[3]!.tree), unchunked(tree), ['primary', 'stacked changesets']);
    assert.deepEqual(diff, [], diff.slice(0, 20).join('\n'));
    const img = tree.get('srv/img');
    assert.deepEqual([img?.mode, img?.uid, img?.gid], [0o750, 1234, 5678], 'the parent dir of a file rewritten in a delta');
    assert.equal(tree.get('etc/conf.d/one'), undefined, 'the opaque dir hides the image\'s files');
    assert.equal(tree.get('data/deep'), undefined, 'the removed image tree is whited out');
  });

  it('an existing tag is replaced only with --force; a tampered blob is refused and nothing is loaded', async () => {
    const tag = 'tl-restored:fresh';
    const before = (await dockerCli(engB, ['image', 'inspect', '-f', '{{.Id}}', tag])).trim();
    const r1 = await restore(engB, ['--seq', String(steps[0]!.record.seq), '--image', tag]);
    assert.equal(r1.code, 2, r1.out);
    assert.match(r1.out, /image tl-restored:fresh exists on the engine .*--force/);
    assert.equal((await dockerCli(engB, ['image', 'inspect', '-f', '{{.Id}}', tag])).trim(), before, 'the tag is where it was');
    const r2 = await restore(engB, ['--seq', String(steps[0]!.record.seq), '--image', tag, '--force']);
    assert.equal(r2.code, 0, r2.out);
    assert.deepEqual(diffTrees(steps[0]!.tree, await exportOfImage(engB, tag), ['primary', 'restored']), []);

    // The blob of the second commit replaced by other bytes of its size.
    const victim = steps[1]!.record;
    await store.put(bucket.blobKey(victim.digest), Buffer.alloc(victim.size, 7));
    const images = (await dockerCli(engB, ['image', 'ls', '-q', '--no-trunc'])).trim().split('\n').sort();
    const r3 = await restore(engB, ['--seq', String(steps[3]!.record.seq), '--image', 'tl-restored:tampered']);
    assert.equal(r3.code, 2, r3.out);
    assert.match(r3.out, /digest/i);
    await assert.rejects(dockerCli(engB, ['image', 'inspect', 'tl-restored:tampered']));
    assert.deepEqual((await dockerCli(engB, ['image', 'ls', '-q', '--no-trunc'])).trim().split('\n').sort(), images, 'no image was loaded');
  });
});
