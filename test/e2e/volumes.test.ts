// Issue 9 item 2 end to end: a protected container's named volume and anonymous volume are replicated with its
// upper layer. Two real Docker engines, the embedded S3 server, `twinlayer push` on A and `twinlayer pull` on B as
// real processes. Writes, overwrites, deletes, renames, dirs, links and modes in both volumes and the upper layer
// made with `docker exec` on A reach the stopped twin on B: its volumes (the named one under the same name, the
// anonymous one as the named volume twinlayer made for it) equal A's file by file, its upper layer equals A's
// (`docker export`), and the started twin reads the same. A local volume with driver options is not replicated:
// the standby reports it and creates no twin.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startS3Server } from '../../src/s3server/index.js';
import { Bucket, S3BlobStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../src/lab/busybox-image.js';
import { anonymousTwinVolumeName, DockerRuntime, TwinSpecRefusedError, twinSpecSchema } from '../../src/docker/index.js';
import { readExport, diffTrees as diffExports } from '../support/export-tree.js';
import { pusherCaughtUp } from '../support/pusher-status.js';
import { diffTrees, hardLinkGroups, snapshotTree } from '../support/overlay.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../support/twinlayer.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { startVolumePlugin, type VolumePlugin } from '../support/volume-plugin.js';
import { waitFor } from '../../src/lab/wait.js';

const BUCKET = 'twinlayer-e2e-volumes';
const TOKEN = 'e2e-token-volumes-0123456789';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

interface MountInfo { Type: string; Name?: string; Source?: string; Destination: string }

describe('volumes replicated with their container: push on A, pull on B', { timeout: 600_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engA: Engine;
  let engB: Engine;
  let bucket: Bucket;
  let store: S3BlobStore;
  let keys: GroupKeys;
  const procs: TwinlayerProcess[] = [];
  let hookPort: number;
  let plugin: VolumePlugin;

  const env = (side: 'a' | 'b'): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: 'vol',
    TWINLAYER_HOST_ID: side === 'a' ? 'host-a' : 'host-b',
    ...keys.env(side === 'a' ? 'host-a' : 'host-b'),
    TWINLAYER_DOCKER_SOCKET: side === 'a' ? engA.socketPath : engB.socketPath,
    TWINLAYER_STATE_DIR: join(base, `state-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    TWINLAYER_RECONCILE_INTERVAL_MS: '5000',
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${hookPort}`,
    TWINLAYER_HOOK_TOKEN: TOKEN,
    TWINLAYER_LOG_LEVEL: 'debug',
  });
  const start = (cmd: 'push' | 'pull'): TwinlayerProcess => {
    const p = spawnTwinlayer([cmd], env(cmd === 'push' ? 'a' : 'b'));
    procs.push(p);
    return p;
  };
  const exec = (cmd: string): Promise<string> => dockerCli(engA, ['exec', 'svc', 'sh', '-c', cmd]);

  async function mountsOf(engine: Engine, name: string): Promise<MountInfo[]> {
    const info = (await new Docker({ socketPath: engine.socketPath }).getContainer(name).inspect()) as { Mounts: MountInfo[] | null };
    return info.Mounts ?? [];
  }

  async function volumeDir(engine: Engine, name: string, destination: string): Promise<{ name: string; dir: string }> {
    const m = (await mountsOf(engine, name)).find((x) => x.Destination === destination);
    assert.ok(m?.Type === 'volume' && m.Name !== undefined && m.Source !== undefined, `${name} on ${engine.name} mounts a volume at ${destination}: ${JSON.stringify(m)}`);
    return { name: m.Name, dir: m.Source };
  }

  /** B staged everything the head holds for `svc`, and the marker reached the twin's named volume. */
  async function waitConverged(marker: string): Promise<void> {
    const procsTail = (): string => procs.map((p, i) => `--- process ${i} (exit ${p.child.exitCode ?? 'running'}) ---\n${p.lines.slice(-20).join('\n')}`).join('\n');
    try {
      await waitFor(`marker ${marker} in the twin's volume`, 60_000, async () => {
        const twin = await mountsOf(engB, 'svc').catch(() => []);
        const data = twin.find((m) => m.Destination === '/data');
        if (data?.Source === undefined) return undefined;
        const got = await readFile(join(data.Source, 'marker'), 'utf8').catch(() => null);
        return got?.trim() === marker ? true : undefined;
      });
      await waitFor('A published everything of svc and B staged the head seq', 60_000, async () => {
        const g = (await bucket.listGenerations()).at(-1);
        if (g === undefined) return undefined;
        const head = await bucket.readHead(g);
        const headSeq = head.status === 'ok' ? head.head.containers['svc'] ?? 0 : 0;
        const text = await readFile(join(base, 'state-b', 'pull', 'vol', 'applied.json'), 'utf8').catch(() => null);
        const staged = text === null ? undefined : (JSON.parse(text) as { containers: Record<string, { seq: number; generation: number }> }).containers['svc'];
        // The marker can come ahead of earlier writes (test/support/pusher-status.ts): also wait for the pusher.
        if (headSeq === 0 || !(await pusherCaughtUp(join(base, 'state-a'), 'vol', 'svc', headSeq))) return undefined;
        return staged?.generation === g && staged.seq === headSeq ? true : undefined;
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${procsTail()}`, { cause: err });
    }
  }

  async function assertVolumesEqual(when: string): Promise<void> {
    for (const dest of ['/data', '/anon']) {
      const a = await volumeDir(engA, 'svc', dest);
      const b = await volumeDir(engB, 'svc', dest);
      const [sa, sb] = [await snapshotTree(a.dir), await snapshotTree(b.dir)];
      const diff = diffTrees(sa, sb);
      assert.deepEqual(diff, [], `volume at ${dest} differs ${when}:\n${diff.slice(0, 20).join('\n')}`);
      assert.deepEqual(hardLinkGroups(sb), hardLinkGroups(sa), `hard links of the volume at ${dest} ${when}`);
      const [ra] = [...(await snapshotTree(join(a.dir, '..'))).values()];
      const [rb] = [...(await snapshotTree(join(b.dir, '..'))).values()];
      assert.deepEqual([rb?.mode, rb?.uid, rb?.gid], [ra?.mode, ra?.uid, ra?.gid], `the root of the volume at ${dest} differs ${when}`);
    }
  }

  /** How many commits of svc name a chunk list. */
  async function chunkedCommits(): Promise<number> {
    const g = await bucket.newestGeneration();
    assert.ok(g !== null, 'a generation');
    const head = await bucket.readHead(g);
    assert.ok(head.status === 'ok', 'a head');
    let n = 0;
    for (let s = 1; s <= head.head.seq; s++) {
      const rec = await bucket.readRecord(g, s as typeof head.head.seq);
      if (rec?.container === 'svc' && rec.chunks !== undefined) n++;
    }
    return n;
  }

  async function assertUpperEqual(): Promise<void> {
    const a = new Docker({ socketPath: engA.socketPath });
    const b = new Docker({ socketPath: engB.socketPath });
    const [ta, tb] = await Promise.all([readExport(await a.getContainer('svc').export()), readExport(await b.getContainer('svc').export())]);
    const diff = diffExports(ta, tb);
    assert.deepEqual(diff, [], `docker export of primary and twin differ:\n${diff.slice(0, 20).join('\n')}`);
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-e2e-vol-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    hookPort = await freePort();
    [engA, engB] = await Promise.all([startEngine({ name: 'e2e-vol-a' }), startEngine({ name: 'e2e-vol-b' })]);
    await importBusyboxImage(engA.socketPath, 'tl-busybox:e2e');
    await copyImage(engA.socketPath, engB.socketPath, 'tl-busybox:e2e');
    await dockerCli(engA, ['run', '-d', '--name', 'svc', '--label', 'twinlayer.enable=true', '--network', 'none', '-v', 'svcdata:/data', '-v', '/anon',
      'tl-busybox:e2e', 'sh', '-c', 'while true; do sleep 1; done']);
    await dockerCli(engA, ['volume', 'create', '--opt', 'type=tmpfs', '--opt', 'device=tmpfs', '--opt', 'o=size=1m', 'optvol']);
    await dockerCli(engA, ['run', '-d', '--name', 'optc', '--label', 'twinlayer.enable=true', '--network', 'none', '-v', 'optvol:/x',
      'tl-busybox:e2e', 'sh', '-c', 'while true; do sleep 1; done']);
    // A volume of another driver: a volume plugin of this test's own.
    plugin = await startVolumePlugin(join(base, 'plugin-volumes'));
    await dockerCli(engA, ['volume', 'create', '--driver', plugin.name, 'plugvol']);
    await dockerCli(engA, ['run', '-d', '--name', 'plugc', '--label', 'twinlayer.enable=true', '--network', 'none', '-v', 'plugvol:/p',
      'tl-busybox:e2e', 'sh', '-c', 'while true; do sleep 1; done']);
    await exec('echo lease-0 > /data/leases && echo anon-0 > /anon/state');
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: 'vol', log: silentLogger });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    await plugin?.close();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('creates the twin with its volumes: the named one by name, the anonymous one as the named volume recorded in the spec', async () => {
    start('push');
    start('pull');
    await exec('echo m1 > /data/marker');
    await waitConverged('m1');
    const twin = await mountsOf(engB, 'svc');
    const byDest = new Map(twin.map((m) => [m.Destination, m]));
    assert.equal(byDest.get('/data')?.Name, 'svcdata');
    assert.equal(byDest.get('/anon')?.Name, anonymousTwinVolumeName('svc', '/anon'));
    const spec = await bucket.getSpec('svc');
    assert.deepEqual((spec as { volumes?: unknown } | null)?.volumes, [{ name: anonymousTwinVolumeName('svc', '/anon'), destination: '/anon', anonymous: true }, { name: 'svcdata', destination: '/data' }]);
    await assertVolumesEqual('after the first sync');
  });

  it('replicates writes, overwrites, deletes, renames, dirs, links and modes in both volumes and the upper layer', async () => {
    await exec([
      'echo lease-1 >> /data/leases', 'mkdir -p /data/certs/old /data/empty', 'echo A > /data/certs/old/a.pem',
      'echo anon-1 > /anon/state', 'ln -s /etc/passwd /anon/abs', 'mkdir -p /etc/app', 'echo conf-1 > /etc/app/app.conf',
      'chown 101:102 /data', 'chmod 750 /data', 'head -c 3145728 /dev/urandom > /data/big.db', 'echo m2 > /data/marker',
    ].join(' && '));
    await waitConverged('m2');
    await assertVolumesEqual('after the first step');
    // The only file above the chunking threshold (1 MiB) lies in the volume: a commit naming a chunk list shipped it.
    assert.ok(await chunkedCommits() > 0, 'a commit of svc ships a file in chunks');
    await exec([
      'echo lease-2 >> /data/leases', 'rm -r /data/certs/old', 'rmdir /data/empty', 'mkdir /data/certs/new', 'echo B > /data/certs/new/b.pem',
      'ln /data/certs/new/b.pem /data/certs/b-link.pem', 'mv /anon/state /anon/state.renamed', 'rm /anon/abs', 'chmod 700 /anon',
      'echo conf-2 > /etc/app/app.conf', 'rm /etc/group', 'mv /etc/app /etc/app2', 'head -c 100000 /dev/urandom >> /data/big.db', 'echo m3 > /data/marker',
    ].join(' && '));
    await waitConverged('m3');
    await assertVolumesEqual('after the second step');
    await assertUpperEqual();
    // A deletion in a volume is a removal there, never an overlay whiteout device.
    const b = await volumeDir(engB, 'svc', '/data');
    const snap = await snapshotTree(b.dir);
    assert.ok(![...snap.values()].some((n) => n.type === 'other'), 'no device in the twin\'s volume');
    assert.ok(!snap.has('certs/old') && !snap.has('empty'));
  });

  it('the started twin reads the same volumes and upper layer as the primary', async () => {
    const read = 'cat /data/leases /data/certs/new/b.pem /data/certs/b-link.pem /anon/state.renamed /etc/app2/app.conf; ls -la /data /anon | sed 1d | awk \'{print $1, $3, $4, $NF}\'; test -e /etc/group && echo group || echo no-group';
    const want = await dockerCli(engA, ['exec', 'svc', 'sh', '-c', read]);
    await dockerCli(engB, ['start', 'svc']);
    try {
      const got = await dockerCli(engB, ['exec', 'svc', 'sh', '-c', read]);
      assert.equal(got, want);
      assert.match(got, /lease-2/);
      assert.match(got, /no-group/);
    } finally {
      await dockerCli(engB, ['stop', '-t', '1', 'svc']);
    }
    await assertVolumesEqual('after the twin ran');
  });

  async function refusedInStatus(name: string): Promise<string> {
    const status = await waitFor(`${name} refused in the status`, 30_000, async () => {
      const res = await fetch(`http://127.0.0.1:${hookPort}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const body = (await res.json()) as { containers?: Array<{ name: string; twin: string; reason?: string }> };
      const c = body.containers?.find((x) => x.name === name);
      return c?.twin === 'refused' ? c : undefined;
    });
    await assert.rejects(new Docker({ socketPath: engB.socketPath }).getContainer(name).inspect(), /no such container/i);
    return status.reason ?? '';
  }

  it('a local volume with driver options is not replicated: the standby reports it and creates no twin', async () => {
    assert.match(await refusedInStatus('optc'), /volume optvol has driver options/);
  });

  it('a volume of another driver is not replicated: the standby reports it and creates no twin', async () => {
    assert.match(await refusedInStatus('plugc'), new RegExp(`volume plugvol at /p uses the "${plugin.name}" driver; only local volumes are replicated`));
    // Both engines see the plugin's volumes (it is one process on this machine); the standby made no local one.
    const volumes = await dockerCli(engB, ['volume', 'ls', '--filter', 'driver=local', '--format', '{{.Name}}']);
    assert.ok(!volumes.split('\n').includes('plugvol'), 'no local volume made for it on the standby');
  });

  it('a spec naming a volume another container of the standby mounts gets no twin: staging never writes into it', async () => {
    await dockerCli(engB, ['create', '--name', 'other', '--network', 'none', '-v', 'hijack:/x', 'tl-busybox:e2e', 'true']);
    const spec = twinSpecSchema.parse(await bucket.getSpec('svc'));
    const rt = new DockerRuntime({ socketPath: engB.socketPath });
    const evil = { ...spec, name: 'evil', volumes: [{ name: 'hijack', destination: '/data' }] };
    const err = await rt.ensureTwin(evil, { trusted: true }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof TwinSpecRefusedError, String(err));
    assert.match(err.message, /volume hijack is mounted by container other on this host/);
    assert.deepEqual(await rt.twinState('evil'), { state: 'absent' });
  });
});
