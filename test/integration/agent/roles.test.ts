// Issue 7 on real components without keepalived: two `twinlayer agent` processes (one per engine), the embedded S3
// server behind a fault proxy per host, VRRP notifications posted to each agent's hook over the wire. Failover,
// fencing of a primary cut off from the bucket, its divergent tail, failback, notify flaps and duplicates, split
// brain, a restart with the bucket down, and stale containers on a returning host.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { extract } from 'tar';
import { startS3Server } from '../../../src/s3server/index.js';
import { asDigest, Bucket, S3BlobStore } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../../src/lab/busybox-image.js';
import { waitFor } from '../../../src/lab/wait.js';
import { readExport, diffTrees } from '../../support/export-tree.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';

const BUCKET = 'twinlayer-agent';
const TOKEN = 'agent-token-0123456789abcdef';
const GROUP = 'roles';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
type Side = 'a' | 'b';

interface Status {
  role: string;
  generation: number | null;
  fenced: string | null;
  claim: { status: string; generation: number } | null;
  divergent: { container: string; key: string }[];
  lastError: string | null;
}
interface NotifyAnswer {
  offer: string;
  role: string;
  generation: number | null;
  promotion: { outcome: string; claim: { status: string; generation: number } | null; start: { containers: { name: string; ok: boolean }[] } | null } | null;
}
interface Inspect { Id: string; State: { Running: boolean; StartedAt: string }; Config: { Labels: Record<string, string> }; HostConfig: { RestartPolicy: { Name: string } } }

/** notify.sh's stamp: ns since the epoch (the clock, as notify.sh takes it), strictly increasing within this test process. */
let lastAt = BigInt(Date.now()) * 1_000_000n;
function nextAt(): bigint {
  const now = BigInt(Date.now()) * 1_000_000n;
  lastAt = now > lastAt ? now : lastAt + 1_000_000n;
  return lastAt;
}

describe('twinlayer agent: roles, fencing, failback', { timeout: 900_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  const eng: Partial<Record<Side, Engine>> = {};
  const proxy: Partial<Record<Side, FaultProxy>> = {};
  const port: Partial<Record<Side, number>> = {};
  const agents: Partial<Record<Side, TwinlayerProcess>> = {};
  const all: TwinlayerProcess[] = [];
  let store: S3BlobStore;
  let keys: GroupKeys;
  let bucket: Bucket;

  const engine = (side: Side): Engine => eng[side]!;
  const docker = (side: Side): Docker => new Docker({ socketPath: engine(side).socketPath });
  const inspect = async (side: Side, name = 'web'): Promise<Inspect | null> => {
    try {
      return (await docker(side).getContainer(name).inspect()) as Inspect;
    } catch {
      return null;
    }
  };
  const env = (side: Side): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: proxy[side]!.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: GROUP,
    TWINLAYER_HOST_ID: `host-${side}`,
    ...keys.env(`host-${side}`),
    TWINLAYER_DOCKER_SOCKET: engine(side).socketPath,
    TWINLAYER_STATE_DIR: join(base, `state-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    TWINLAYER_RECONCILE_INTERVAL_MS: '5000',
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port[side]!}`,
    TWINLAYER_HOOK_TOKEN: TOKEN,
    TWINLAYER_VRRP_STATE_FILE: join(base, `vrrp-${side}`),
    TWINLAYER_FENCE_INTERVAL_MS: '200',
    TWINLAYER_BACKUP_SETTLE_MS: '300',
    TWINLAYER_STOP_TIMEOUT_SECONDS: '1',
    TWINLAYER_LOG_LEVEL: 'debug',
  });

  async function startAgent(side: Side): Promise<TwinlayerProcess> {
    const p = spawnTwinlayer(['agent'], env(side));
    all.push(p);
    agents[side] = p;
    await p.waitForLine(/"msg":"agent started"/, 60_000);
    return p;
  }

  async function notify(side: Side, state: string, at: bigint | null = nextAt()): Promise<NotifyAnswer> {
    const body: Record<string, unknown> = { type: 'INSTANCE', name: 'VI_1', state, priority: 100 };
    if (at !== null) body['at'] = at.toString();
    const res = await fetch(`http://127.0.0.1:${port[side]!}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200, `hook of ${side} answered ${res.status}: ${await res.clone().text()}`);
    return (await res.json()) as NotifyAnswer;
  }

  async function status(side: Side): Promise<Status> {
    const res = await fetch(`http://127.0.0.1:${port[side]!}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(10_000) });
    return (await res.json()) as Status;
  }

  const waitRole = (side: Side, role: string, generation: number | null, timeoutMs = 30_000): Promise<Status> =>
    waitFor(`${side} ${role} of generation ${generation}`, timeoutMs, async () => {
      const s = await status(side);
      return s.role === role && (generation === null || s.generation === generation) ? s : undefined;
    }, 50);

  const exec = (side: Side, cmd: string): Promise<string> => dockerCli(engine(side), ['exec', 'web', 'sh', '-c', cmd]);

  async function upperFile(side: Side, rel: string): Promise<string | null> {
    const info = (await docker(side).getContainer('web').inspect()) as { GraphDriver: { Data: Record<string, string> | null } };
    const upper = info.GraphDriver.Data?.['UpperDir'];
    if (upper === undefined) return null;
    return readFile(join(upper, rel), 'utf8').catch(() => null);
  }

  /** The twin on `side` holds `rel` = content in its upper dir (staged), and is stopped. */
  const waitStaged = (side: Side, rel: string, content: string, timeoutMs = 30_000): Promise<true> =>
    waitFor(`${rel}=${JSON.stringify(content)} staged on ${side}`, timeoutMs, async () => {
      const i = await inspect(side);
      if (i === null || i.State.Running || i.Config.Labels['twinlayer.twin'] !== 'true') return undefined;
      return (await upperFile(side, rel)) === content ? true : undefined;
    }, 50);

  async function assertExportsEqual(primary: Side, twin: Side): Promise<void> {
    const [tp, tt] = await Promise.all([readExport(await docker(primary).getContainer('web').export()), readExport(await docker(twin).getContainer('web').export())]);
    const diff = diffTrees(tp, tt);
    assert.deepEqual(diff, [], `docker export of ${primary} and ${twin} differ:\n${diff.slice(0, 20).join('\n')}`);
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-agent-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    proxy.a = await startFaultProxy(s3.endpoint);
    proxy.b = await startFaultProxy(s3.endpoint);
    port.a = await freePort();
    port.b = await freePort();
    [eng.a, eng.b] = await Promise.all([startEngine({ name: 'ag-a' }), startEngine({ name: 'ag-b' })]);
    await importBusyboxImage(engine('a').socketPath, 'tl-busybox:agent');
    await copyImage(engine('a').socketPath, engine('b').socketPath, 'tl-busybox:agent');
    // A service that ends at once on SIGTERM (PID 1 has no default handler), with a restart policy to restore.
    await dockerCli(engine('a'), ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--label', 'app=web', '--restart', 'unless-stopped', '--network', 'none',
      'tl-busybox:agent', 'sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.2; done"]);
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: GROUP, log: silentLogger });
  });

  after(async () => {
    await Promise.allSettled(all.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([eng.a?.stop(), eng.b?.stop()]);
    await proxy.a?.close();
    await proxy.b?.close();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('the first MASTER claims generation 1 and protects the running container; the standby keeps a full-replica twin', async () => {
    await Promise.all([startAgent('a'), startAgent('b')]);
    assert.equal((await status('a')).role, 'standby', 'no VRRP state and an empty bucket: standby');
    const answer = await notify('a', 'MASTER');
    assert.equal(answer.role, 'primary');
    assert.deepEqual(answer.promotion?.claim, { status: 'won', generation: 1 });
    const claim = await bucket.readClaim(1 as never);
    assert.equal(claim?.host, 'host-a');
    await exec('a', 'echo v1 > /etc/marker');
    await waitStaged('b', 'etc/marker', 'v1\n');
    const twin = (await inspect('b'))!;
    assert.equal(twin.Config.Labels['twinlayer.enable'], 'true', 'the twin carries the opt-in label');
    assert.equal(twin.Config.Labels['app'], 'web');
    assert.ok(['no', ''].includes(twin.HostConfig.RestartPolicy.Name), 'a twin runs with restart policy no');
    assert.equal((await status('b')).role, 'standby');
  });

  it('failover: B claims generation 2, boots the twin with the primary\'s restart policy; A, cut off from the bucket, publishes nothing more', async () => {
    await proxy.a!.refuse();
    await exec('a', 'echo never-shipped > /etc/divergent && echo v2-lost > /etc/marker');
    const answer = await notify('b', 'MASTER');
    assert.equal(answer.role, 'primary');
    assert.deepEqual(answer.promotion?.claim, { status: 'won', generation: 2 });
    assert.equal(answer.promotion?.outcome, 'booted');
    const web = (await inspect('b'))!;
    assert.equal(web.State.Running, true);
    assert.equal(web.HostConfig.RestartPolicy.Name, 'unless-stopped', 'the promoted twin has its restart policy back');
    assert.equal((await exec('b', 'cat /etc/marker')).trim(), 'v1');
    await assert.rejects(exec('b', 'cat /etc/divergent'), 'what never reached the bucket is not on B');
    const claim = await bucket.readClaim(2 as never);
    assert.equal(claim?.host, 'host-b');
    assert.equal(claim?.from.generation, 1);
    // B pushes in generation 2, starting with a full checkpoint.
    await waitFor('a full checkpoint of web in generation 2', 30_000, async () => {
      for await (const item of bucket.listRecords(2 as never, 0)) if ('record' in item && item.record.container === 'web' && item.record.kind === 'full') return true;
      return undefined;
    });
  });

  it('A rejoins: fenced, stops its container, saves the divergent tail byte-exact, becomes B\'s standby', async () => {
    await proxy.a!.accept();
    const s = await waitRole('a', 'standby', 2, 60_000);
    assert.equal(s.divergent.length, 1, `one divergent tail reported: ${JSON.stringify(s.divergent)}`);
    assert.equal(s.divergent[0]?.container, 'web');
    await waitStaged('a', 'etc/marker', 'v1\n', 60_000);
    // The tail in the bucket holds exactly what never reached it.
    const items = await bucket.listDivergent('host-a');
    const rec = items.map((i) => ('record' in i ? i.record : null)).find((r) => r?.container === 'web');
    assert.ok(rec, `a divergent record of web: ${JSON.stringify(items)}`);
    assert.equal(rec.generation, 1);
    assert.equal(rec.claimGeneration, 2);
    const file = join(base, 'divergent.tar.gz');
    await bucket.downloadBlob(asDigest(rec.digest), rec.size, file);
    const out = join(base, 'divergent-out');
    await mkdir(out, { recursive: true });
    await extract({ file, cwd: out });
    assert.equal(await readFile(join(out, 'etc/divergent'), 'utf8'), 'never-shipped\n');
    assert.equal(await readFile(join(out, 'etc/marker'), 'utf8'), 'v2-lost\n');
    // ... and is not in B's container.
    await assert.rejects(exec('b', 'cat /etc/divergent'));
    // A follows B: B's writes reach A's twin.
    await exec('b', 'echo v3 > /etc/marker');
    await waitStaged('a', 'etc/marker', 'v3\n');
    assert.ok(['no', ''].includes((await inspect('a'))!.HostConfig.RestartPolicy.Name));
  });

  it('failback: B told BACKUP, A told MASTER: A claims generation 3, B demotes to a standby, exports equal', async () => {
    // A's keepalived left MASTER when it went down and comes back as BACKUP: that ends A's fence latch.
    await notify('a', 'BACKUP');
    await notify('b', 'BACKUP');
    const answer = await notify('a', 'MASTER');
    assert.equal(answer.role, 'primary');
    assert.equal(answer.promotion?.claim?.generation, 3);
    assert.equal((await exec('a', 'cat /etc/marker')).trim(), 'v3');
    await waitRole('b', 'standby', 3, 30_000);
    await exec('a', 'echo v4 > /etc/marker');
    await waitStaged('b', 'etc/marker', 'v4\n');
    await assertExportsEqual('a', 'b');
    assert.equal((await status('b')).divergent.length, 0, 'B held nothing beyond A\'s claim');
  });

  it('notify calls late, twice and out of order: the latest state wins, the container runs once', async () => {
    const startedAt = (await inspect('a'))!.State.StartedAt;
    const t1 = nextAt();
    assert.equal((await notify('a', 'MASTER', t1)).offer, 'accepted');
    assert.equal((await notify('a', 'MASTER', t1)).offer, 'duplicate');
    // BACKUP then MASTER within the settle time: stays primary, nothing stopped or restarted.
    await notify('a', 'BACKUP');
    await notify('a', 'MASTER');
    // A BACKUP stamped before the latest MASTER arrives late: stale, ignored.
    const old = nextAt() - 10_000_000n;
    const late = await notify('a', 'BACKUP', old);
    assert.equal(late.offer, 'stale');
    await new Promise((r) => setTimeout(r, 1000));
    const s = await status('a');
    assert.equal(s.role, 'primary');
    const web = (await inspect('a'))!;
    assert.equal(web.State.Running, true);
    assert.equal(web.State.StartedAt, startedAt, 'the container was not restarted');
    // Concurrent duplicates on the standby do nothing.
    const answers = await Promise.all([1, 2, 3].map(() => notify('b', 'BACKUP')));
    assert.ok(answers.every((x) => x.role === 'standby'));
  });

  it('split brain: both MASTER with the bucket reachable: within 2 s exactly one host owns the newest generation and runs the container', async () => {
    const answer = await notify('b', 'MASTER');
    assert.equal(answer.role, 'primary');
    const newest = answer.promotion?.claim?.generation;
    assert.equal(newest, 4);
    const claimedAt = Date.parse((await bucket.readClaim(4 as never))!.claimedAt);
    const stoppedAt = await waitFor('A stops its container', 10_000, async () => ((await inspect('a'))?.State.Running === false ? Date.now() : undefined), 20);
    assert.ok(stoppedAt - claimedAt <= 2000, `A stopped ${stoppedAt - claimedAt} ms after B's claim`);
    const sa = await waitRole('a', 'standby', 4);
    assert.ok(sa.fenced !== null, 'A stays down although VRRP still says MASTER');
    assert.equal((await inspect('b'))!.State.Running, true);
    assert.equal((await bucket.listGenerations()).at(-1), 4);
    assert.equal((await bucket.readClaim(4 as never))?.host, 'host-b');
  });

  it('an agent restarted with the bucket down, then MASTER: every twin boots; the claim is made when the bucket answers', async () => {
    // A is B's standby (fenced latch). Restart A's agent with A cut off from the bucket.
    await agents.a!.kill('SIGKILL');
    await proxy.a!.refuse();
    await writeFile(join(base, 'vrrp-a'), `BACKUP ${nextAt()}\n`);
    await startAgent('a');
    assert.equal((await status('a')).role, 'standby');
    await notify('b', 'BACKUP');
    const answer = await notify('a', 'MASTER');
    assert.equal(answer.role, 'primary');
    assert.equal(answer.promotion?.claim?.status, 'pending');
    assert.deepEqual(answer.promotion?.start?.containers.map((c) => [c.name, c.ok]), [['web', true]]);
    assert.equal((await inspect('a'))!.State.Running, true);
    await proxy.a!.accept();
    const s = await waitFor('A\'s late claim', 30_000, async () => {
      const st = await status('a');
      return st.claim?.status === 'owner' ? st : undefined;
    });
    assert.equal(s.generation, 5);
    await waitRole('b', 'standby', 5, 30_000);
  });

  it('a returning host whose Docker restarted its stale container stops it within 2 s of the agent\'s start', async () => {
    // A is primary of generation 5. Its agent dies; B takes over; A's container keeps running (as after a reboot
    // with restart policies); A's agent starts again, told BACKUP by the state file.
    await agents.a!.kill('SIGKILL');
    const answer = await notify('b', 'MASTER');
    assert.equal(answer.promotion?.claim?.generation, 6);
    assert.equal((await inspect('a'))!.State.Running, true);
    await writeFile(join(base, 'vrrp-a'), `BACKUP ${nextAt()}\n`);
    const p = spawnTwinlayer(['agent'], env('a'));
    all.push(p);
    agents.a = p;
    const first = await p.waitForLine(/"msg"/, 30_000);
    const startedAt = Date.parse((JSON.parse(first) as { time: string }).time);
    const stoppedAt = await waitFor('A\'s stale container stopped', 10_000, async () => ((await inspect('a'))?.State.Running === false ? Date.now() : undefined), 20);
    assert.ok(stoppedAt - startedAt <= 2000, `stopped ${stoppedAt - startedAt} ms after the agent's first log line`);
    await waitRole('a', 'standby', 6, 30_000);
  });

  it('an agent that starts with a MASTER in its state file older than another host\'s claim stays down; a MASTER newer than the claim promotes it', async () => {
    // A is B's standby of generation 6. Its agent dies with its keepalived, which had last recorded MASTER: a record
    // from before B's claim (a host coming back after it lost the generation, the file kept).
    const claim6 = (await bucket.readClaim(6 as never))!;
    await agents.a!.kill('SIGKILL');
    const before = BigInt(Date.parse(claim6.claimedAt) - 5_000) * 1_000_000n;
    await writeFile(join(base, 'vrrp-a'), `MASTER ${before}\n`);
    await startAgent('a');
    const s = await waitRole('a', 'standby', 6);
    assert.ok(s.fenced?.includes('VRRP state file says MASTER'), `A stays down on a superseded MASTER: ${JSON.stringify(s)}`);
    assert.equal((await bucket.listGenerations()).at(-1), 6, 'A claimed nothing');
    assert.equal((await inspect('a'))!.State.Running, false);
    assert.equal((await inspect('b'))!.State.Running, true);
    assert.equal((await status('b')).role, 'primary');
    // A follows B as a working standby.
    await exec('b', 'echo v7 > /etc/marker');
    await waitStaged('a', 'etc/marker', 'v7\n');
    assert.equal((await bucket.listGenerations()).at(-1), 6);
    // keepalived, back, says BACKUP first: the latch is lifted.
    await notify('a', 'BACKUP');
    assert.equal((await status('a')).fenced, null);

    // A MASTER recorded after B's claim is news (keepalived made A MASTER while its agent was down): A promotes.
    await agents.a!.kill('SIGKILL');
    await notify('b', 'BACKUP');
    await writeFile(join(base, 'vrrp-a'), `MASTER ${nextAt()}\n`);
    await startAgent('a');
    const p = await waitRole('a', 'primary', 7);
    assert.equal(p.fenced, null);
    assert.equal((await bucket.readClaim(7 as never))?.host, 'host-a');
    assert.equal((await inspect('a'))!.State.Running, true);
    assert.equal((await exec('a', 'cat /etc/marker')).trim(), 'v7');
    await waitRole('b', 'standby', 7);
  });

  it('a one-sided VRRP blip (MASTER then BACKUP on the standby only): the blip\'s claim fences the primary, the blipped host releases, the fenced MASTER takes over again', async () => {
    // A is primary of generation 7 and VRRP MASTER; B is its standby. B alone sees MASTER, then BACKUP.
    const answer = await notify('b', 'MASTER');
    assert.equal(answer.promotion?.claim?.generation, 8);
    await notify('b', 'BACKUP');
    // A was fenced by generation 8 while still MASTER; B left MASTER with no successor and released 8; A takes over.
    const sa = await waitRole('a', 'primary', 9, 30_000);
    assert.equal(sa.fenced, null);
    await waitRole('b', 'standby', 9, 30_000);
    assert.equal((await inspect('a'))!.State.Running, true);
    assert.equal((await inspect('b'))!.State.Running, false);
    const release = await bucket.readRelease(8 as never);
    assert.equal(release?.host, 'host-b');
    await exec('a', 'echo v9 > /etc/marker');
    await waitStaged('b', 'etc/marker', 'v9\n');
  });
});
