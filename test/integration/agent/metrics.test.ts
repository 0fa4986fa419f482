// Issue 12 item 7 on real components: two `twinlayer agent` processes (one per engine), the embedded S3 server behind
// a fault proxy per host, GET /metrics of each agent's hook scraped over the wire after real commits. The standby's
// replication lag is above 0 (seconds and commits) while it cannot download the commit's blob and back at 0 once the
// commit is staged; the primary's lag likewise while it cannot upload; the bucket requests counted by kind and the
// failures by kind move as the bucket saw them; every scrape parses strictly as Prometheus text.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startS3Server } from '../../../src/s3server/index.js';
import { startEngine, dockerCli, type Engine } from '../../../src/lab/engine.js';
import { importBusyboxImage, copyImage } from '../../../src/lab/busybox-image.js';
import { waitFor } from '../../../src/lab/wait.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { maybeSample, parsePrometheusText, sampleValue, type Family } from '../../support/prom-text.js';

const BUCKET = 'twinlayer-metrics';
const TOKEN = 'metrics-token-0123456789abcdef';
const GROUP = 'metrics';
const creds = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
type Side = 'a' | 'b';
const BLOBS = /\/blobs\//;

let lastAt = BigInt(Date.now()) * 1_000_000n;
function nextAt(): bigint {
  const now = BigInt(Date.now()) * 1_000_000n;
  lastAt = now > lastAt ? now : lastAt + 1_000_000n;
  return lastAt;
}

describe('twinlayer agent: GET /metrics after real commits', { timeout: 600_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  const eng: Partial<Record<Side, Engine>> = {};
  const proxy: Partial<Record<Side, FaultProxy>> = {};
  const port: Partial<Record<Side, number>> = {};
  /** The standby also serves its metrics alone on metricsListen. */
  let metricsPort: number;
  const all: TwinlayerProcess[] = [];
  let keys: GroupKeys;

  const engine = (side: Side): Engine => eng[side]!;
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
    ...(side === 'b' ? { TWINLAYER_METRICS_LISTEN: `127.0.0.1:${metricsPort}` } : {}),
  });

  /** One scrape, parsed strictly (a malformed exposition fails the test here). No token: /metrics needs none. */
  async function scrape(side: Side): Promise<Map<string, Family>> {
    const res = await fetch(`http://127.0.0.1:${port[side]!}/metrics`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(await res.text());
  }
  const lag = (f: Map<string, Family>, side: 'primary' | 'standby'): { seconds: number | undefined; commits: number | undefined } => ({
    seconds: maybeSample(f, 'twinlayer_replication_lag_seconds', { container: 'web', side }),
    commits: maybeSample(f, 'twinlayer_replication_lag_commits', { container: 'web', side }),
  });
  const counter = (f: Map<string, Family>, name: string, labels: Record<string, string>): number => sampleValue(f, name, labels);

  async function notify(side: Side, state: string): Promise<{ role: string }> {
    const res = await fetch(`http://127.0.0.1:${port[side]!}/v1/vrrp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state, priority: 100, at: nextAt().toString() }),
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200, `hook of ${side} answered ${res.status}: ${await res.clone().text()}`);
    return (await res.json()) as { role: string };
  }

  const exec = (cmd: string): Promise<string> => dockerCli(engine('a'), ['exec', 'web', 'sh', '-c', cmd]);

  async function twinFile(rel: string): Promise<string | null> {
    const info = (await new Docker({ socketPath: engine('b').socketPath }).getContainer('web').inspect().catch(() => null)) as { GraphDriver: { Data: Record<string, string> | null } } | null;
    const upper = info?.GraphDriver.Data?.['UpperDir'];
    if (upper === undefined) return null;
    return readFile(join(upper, rel), 'utf8').catch(() => null);
  }
  const waitStaged = (rel: string, content: string): Promise<true> =>
    waitFor(`${rel}=${JSON.stringify(content)} staged on b`, 60_000, async () => ((await twinFile(rel)) === content ? true : undefined), 50);

  /** Both sides caught up on `web`: lag 0 in seconds and commits on each. */
  const waitCaughtUp = (what: string): Promise<{ a: Map<string, Family>; b: Map<string, Family> }> =>
    waitFor(`both sides caught up (${what})`, 60_000, async () => {
      const [a, b] = [await scrape('a'), await scrape('b')];
      const [la, lb] = [lag(a, 'primary'), lag(b, 'standby')];
      return la.seconds === 0 && la.commits === 0 && lb.seconds === 0 && lb.commits === 0 ? { a, b } : undefined;
    }, 100);

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-metrics-'));
    keys = await GroupKeys.create(join(base, 'keys'), ['host-a', 'host-b']);
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    proxy.a = await startFaultProxy(s3.endpoint);
    proxy.b = await startFaultProxy(s3.endpoint);
    port.a = await freePort();
    port.b = await freePort();
    metricsPort = await freePort();
    [eng.a, eng.b] = await Promise.all([startEngine({ name: 'mx-a' }), startEngine({ name: 'mx-b' })]);
    await importBusyboxImage(engine('a').socketPath, 'tl-busybox:metrics');
    await copyImage(engine('a').socketPath, engine('b').socketPath, 'tl-busybox:metrics');
    await dockerCli(engine('a'), ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none',
      'tl-busybox:metrics', 'sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.2; done"]);
    for (const side of ['a', 'b'] as const) {
      const p = spawnTwinlayer(['agent'], env(side));
      all.push(p);
    }
    await Promise.all(all.map((p) => p.waitForLine(/"msg":"agent started"/, 60_000)));
    assert.equal((await notify('a', 'MASTER')).role, 'primary');
  });

  after(async () => {
    await Promise.allSettled(all.map((p) => p.kill('SIGKILL')));
    const results = await Promise.allSettled([eng.a?.stop(), eng.b?.stop()]);
    await proxy.a?.close();
    await proxy.b?.close();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('after real commits both sides report lag 0, commit and checkpoint ages, their role, and requests by kind', async () => {
    // The first full checkpoint staged first, so that the write below is a commit of its own (a delta). (A lag of 0 on
    // the primary does not say the full is out: a first sync is a scan, not a change seen.)
    await waitFor('the first full checkpoint staged on b', 60_000, async () => (counter(await scrape('b'), 'twinlayer_commits_staged_total', { kind: 'full' }) >= 1 ? true : undefined), 100);
    const first = await waitCaughtUp('the first full checkpoint');
    assert.ok(counter(first.a, 'twinlayer_commits_published_total', { kind: 'full' }) >= 1);
    const deltas = counter(first.a, 'twinlayer_commits_published_total', { kind: 'delta' });
    await exec('echo v1 > /etc/marker');
    await waitStaged('etc/marker', 'v1\n');
    const { a, b } = await waitCaughtUp('v1');
    assert.equal(counter(a, 'twinlayer_agent_role', { role: 'primary' }), 1);
    assert.equal(counter(b, 'twinlayer_agent_role', { role: 'standby' }), 1);
    assert.equal(maybeSample(a, 'twinlayer_replication_lag_seconds', { side: 'standby' }), undefined, 'the primary reports no standby side');
    assert.equal(maybeSample(b, 'twinlayer_replication_lag_seconds', { side: 'primary' }), undefined, 'the standby reports no primary side');
    for (const [f, side] of [[a, 'primary'], [b, 'standby']] as const) {
      const age = sampleValue(f, 'twinlayer_last_commit_age_seconds', { container: 'web', side });
      assert.ok(age >= 0 && age < 120, `${side}: last commit age ${age}`);
      assert.ok(sampleValue(f, 'twinlayer_checkpoint_age_seconds', { container: 'web', side }) >= age, `${side}: the full checkpoint came first`);
    }
    assert.ok(counter(a, 'twinlayer_commits_published_total', { kind: 'full' }) >= 1);
    assert.ok(counter(a, 'twinlayer_commits_published_total', { kind: 'delta' }) > deltas, 'the write went out as a delta');
    assert.ok(counter(b, 'twinlayer_commits_staged_total', { kind: 'full' }) >= 1);
    assert.ok(counter(b, 'twinlayer_commits_staged_total', { kind: 'delta' }) >= 1);
    // The primary uploads (PUT) and reads claims; the standby polls (GET), lists the journal (LIST); both checked the
    // bucket at start (HEAD). Neither deleted anything.
    for (const [f, kinds] of [[a, ['PUT', 'GET', 'HEAD']], [b, ['GET', 'LIST', 'HEAD']]] as const) {
      for (const kind of kinds) assert.ok(counter(f, 'twinlayer_bucket_requests_total', { kind }) > 0, kind);
    }
    assert.ok(counter(a, 'twinlayer_bucket_bytes_total', { direction: 'up' }) > 0);
    assert.ok(counter(b, 'twinlayer_bucket_bytes_total', { direction: 'down' }) > 0);
    assert.ok(a.has('process_resident_memory_bytes') && b.has('process_resident_memory_bytes'), 'process metrics on both');
    // metricsListen serves the same registry alone, without a token; the hook's routes are not there.
    const alone = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
    const f = parsePrometheusText(await alone.text());
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_commits', { container: 'web', side: 'standby' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_agent_role', { role: 'standby' }), 1);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/status`, { signal: AbortSignal.timeout(10_000) })).status, 404);
  });

  it('a standby that cannot download the blob: lag above 0 and growing, stage and bucket failures rising; back to 0 once staged', async () => {
    const b0 = await scrape('b');
    proxy.b!.fail('error500', Infinity, { method: 'GET', path: BLOBS });
    try {
      await exec('echo v2 > /etc/marker');
      const behind = await waitFor('the standby reports the commit it cannot stage', 60_000, async () => {
        const f = await scrape('b');
        const l = lag(f, 'standby');
        return l.commits !== undefined && l.commits >= 1 && l.seconds !== undefined && l.seconds > 0 ? l : undefined;
      }, 100);
      const failed = await waitFor('stage and bucket failures on the standby', 60_000, async () => {
        const f = await scrape('b');
        const grew = counter(f, 'twinlayer_failures_total', { kind: 'stage' }) > counter(b0, 'twinlayer_failures_total', { kind: 'stage' })
          && counter(f, 'twinlayer_failures_total', { kind: 'bucket' }) > counter(b0, 'twinlayer_failures_total', { kind: 'bucket' });
        return grew ? f : undefined;
      }, 200);
      const later = lag(failed, 'standby');
      assert.ok(later.seconds! > behind.seconds!, `the lag grows while nothing is staged: ${behind.seconds} then ${later.seconds}`);
      assert.ok(later.commits! >= 1);
      assert.equal(await twinFile('etc/marker'), 'v1\n', 'really behind: the twin still holds v1');
      assert.ok(counter(failed, 'twinlayer_bucket_requests_total', { kind: 'GET' }) > counter(b0, 'twinlayer_bucket_requests_total', { kind: 'GET' }));
      const a = await scrape('a');
      assert.deepEqual(lag(a, 'primary'), { seconds: 0, commits: 0 }, 'the primary published it: no lag there');
    } finally {
      proxy.b!.pass();
    }
    await waitStaged('etc/marker', 'v2\n');
    const { b } = await waitCaughtUp('v2');
    assert.ok(counter(b, 'twinlayer_commits_staged_total', { kind: 'delta' }) > counter(b0, 'twinlayer_commits_staged_total', { kind: 'delta' }));
    assert.ok(counter(b, 'twinlayer_bucket_requests_total', { kind: 'LIST' }) > counter(b0, 'twinlayer_bucket_requests_total', { kind: 'LIST' }), 'the journal was listed for the new record');
  });

  it('a primary that cannot upload: its lag above 0 and ship failures rising; back to 0 once published and staged', async () => {
    const a0 = await scrape('a');
    proxy.a!.fail('error500', Infinity, { method: 'PUT', path: BLOBS });
    try {
      await exec('echo v3 > /etc/marker');
      const failed = await waitFor('the primary reports the change it cannot ship', 60_000, async () => {
        const f = await scrape('a');
        const l = lag(f, 'primary');
        const shipFailed = counter(f, 'twinlayer_failures_total', { kind: 'ship' }) > counter(a0, 'twinlayer_failures_total', { kind: 'ship' });
        return shipFailed && l.seconds !== undefined && l.seconds > 0 && l.commits !== undefined && l.commits >= 1 ? f : undefined;
      }, 200);
      assert.ok(counter(failed, 'twinlayer_failures_total', { kind: 'bucket' }) > counter(a0, 'twinlayer_failures_total', { kind: 'bucket' }));
      assert.ok(counter(failed, 'twinlayer_bucket_requests_total', { kind: 'PUT' }) > counter(a0, 'twinlayer_bucket_requests_total', { kind: 'PUT' }), 'the failed uploads are requests too');
      assert.equal(counter(failed, 'twinlayer_commits_published_total', { kind: 'delta' }), counter(a0, 'twinlayer_commits_published_total', { kind: 'delta' }), 'nothing published');
    } finally {
      proxy.a!.pass();
    }
    await waitStaged('etc/marker', 'v3\n');
    const { a } = await waitCaughtUp('v3');
    assert.equal(counter(a, 'twinlayer_commits_published_total', { kind: 'delta' }), counter(a0, 'twinlayer_commits_published_total', { kind: 'delta' }) + 1);
    const age = sampleValue(a, 'twinlayer_last_commit_age_seconds', { container: 'web', side: 'primary' });
    assert.ok(age < 60, `the last commit is the one just published: ${age} s old`);
  });
});
