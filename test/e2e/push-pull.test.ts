// Issue 2 end to end: two real Docker engines, the embedded S3 server, `twinlayer push` on engine A and
// `twinlayer pull` on engine B as real processes. Writes made with `docker exec` in a protected container on A
// reach the stopped twin on B; `docker export` of both are equal (less the files Docker manages). The puller and
// the pusher are killed (SIGKILL) mid-stream and restarted, and everything still converges. For each engine pair
// (issue 11): both on dockerd 20.10 with overlay2, both on dockerd 26 with the containerd image store, and a primary
// on overlay2 with its standby on the containerd store.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import Docker from 'dockerode';
import { startS3Server } from '../../src/s3server/index.js';
import { Bucket, S3BlobStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/log/logger.js';
import { startEngine, dockerCli, type Engine } from '../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../src/lab/busybox-image.js';
import { readExport, diffTrees } from '../support/export-tree.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../support/twinlayer.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { waitFor } from '../../src/lab/wait.js';
import { startFaultProxy, type FaultProxy } from '../../src/lab/fault-proxy.js';
import { ContainerNotFoundError } from '../../src/docker/index.js';
import { pusherCaughtUp, readPusherStatus } from '../support/pusher-status.js';
import { ENGINE_PAIRS, pairName, runtimeFor, twinlayerEngineEnv } from '../support/engine.js';

const BUCKET = 'twinlayer-e2e';
const TOKEN = 'e2e-token-0123456789abcdef';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

for (const pair of ENGINE_PAIRS) describe(`push on A, pull on B, through S3 (${pairName(pair)})`, { timeout: 600_000 }, () => {
  const [kindA, kindB] = pair;
  const tag = `${kindA.slice(0, 3)}-${kindB.slice(0, 3)}`;
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engA: Engine;
  let engB: Engine;
  let bucket: Bucket;
  let store: S3BlobStore;
  let keys: GroupKeys;
  const procs: TwinlayerProcess[] = [];
  let pusher: TwinlayerProcess;
  let puller: TwinlayerProcess;
  let hookPort: number;
  /** Each side reaches the bucket through its own proxy, so a test can cut one side off. */
  let proxyA: FaultProxy;
  let proxyB: FaultProxy;

  const env = (side: 'a' | 'b'): Record<string, string> => ({
    ...creds,
    TWINLAYER_ENDPOINT: side === 'a' ? proxyA.endpoint : proxyB.endpoint,
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
  const startPusher = (): TwinlayerProcess => {
    const p = spawnTwinlayer(['push'], env('a'));
    procs.push(p);
    return p;
  };
  const startPuller = (): TwinlayerProcess => {
    const p = spawnTwinlayer(['pull'], env('b'));
    procs.push(p);
    return p;
  };
  const exec = (cmd: string): Promise<string> => dockerCli(engA, ['exec', 'web', 'sh', '-c', cmd]);

  /** The head's seq for `web`, and B's durably staged seq for it. */
  async function positions(): Promise<{ head: number; staged: number; generation: number }> {
    const gens = await bucket.listGenerations();
    const g = gens.at(-1);
    if (g === undefined) return { head: 0, staged: -1, generation: 0 };
    const head = await bucket.readHead(g);
    const headSeq = head.status === 'ok' ? head.head.containers['web'] ?? 0 : 0;
    const text = await readFile(join(base, 'state-b', 'pull', 'e2e', 'applied.json'), 'utf8').catch(() => null);
    const applied = text ? (JSON.parse(text) as { containers: Record<string, { seq: number; generation: number }> }) : null;
    const mine = applied?.containers['web'];
    return { head: headSeq, staged: mine && mine.generation === g ? mine.seq : -1, generation: g };
  }

  /** The last lines of the puller's and the pusher's logs. */
  function daemonTails(lines: number): string {
    const tail = (p: TwinlayerProcess | undefined, name: string): string => `--- ${name} (exit ${p?.child.exitCode ?? 'running'}) ---\n${p?.lines.slice(-lines).join('\n') ?? '(not started)'}`;
    return `${tail(puller, 'puller')}\n${tail(pusher, 'pusher')}`;
  }

  /** Waits until `marker` holds `value` on the twin's upper dir, then until B staged everything in the head. */
  async function waitConverged(marker: string, value: string, timeoutMs = 60_000): Promise<void> {
    try {
      await waitFor(`marker ${marker}=${value} staged on B`, timeoutMs, async () => {
        const got = await readFile(join(await upperOf(engB, 'web'), marker), 'utf8').catch(() => null);
        return got?.trim() === value ? true : undefined;
      });
      // The marker can reach the twin before writes made ahead of it (test/support/pusher-status.ts): converged is
      // when the pusher holds nothing more (lag 0 at the head's seq) and B staged that seq.
      await waitFor('A published everything and B staged the head seq', timeoutMs, async () => {
        const p = await positions();
        return p.head > 0 && p.staged === p.head && (await pusherCaughtUp(join(base, 'state-a'), 'e2e', 'web', p.head)) ? true : undefined;
      });
    } catch (err) {
      // What the daemons said last is what explains a timeout.
      throw new Error(`${(err as Error).message}\n${daemonTails(25)}`, { cause: err });
    }
  }

  /** The container's upper dir on either image store, as the docker unit resolves it. */
  async function upperOf(engine: Engine, name: string): Promise<string> {
    return waitFor(`container ${name} on ${engine.name}`, 30_000, async () => {
      try {
        return (await runtimeFor(engine).resolveLayers(name)).upperDir;
      } catch (err) {
        if (err instanceof ContainerNotFoundError) return undefined;
        throw err;
      }
    });
  }

  async function assertExportsEqual(): Promise<void> {
    const a = new Docker({ socketPath: engA.socketPath });
    const b = new Docker({ socketPath: engB.socketPath });
    const [ta, tb] = await Promise.all([readExport(await a.getContainer('web').export()), readExport(await b.getContainer('web').export())]);
    const diff = diffTrees(ta, tb);
    // What the daemons said last is what explains a difference.
    assert.deepEqual(diff, [], `docker export of primary and twin differ:\n${diff.slice(0, 20).join('\n')}\n${daemonTails(80)}`);
    assert.ok(ta.size > 20, 'the export holds the image and the changes');
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-e2e-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    proxyA = await startFaultProxy(s3.endpoint);
    proxyB = await startFaultProxy(s3.endpoint);
    hookPort = await freePort();
    [engA, engB] = await Promise.all([startEngine({ name: `e2e-${tag}-a`, kind: kindA }), startEngine({ name: `e2e-${tag}-b`, kind: kindB })]);
    await importBusyboxImage(engA.socketPath, 'tl-busybox:e2e');
    await copyImage(engA.socketPath, engB.socketPath, 'tl-busybox:e2e');
    await dockerCli(engA, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:e2e', 'sh', '-c', 'while true; do sleep 1; done']);
    await dockerCli(engA, ['run', '-d', '--name', 'bystander', '--network', 'none', 'tl-busybox:e2e', 'sh', '-c', 'while true; do sleep 1; done']);
    store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    bucket = new Bucket(store, { signatures: keys.signatures(), prefix: 'twinlayer', group: 'e2e', log: silentLogger });
  });

  after(async () => {
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    const results = await Promise.allSettled([engA?.stop(), engB?.stop()]);
    await proxyA?.close();
    await proxyB?.close();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('creates the stopped twin on B and stages the first sync', async () => {
    pusher = startPusher();
    puller = startPuller();
    await exec('echo v1 > /etc/marker');
    await waitConverged('etc/marker', 'v1');
    const twin = (await new Docker({ socketPath: engB.socketPath }).getContainer('web').inspect()) as { State: { Running: boolean }; Config: { Labels: Record<string, string> }; HostConfig: { RestartPolicy: { Name: string } } };
    assert.equal(twin.State.Running, false);
    assert.equal(twin.Config.Labels['twinlayer.twin'], 'true');
    assert.ok(['no', ''].includes(twin.HostConfig.RestartPolicy.Name));
    const others = await new Docker({ socketPath: engB.socketPath }).listContainers({ all: true });
    assert.deepEqual(others.map((c) => c.Names[0]), ['/web'], 'only the labelled container is replicated');
    await assertExportsEqual();
  });

  it('picks up a protected container started after the pusher', async () => {
    await dockerCli(engA, ['run', '-d', '--name', 'late', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:e2e', 'sh', '-c', 'echo late > /late.txt; while true; do sleep 1; done']);
    const upper = await upperOf(engB, 'late');
    await waitFor('late.txt staged into the twin of the late container', 30_000, async () => ((await readFile(join(upper, 'late.txt'), 'utf8').catch(() => null)) === 'late\n' ? true : undefined));
    const twin = (await new Docker({ socketPath: engB.socketPath }).getContainer('late').inspect()) as { State: { Running: boolean } };
    assert.equal(twin.State.Running, false);
  });

  it('ships a protected container recreated under the same name in full', async () => {
    await dockerCli(engA, ['rm', '-f', 'late']);
    await dockerCli(engA, ['run', '-d', '--name', 'late', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:e2e', 'sh', '-c', 'echo again > /late2.txt; while true; do sleep 1; done']);
    // Its spec changed (another command), so the stopped twin is recreated from the new spec: look up its upper dir
    // on every probe.
    await waitFor('the recreated container\'s file on a twin of the recreated container, the old file gone', 30_000, async () => {
      const twin = (await new Docker({ socketPath: engB.socketPath }).getContainer('late').inspect()) as { Config: { Cmd: string[] } };
      if (!twin.Config.Cmd.join(' ').includes('late2.txt')) return undefined;
      const upper = await upperOf(engB, 'late');
      const fresh = await readFile(join(upper, 'late2.txt'), 'utf8').catch(() => null);
      const old = await readFile(join(upper, 'late.txt'), 'utf8').catch(() => null);
      return fresh === 'again\n' && old === null ? true : undefined;
    });
    // Removed, seen gone by a discovery (every 2 s), then run again: a new upper dir all the same, shipped in full.
    await dockerCli(engA, ['rm', '-f', 'late']);
    await new Promise((r) => setTimeout(r, 2500));
    await dockerCli(engA, ['run', '-d', '--name', 'late', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:e2e', 'sh', '-c', 'echo third > /late3.txt; while true; do sleep 1; done']);
    await waitFor('the third container\'s file on a twin of it, the second one\'s gone', 30_000, async () => {
      const twin = (await new Docker({ socketPath: engB.socketPath }).getContainer('late').inspect()) as { Config: { Cmd: string[] } };
      if (!twin.Config.Cmd.join(' ').includes('late3.txt')) return undefined;
      const upper = await upperOf(engB, 'late');
      const fresh = await readFile(join(upper, 'late3.txt'), 'utf8').catch(() => null);
      const old = await readFile(join(upper, 'late2.txt'), 'utf8').catch(() => null);
      return fresh === 'third\n' && old === null ? true : undefined;
    });
  });

  it('creates the twin of a protected container that never writes', async () => {
    await dockerCli(engA, ['run', '-d', '--name', 'quiet', '--label', 'twinlayer.enable=true', '--network', 'none', '--read-only', 'tl-busybox:e2e', 'sleep', '100000']);
    const twin = await waitFor('the twin of the quiet container on B', 30_000, async () => {
      const list = await new Docker({ socketPath: engB.socketPath }).listContainers({ all: true, filters: { name: ['^/quiet$'] } });
      return list[0];
    }, 100);
    assert.equal(twin.State, 'created');
    // Its first full checkpoint is published although empty, and B stages it: the twin's commit names the spec.
    await waitFor('an empty full commit of the quiet container staged on B', 30_000, async () => {
      const g = (await bucket.listGenerations()).at(-1);
      if (g === undefined) return undefined;
      const head = await bucket.readHead(g);
      const seq = head.status === 'ok' ? head.head.containers['quiet'] : undefined;
      if (seq === undefined || seq === 0) return undefined;
      const text = await readFile(join(base, 'state-b', 'pull', 'e2e', 'applied.json'), 'utf8').catch(() => null);
      const applied = text ? (JSON.parse(text) as { containers: Record<string, { seq: number; generation: number; specDigest?: string }> }) : null;
      const mine = applied?.containers['quiet'];
      return mine?.generation === g && mine.seq === seq && mine.specDigest !== undefined ? true : undefined;
    }, 100);
    assert.deepEqual(await readdir(await upperOf(engB, 'quiet')), [], 'nothing staged into the twin of a container that wrote nothing');
  });

  it('replicates writes, overwrites, appends, deletes of image files, a recreated dir, links and modes', async () => {
    await exec([
      'echo "listen 80" > /etc/app.conf',
      'echo "listen 8080" > /etc/app.conf',
      'echo extra >> /etc/app/b.conf',
      'rm /etc/app/a.conf',
      'rm -rf /srv/data && mkdir -p /srv/data/fresh && echo new > /srv/data/fresh/file',
      'ln -s /etc/app.conf /etc/app.link',
      'ln /etc/app.conf /etc/app.hard',
      ': > /etc/empty',
      'chmod 4750 /etc/app.conf',
      'chown 100000:100001 /etc/app/b.conf',
      'mkdir -p /var/lib/big && dd if=/dev/urandom of=/var/lib/big/blob bs=1024 count=3072 2>/dev/null',
      'mv /var/www/index.html /var/www/moved.html',
      'echo v2 > /etc/marker',
    ].join(' && '));
    await waitConverged('etc/marker', 'v2');
    await assertExportsEqual();
  });

  it('converges after the puller is killed with SIGKILL mid-stream and restarted', async () => {
    const writer = exec('i=0; while [ $i -lt 60 ]; do echo $i > /srv/data/fresh/n$((i % 7)); echo $i >> /etc/app.conf; i=$((i+1)); sleep 0.02; done; echo v3 > /etc/marker');
    await new Promise((r) => setTimeout(r, 400));
    await puller.kill('SIGKILL');
    const before = await positions();
    puller = startPuller();
    await writer;
    await waitConverged('etc/marker', 'v3');
    const after = await positions();
    assert.ok(after.staged >= before.staged, 'the staged seq never goes back');
    const twinUpper = await upperOf(engB, 'web');
    // overlay2: <id>/{diff,link,lower,work}; the containerd store: snapshots/<N>/{fs,work}.
    const own = kindB === 'overlay2' ? ['diff', 'link', 'lower', 'work'] : ['fs', 'work'];
    const tmpLeftovers = (await readdir(dirname(twinUpper))).filter((n) => !own.includes(n) && n !== 'twinlayer-tmp');
    assert.deepEqual(tmpLeftovers, [], 'nothing but Docker\'s own entries and our tmp dir beside the upper dir');
    await assertExportsEqual();
  });

  it('converges after the pusher is killed with SIGKILL at several points mid-stream and restarted', async () => {
    // Different moments of the pusher's life: right after start (first reconcile), mid-burst, during uploads.
    for (const [round, delayMs] of [[1, 150], [2, 450], [3, 900]] as const) {
      const writer = exec(`i=0; while [ $i -lt 40 ]; do echo p${round}-$i > /srv/data/fresh/p$((i % 5)); dd if=/dev/urandom of=/srv/data/fresh/bulk$((i % 3)) bs=65536 count=4 2>/dev/null; i=$((i+1)); sleep 0.02; done; rm -f /srv/data/fresh/p$((${round} % 5)); echo v4-${round} > /etc/marker`);
      await new Promise((r) => setTimeout(r, delayMs));
      await pusher.kill('SIGKILL');
      await writer;
      pusher = startPusher();
      await waitConverged('etc/marker', `v4-${round}`);
      await assertExportsEqual();
      await new Promise((r) => setTimeout(r, delayMs));
    }
  });

  it('a second puller on the same state dir exits at start', async () => {
    const second = spawnTwinlayer(['pull'], { ...env('b'), TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}` });
    procs.push(second);
    const code = await second.exited;
    assert.equal(code, 2);
    assert.match(second.lines.join('\n'), /another twinlayer process .* holds the state dir lock/);
  });

  it('pauses staging while the twin runs, and says so', async () => {
    await dockerCli(engB, ['start', 'web']);
    const upper = await upperOf(engB, 'web');
    const before = await readFile(join(upper, 'etc/marker'), 'utf8');
    await exec('echo v5 > /etc/marker');
    await waitFor('the head moves past what B staged', 30_000, async () => {
      const p = await positions();
      return p.head > p.staged ? true : undefined;
    });
    const status = await waitFor('status reports the paused twin', 10_000, async () => {
      const res = await fetch(`http://127.0.0.1:${hookPort}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const body = (await res.json()) as { containers?: Array<{ name: string; reason?: string; lag: number | null }> };
      const web = body.containers?.find((c) => c.name === 'web');
      return web?.reason?.includes('running') ? web : undefined;
    });
    assert.ok((status.lag ?? 0) > 0);
    assert.equal(await readFile(join(upper, 'etc/marker'), 'utf8'), before, 'nothing written into a running twin');
    await dockerCli(engB, ['stop', '-t', '1', 'web']);
    await waitConverged('etc/marker', 'v5');
  });

  it('the bucket unreachable for a while: the pusher keeps the changes, reports the lag, and catches up', async () => {
    await proxyA.refuse();
    await exec('i=0; while [ $i -lt 40 ]; do echo o$i > /srv/data/fresh/outage$((i % 4)); i=$((i+1)); sleep 0.05; done; echo v6 > /etc/marker');
    const lagging = await waitFor('the pusher status shows a growing lag', 30_000, async () => {
      const web = (await readPusherStatus(join(base, 'state-a'), 'e2e'))?.containers.find((c) => c.name === 'web');
      return web && web.lagMs > 1500 && web.consecutiveFailures > 0 ? web : undefined;
    }, 200);
    assert.ok(lagging.lagMs > 1500);
    assert.equal(pusher.child.exitCode, null, 'the pusher keeps running through the outage');
    await proxyA.accept();
    await waitConverged('etc/marker', 'v6');
    await assertExportsEqual();
  });

  it('MASTER with the bucket unreachable starts the twin from what is staged', async (t) => {
    await exec('echo v7 > /etc/marker');
    await waitConverged('etc/marker', 'v7');
    await proxyB.refuse();
    const res = await fetch(`http://127.0.0.1:${hookPort}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 }),
    });
    const body = (await res.json()) as { outcome: string; finalize: { bucketReachable: boolean; containers: Array<{ name: string; stagedSeq: number }> }; start: { containers: Array<{ name: string; ok: boolean }> } };
    t.diagnostic(`hook answer: ${JSON.stringify(body)}`);
    assert.equal(res.status, 200);
    assert.equal(body.outcome, 'booted');
    assert.equal(body.finalize.bucketReachable, false);
    assert.deepEqual(body.start.containers.map((c) => [c.name, c.ok]), [['late', true], ['quiet', true], ['web', true]]);
    for (const name of ['web', 'quiet']) {
      const twin = (await new Docker({ socketPath: engB.socketPath }).getContainer(name).inspect()) as { State: { Running: boolean } };
      assert.equal(twin.State.Running, true, `the twin of ${name} runs`);
    }
    const again = await fetch(`http://127.0.0.1:${hookPort}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 }),
    });
    assert.equal(((await again.json()) as { outcome: string }).outcome, 'booted', 'a second MASTER returns the same outcome and starts nothing');
    await proxyB.accept();
  });
});
