// Issue 12 item 4 end to end: a standby that never had the image, with an empty state dir, reaches a bootable twin
// from the bucket alone. The primary (dockerd 20.10, overlay2) holds the image; the standby (dockerd 26, the containerd
// image store) has none, so both stores are crossed. The image is in the bucket as the primary ships it (put by
// test/support/ship-image.ts before the pusher starts; a pusher that ships images itself finds it there). MASTER (the
// hook's finalize) boots the twin, and `docker export` of it equals the primary's container.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import Docker from 'dockerode';

import { importBusyboxImage } from '../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../src/lab/engine.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { waitFor } from '../../src/lab/wait.js';
import { silentLogger } from '../../src/log/logger.js';
import { startS3Server } from '../../src/s3server/index.js';
import { Bucket, S3BlobStore } from '../../src/store/index.js';
import { runtimeFor, twinlayerEngineEnv } from '../support/engine.js';
import { diffTrees, readExport } from '../support/export-tree.js';
import { pusherCaughtUp } from '../support/pusher-status.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../support/twinlayer.js';

const BUCKET = 'twinlayer-images';
const TOKEN = 'e2e-token-images-0123456789';
const IMAGE = 'tl-busybox:shipped';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

describe('images through the bucket: a standby without the image reaches a bootable twin (20.10/overlay2 → 26/containerd)', { timeout: 600_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engA: Engine;
  let engB: Engine;
  let store: S3BlobStore;
  let bucket: Bucket;
  let keys: GroupKeys;
  let hookPort: number;
  const procs: TwinlayerProcess[] = [];
  let pusher: TwinlayerProcess | undefined;
  let puller: TwinlayerProcess | undefined;

  const env = (side: 'a' | 'b'): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: 'e2e',
    TWINLAYER_HOST_ID: side === 'a' ? 'host-a' : 'host-b',
    ...keys.env(side === 'a' ? 'host-a' : 'host-b'),
    ...twinlayerEngineEnv(side === 'a' ? engA : engB),
    TWINLAYER_STATE_DIR: join(base, `state-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    TWINLAYER_RECONCILE_INTERVAL_MS: '5000',
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${hookPort}`,
    TWINLAYER_HOOK_TOKEN: TOKEN,
    TWINLAYER_LOG_LEVEL: 'debug',
  });

  const tail = (name: string, p: TwinlayerProcess | undefined, n: number): string => `--- ${name} ---\n${p?.lines.slice(-n).join('\n') ?? '(not started)'}`;
  const tails = (n: number): string => `${tail('puller', puller, n)}\n${tail('pusher', pusher, n)}`;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-e2e-img-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    hookPort = await freePort();
    [engA, engB] = await Promise.all([startEngine({ name: 'e2e-img-a', kind: 'overlay2' }), startEngine({ name: 'e2e-img-b', kind: 'containerd' })]);
    // Two layers' worth of bytes that do not compress: a load takes a moment, in several ranged reads.
    await importBusyboxImage(engA.socketPath, IMAGE, { payloadBytes: 8 * 1024 * 1024 });
    await dockerCli(engA, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE, 'sh', '-c', 'while true; do sleep 1; done']);
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: 'e2e', log: silentLogger });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('the standby loads the image from the bucket, creates and stages the twin, and MASTER boots it equal to the primary', async (t) => {
    const listImages = async (e: Engine): Promise<string[]> => (await new Docker({ socketPath: e.socketPath }).listImages()).flatMap((i) => i.RepoTags ?? []);
    assert.deepEqual((await listImages(engB)).filter((r) => r === IMAGE), [], 'the standby has not got the image');
    // The primary's pusher ships the image itself (shipImages defaults to true): nothing else puts it in the bucket.
    pusher = spawnTwinlayer(['push'], env('a'));
    procs.push(pusher);
    puller = spawnTwinlayer(['pull'], env('b'));
    procs.push(puller);
    await dockerCli(engA, ['exec', 'web', 'sh', '-c', 'mkdir -p /srv && echo shipped > /srv/marker && echo more >> /etc/passwd']);

    try {
      await waitFor('the pusher published everything and B staged it into a twin made from the loaded image', 180_000, async () => {
        const g = (await bucket.listGenerations()).at(-1);
        if (g === undefined) return undefined;
        const head = await bucket.readHead(g);
        const seq = head.status === 'ok' ? head.head.containers['web'] : undefined;
        if (seq === undefined || !(await pusherCaughtUp(join(base, 'state-a'), 'e2e', 'web', seq))) return undefined;
        const text = await readFile(join(base, 'state-b', 'pull', 'e2e', 'applied.json'), 'utf8').catch(() => null);
        const mine = text === null ? undefined : (JSON.parse(text) as { containers: Record<string, { seq: number; generation: number }> }).containers['web'];
        return mine?.generation === g && mine.seq === seq ? true : undefined;
      }, 200);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${tails(40)}`, { cause: err });
    }
    const upper = (await runtimeFor(engB).resolveLayers('web')).upperDir;
    assert.equal(await readFile(join(upper, 'srv/marker'), 'utf8'), 'shipped\n');
    assert.ok(puller.lines.some((l) => l.includes('image loaded from the bucket')), `the puller says it loaded the image:\n${tails(40)}`);
    assert.ok(puller.lines.some((l) => l.includes('image layer fetched and checked')), 'with progress per layer');
    assert.ok((await listImages(engB)).includes(IMAGE), 'loaded and tagged as the primary ran it');

    const res = await fetch(`http://127.0.0.1:${hookPort}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 }),
    });
    const body = (await res.json()) as { outcome: string; start: { containers: Array<{ name: string; ok: boolean }> } };
    t.diagnostic(`hook answer: ${JSON.stringify(body)}`);
    assert.equal(res.status, 200);
    assert.equal(body.outcome, 'booted');
    assert.deepEqual(body.start.containers.map((c) => [c.name, c.ok]), [['web', true]]);
    const [ta, tb] = await Promise.all([
      readExport(await new Docker({ socketPath: engA.socketPath }).getContainer('web').export()),
      readExport(await new Docker({ socketPath: engB.socketPath }).getContainer('web').export()),
    ]);
    const diff = diffTrees(ta, tb);
    assert.deepEqual(diff, [], `docker export of primary and twin differ:\n${diff.slice(0, 20).join('\n')}`);
    assert.ok(ta.has('payload/blob.bin') && ta.has('srv/marker'), 'the export holds the image and the changes');
  });
});
