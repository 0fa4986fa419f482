// Issue 12 item 5 end to end: a delta carries every parent dir of what it ships, with the mode, owner and mtime the
// dir has in the container's upper dir, as Docker's own layer diffs do (an OCI applier that meets a file whose
// parent a layer lacks creates that parent 0755 root:root, which hides the real one in an image made of the
// changesets). Two real engines, the embedded S3 server, `twinlayer push` on A and `twinlayer pull` on B: a 0750
// 1234:5678 dir from the image and a 0750 4321:8765 dir the container made early get a file rewritten in place later
// (the dirs themselves do not change); every delta that ships such a file ships its parents with their metadata,
// and `docker export` of the twin equals the primary's.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startS3Server } from '../../src/s3server/index.js';
import { Bucket, S3BlobStore, type CommitRecord, type Generation } from '../../src/store/index.js';
import { defaultLimits } from '../../src/changeset/index.js';
import { readChangeset } from '../../src/changeset/tar-reader.js';
import type { TarEntry } from '../../src/changeset/tar-format.js';
import { silentLogger } from '../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../src/lab/busybox-image.js';
import { readExport, diffTrees } from '../support/export-tree.js';
import { pusherCaughtUp } from '../support/pusher-status.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../support/twinlayer.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { waitFor } from '../../src/lab/wait.js';

const BUCKET = 'twinlayer-parents';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

describe('deltas carry their parent dirs', { timeout: 600_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engA: Engine;
  let engB: Engine;
  let store: S3BlobStore;
  let bucket: Bucket;
  let keys: GroupKeys;
  const procs: TwinlayerProcess[] = [];

  const env = (side: 'a' | 'b', hookPort: number): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: 'parents',
    TWINLAYER_HOST_ID: side === 'a' ? 'host-a' : 'host-b',
    ...keys.env(side === 'a' ? 'host-a' : 'host-b'),
    TWINLAYER_DOCKER_SOCKET: side === 'a' ? engA.socketPath : engB.socketPath,
    TWINLAYER_STATE_DIR: join(base, `state-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    TWINLAYER_RECONCILE_INTERVAL_MS: '5000',
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${hookPort}`,
    TWINLAYER_HOOK_TOKEN: 'parents-token-0123456789abcdef',
    TWINLAYER_LOG_LEVEL: 'debug',
  });
  const exec = (cmd: string): Promise<string> => dockerCli(engA, ['exec', 'web', 'sh', '-c', cmd]);

  async function upperOfTwin(): Promise<string> {
    return waitFor('the twin of web on B', 30_000, async () => {
      const info = (await new Docker({ socketPath: engB.socketPath }).getContainer('web').inspect().catch(() => null)) as { GraphDriver: { Data: Record<string, string> | null } } | null;
      return info?.GraphDriver.Data?.['UpperDir'];
    });
  }

  /** The newest generation and B's staged seq of web in it, against the head's. */
  async function converged(marker: string): Promise<{ generation: Generation; seq: number }> {
    const upper = await upperOfTwin();
    await waitFor(`marker ${marker} staged on B`, 60_000, async () => ((await readFile(join(upper, 'marker'), 'utf8').catch(() => null))?.trim() === marker ? true : undefined));
    return waitFor('A published everything of web and B staged the head seq', 60_000, async () => {
      const g = (await bucket.listGenerations()).at(-1);
      if (g === undefined) return undefined;
      const head = await bucket.readHead(g);
      const headSeq = head.status === 'ok' ? head.head.containers['web'] : undefined;
      const text = await readFile(join(base, 'state-b', 'pull', 'parents', 'applied.json'), 'utf8').catch(() => null);
      const mine = text === null ? undefined : (JSON.parse(text) as { containers: Record<string, { seq: number; generation: number }> }).containers['web'];
      // The marker can come ahead of earlier writes (test/support/pusher-status.ts): also wait for the pusher.
      if (headSeq === undefined || !(await pusherCaughtUp(join(base, 'state-a'), 'parents', 'web', headSeq))) return undefined;
      return mine?.generation === g && mine.seq === headSeq ? { generation: g, seq: headSeq } : undefined;
    });
  }

  /** The records of web in generation `g` after `afterSeq`, each with the entries of its changeset by path. */
  async function changesetsOf(g: Generation, afterSeq: number): Promise<Array<{ record: CommitRecord; entries: Map<string, TarEntry> }>> {
    const out: Array<{ record: CommitRecord; entries: Map<string, TarEntry> }> = [];
    for await (const item of bucket.listRecords(g, afterSeq)) {
      if (!('record' in item)) assert.fail(`journal item ${item.seq}: ${item.error}`);
      if (item.record.container !== 'web') continue;
      const file = join(base, `blob-${item.seq}`);
      await bucket.downloadBlob(item.record.digest, item.record.size, file);
      const entries = new Map<string, TarEntry>();
      await readChangeset(file, defaultLimits, async (e) => {
        entries.set(e.path, e);
        await Promise.resolve();
      });
      out.push({ record: item.record, entries });
    }
    return out;
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-parents-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    [engA, engB] = await Promise.all([startEngine({ name: 'par-a' }), startEngine({ name: 'par-b' })]);
    await importBusyboxImage(engA.socketPath, 'tl-busybox:parents');
    // The base image holds a 0750 1234:5678 dir with a file in it.
    await dockerCli(engA, ['run', '--name', 'prep', '--network', 'none', 'tl-busybox:parents', 'sh', '-c', 'mkdir -p /srv/img && echo base > /srv/img/f && chown -R 1234:5678 /srv/img && chmod 750 /srv/img']);
    await dockerCli(engA, ['commit', 'prep', 'tl-parents:base']);
    await dockerCli(engA, ['rm', 'prep']);
    await copyImage(engA.socketPath, engB.socketPath, 'tl-parents:base');
    await dockerCli(engA, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-parents:base', 'sh', '-c', 'while true; do sleep 1; done']);
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: 'parents', log: silentLogger });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('ships the unchanged parents of a file rewritten in place with their mode and owner; the twin equals the primary', async () => {
    const hookPort = await freePort();
    procs.push(spawnTwinlayer(['push'], env('a', await freePort())), spawnTwinlayer(['pull'], env('b', hookPort)));
    // Early: the image's dir is copied up (its file changes) and the container makes a dir of its own.
    await exec('echo one > /srv/img/f && mkdir /early && echo one > /early/f && chown -R 4321:8765 /early && chmod 750 /early && echo v1 > /marker');
    const first = await converged('v1');
    // Later: both files rewritten in place. Neither dir changes, nor does any dir above them.
    await exec('echo two > /srv/img/f && echo two > /early/f && echo v2 > /marker');
    const second = await converged('v2');
    assert.ok(second.seq > first.seq && second.generation === first.generation);

    const later = await changesetsOf(second.generation, first.seq);
    const shipping = later.filter((c) => c.entries.has('srv/img/f') || c.entries.has('early/f'));
    assert.ok(shipping.length > 0, 'the rewrites were shipped');
    const want: Record<string, [number, number, number]> = { 'srv': [0o755, 0, 0], 'srv/img': [0o750, 1234, 5678], 'early': [0o750, 4321, 8765] };
    for (const c of shipping) {
      assert.equal(c.record.kind, 'delta', `record ${c.record.seq} is a delta`);
      const needs = [...(c.entries.has('srv/img/f') ? ['srv', 'srv/img'] : []), ...(c.entries.has('early/f') ? ['early'] : [])];
      for (const dir of needs) {
        const e = c.entries.get(dir);
        assert.ok(e, `delta ${c.record.seq} carries the parent ${dir} (it holds ${[...c.entries.keys()].join(', ')})`);
        assert.equal(e.type, 'dir');
        assert.deepEqual([e.mode, e.uid, e.gid], want[dir], `${dir} in delta ${c.record.seq}: mode ${e.mode.toString(8)} ${e.uid}:${e.gid}`);
      }
    }

    const a = new Docker({ socketPath: engA.socketPath });
    const b = new Docker({ socketPath: engB.socketPath });
    const [ta, tb] = await Promise.all([readExport(await a.getContainer('web').export()), readExport(await b.getContainer('web').export())]);
    const diff = diffTrees(ta, tb);
    assert.deepEqual(diff, [], `docker export of primary and twin differ:\n${diff.slice(0, 20).join('\n')}`);
    const img = ta.get('srv/img');
    assert.deepEqual([img?.mode, img?.uid, img?.gid], [0o750, 1234, 5678], 'the export shows the dir as the image made it');
  });
});
