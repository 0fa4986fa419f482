// Claim race (issue 7): two agents, both standbys of the same (empty) bucket, are told MASTER at the same moment.
// Both claim generation 1 with a conditional create; exactly one wins and runs the container, the other stays the
// standby (fenced while VRRP says MASTER) and turns its own copy of the container into a twin of the winner's.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startS3Server } from '../../../src/s3server/index.js';
import { Bucket, S3BlobStore, type Generation } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../../src/lab/busybox-image.js';
import { waitFor } from '../../../src/lab/wait.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';

const BUCKET = 'twinlayer-race';
const TOKEN = 'race-token-0123456789abcdef';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
type Side = 'a' | 'b';

interface Answer { role: string; promotion: { outcome: string; claim: { status: string; generation: number; holder?: string | null } | null } | null }

describe('twinlayer agent: claim race', { timeout: 300_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  const eng: Partial<Record<Side, Engine>> = {};
  const port: Partial<Record<Side, number>> = {};
  const procs: TwinlayerProcess[] = [];
  let store: S3BlobStore;
  let keys: GroupKeys;

  const env = (side: Side): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: 'race',
    TWINLAYER_HOST_ID: `host-${side}`,
    ...keys.env(`host-${side}`),
    TWINLAYER_DOCKER_SOCKET: eng[side]!.socketPath,
    TWINLAYER_STATE_DIR: join(base, `state-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: '50',
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port[side]!}`,
    TWINLAYER_HOOK_TOKEN: TOKEN,
    TWINLAYER_VRRP_STATE_FILE: join(base, `vrrp-${side}`),
    TWINLAYER_FENCE_INTERVAL_MS: '200',
    TWINLAYER_STOP_TIMEOUT_SECONDS: '1',
  });
  const running = async (side: Side): Promise<{ running: boolean; twin: boolean } | null> => {
    try {
      const i = (await new Docker({ socketPath: eng[side]!.socketPath }).getContainer('web').inspect()) as { State: { Running: boolean }; Config: { Labels: Record<string, string> } };
      return { running: i.State.Running, twin: i.Config.Labels['twinlayer.twin'] === 'true' };
    } catch {
      return null;
    }
  };
  async function master(side: Side): Promise<Answer> {
    const res = await fetch(`http://127.0.0.1:${port[side]!}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100, at: `${BigInt(Date.now()) * 1_000_000n}` }),
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200);
    return (await res.json()) as Answer;
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-race-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    port.a = await freePort();
    port.b = await freePort();
    [eng.a, eng.b] = await Promise.all([startEngine({ name: 'race-a' }), startEngine({ name: 'race-b' })]);
    await importBusyboxImage(eng.a.socketPath, 'tl-busybox:race');
    await copyImage(eng.a.socketPath, eng.b.socketPath, 'tl-busybox:race');
    // The same service was started on both hosts (a first install done twice): only one may keep it.
    for (const side of ['a', 'b'] as const) {
      await dockerCli(eng[side]!, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--restart', 'always', '--network', 'none',
        'tl-busybox:race', 'sh', '-c', `echo ${side} > /etc/owner; trap 'exit 0' TERM; while true; do sleep 0.2; done`]);
    }
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([eng.a?.stop(), eng.b?.stop()]);
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('two agents told MASTER at once: exactly one claim exists; the loser stays down and becomes the winner\'s standby', async () => {
    for (const side of ['a', 'b'] as const) {
      const p = spawnTwinlayer(['agent'], env(side));
      procs.push(p);
      await p.waitForLine(/"msg":"agent started"/, 60_000);
    }
    const [ra, rb] = await Promise.all([master('a'), master('b')]);
    const outcomes = [ra, rb].map((r) => r.promotion?.outcome);
    const winners = [ra, rb].filter((r) => r.promotion?.claim?.status === 'won');
    assert.equal(winners.length, 1, `exactly one winner: ${JSON.stringify([ra, rb])}`);
    assert.deepEqual([...outcomes].sort(), ['booted', 'lost-claim']);
    const winner: Side = ra.promotion?.claim?.status === 'won' ? 'a' : 'b';
    const loser: Side = winner === 'a' ? 'b' : 'a';
    const bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: 'race', log: silentLogger });
    assert.deepEqual(await bucket.listGenerations(), [1]);
    assert.equal((await bucket.readClaim(1 as Generation))?.host, `host-${winner}`);
    assert.equal((winner === 'a' ? rb : ra).role, 'standby');
    // The loser's own copy is stopped, its tail saved, and it comes back as a stopped twin of the winner's.
    await waitFor('the loser\'s container to become a stopped twin', 30_000, async () => {
      const s = await running(loser);
      return s !== null && !s.running && s.twin ? true : undefined;
    });
    assert.deepEqual(await running(winner), { running: true, twin: false });
    const tails = await bucket.listDivergent(`host-${loser}`);
    assert.equal(tails.length, 1, 'what the loser\'s container held is saved, not discarded');
  });
});
