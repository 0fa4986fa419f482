// The fixed-role failover (`twinlayer push` on the primary, `twinlayer pull` with its hook on the standby), kept
// for test/e2e/failover.test.ts now that the demo runs `twinlayer agent` (failover.ts): a protected busybox httpd
// on the primary, keepalived in both hosts (notify.sh on the standby), a few versions of a page written, then the
// primary killed (keepalived and engine, SIGKILL) and the page fetched from the virtual IP until the twin serves
// the last version. Returns the timeline; tears the lab down in any case.
import { randomBytes } from 'node:crypto';
import { copyFile, chmod, readFile, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { startS3Server, S3RVER_CREDENTIALS } from '../s3server/index.js';
import { Bucket, S3BlobStore } from '../store/index.js';
import { createLab, type Lab } from './index.js';
import { dockerCli, type EngineKind } from './engine.js';
import { twinlayerEngineEnv } from './engine-access.js';
import { GroupKeys } from './group-keys.js';
import { importBusyboxImage, copyImage } from './busybox-image.js';
import type { TimelineEvent } from './failover.js';
import { waitFor } from './wait.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUCKET = 'twinlayer-demo';
const PORT = 8080;

export interface PushPullFailoverResult {
  timeline: TimelineEvent[];
  versions: string[];
  /** What the VIP served first after the kill that equals the last version. */
  served: string;
  killToMasterMs: number;
  killToTwinStartedMs: number;
  killToFirstGoodMs: number;
  /** The last version that reached the bucket before the kill. */
  lastInBucket: string;
  hookStatus: unknown;
}

export interface PushPullFailoverOptions {
  log?: (line: string) => void;
  versions?: number;
  advertIntSec?: number;
  /** Bound for each wait (ms). */
  waitMs?: number;
  /** The primary's and the standby's engine kinds (engine.ts); default overlay2 on both. */
  engineKinds?: readonly [EngineKind, EngineKind];
}

export async function runPushPullFailover(opts: PushPullFailoverOptions = {}): Promise<PushPullFailoverResult> {
  const log = opts.log ?? (() => undefined);
  const waitMs = opts.waitMs ?? 30_000;
  const start = performance.now();
  const timeline: TimelineEvent[] = [];
  const mark = (event: string): number => {
    const ms = Math.round(performance.now() - start);
    timeline.push({ event, ms });
    log(`${String(ms).padStart(6)} ms  ${event}`);
    return ms;
  };
  let lab: Lab | null = null;
  let s3: Awaited<ReturnType<typeof startS3Server>> | null = null;
  const cleanups: Array<() => void> = [];
  try {
    lab = await createLab({ log: (l) => log(`  lab: ${l}`) });
    mark('lab up: two hosts in network namespaces');
    await lab.startEngines(opts.engineKinds === undefined ? {} : { kinds: { primary: opts.engineKinds[0], standby: opts.engineKinds[1] } });
    const [primary, standby] = lab.hosts;
    if (!primary?.engine || !standby?.engine) throw new Error('lab engines did not start');
    mark('one Docker engine per host');
    s3 = await startS3Server({ dir: join(lab.dir, 's3'), buckets: [BUCKET], silent: true });
    const s3Fwd = await lab.forwardToRoot(s3.port);
    await importBusyboxImage(primary.engine.socketPath, 'tl-web:demo');
    await copyImage(primary.engine.socketPath, standby.engine.socketPath, 'tl-web:demo');
    await dockerCli(primary.engine, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'host', 'tl-web:demo', 'httpd', '-f', '-p', String(PORT), '-h', '/var/www']);
    mark('protected web service running on the primary (busybox httpd, --network host)');

    const token = randomBytes(16).toString('hex');
    // Each host its own key, both trusting both: the commits are signed as in production.
    const keys = await GroupKeys.create(join(lab.dir, 'keys'), ['primary', 'standby']);
    const common = {
      AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1',
      TWINLAYER_ENDPOINT: `http://${s3Fwd.host}:${s3Fwd.port}`, TWINLAYER_BUCKET: BUCKET, TWINLAYER_PATH_STYLE: 'true',
      TWINLAYER_GROUP: 'demo', TWINLAYER_POLL_INTERVAL_MS: '50', TWINLAYER_HOOK_TOKEN: token, TWINLAYER_LOG_LEVEL: 'info',
    };
    const stateDir = (h: string): string => join(lab!.dir, `state-${h}`);
    const node = process.execPath;
    const bin = join(repoRoot, 'bin', 'twinlayer.js');
    await lab.spawn('primary', [node, bin, 'push'], { env: { ...common, TWINLAYER_HOST_ID: 'primary', ...keys.env('primary'), ...twinlayerEngineEnv(primary.engine), TWINLAYER_STATE_DIR: stateDir('primary') } });
    await lab.spawn('standby', [node, bin, 'pull'], { env: { ...common, TWINLAYER_HOST_ID: 'standby', ...keys.env('standby'), ...twinlayerEngineEnv(standby.engine), TWINLAYER_STATE_DIR: stateDir('standby'), TWINLAYER_HOOK_LISTEN: '127.0.0.1:7450' } });

    // keepalived insists that notify scripts are root-owned and not writable by others: copy ours into the lab dir.
    const notify = join(lab.dir, 'notify.sh');
    await copyFile(join(repoRoot, 'infra', 'keepalived', 'notify.sh'), notify);
    await chmod(notify, 0o755);
    const primaryNotify = join(lab.dir, 'notify-primary.sh');
    await writeFile(primaryNotify, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    await lab.startKeepalived({
      notify: { primary: primaryNotify, standby: notify },
      advertIntSec: opts.advertIntSec ?? 0.1,
      // The VRRP state file in the lab dir: never the machine's /run/twinlayer.
      env: {
        TWINLAYER_HOOK_URL: 'http://127.0.0.1:7450/v1/vrrp', TWINLAYER_HOOK_TOKEN: token, TWINLAYER_ENV_FILE: '/nonexistent', TWINLAYER_HOOK_TIMEOUT: '20',
        TWINLAYER_VRRP_STATE_FILE: join(lab.dir, 'standby-vrrp-state'),
      },
    });
    await lab.waitForVip('primary', waitMs);
    mark(`keepalived: primary is MASTER and holds the virtual IP ${lab.vip}`);

    const fetchPage = async (): Promise<string | null> => {
      const r = await lab!.exec(lab!.bridgeNetns, ['curl', '-s', '--max-time', '0.5', `http://${lab!.vip}:${PORT}/index.html`], { timeoutMs: 3000 });
      return r.code === 0 ? r.stdout : null;
    };
    await waitFor('the page on the virtual IP', waitMs, async () => ((await fetchPage()) !== null ? true : undefined), 20);
    mark('the page answers on the virtual IP (from the primary)');

    const versions: string[] = [];
    const appliedFile = join(stateDir('standby'), 'pull', 'demo', 'applied.json');
    const stagedSeq = async (): Promise<number> => {
      const text = await readFile(appliedFile, 'utf8').catch(() => null);
      return text ? ((JSON.parse(text) as { containers: Record<string, { seq: number }> }).containers['web']?.seq ?? 0) : 0;
    };
    const store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS });
    cleanups.push(() => store.destroy());
    const bucket = new Bucket(store, { prefix: 'twinlayer', group: 'demo', signatures: keys.signatures() });
    const headSeq = async (): Promise<number> => {
      const g = (await bucket.listGenerations()).at(-1);
      if (g === undefined) return 0;
      const head = await bucket.readHead(g);
      return head.status === 'ok' ? (head.head.containers['web'] ?? 0) : 0;
    };
    const n = opts.versions ?? 3;
    for (let v = 1; v <= n; v++) {
      const content = `<h1>version ${v} ${randomBytes(4).toString('hex')}</h1>`;
      const before = await headSeq();
      await dockerCli(primary.engine, ['exec', 'web', 'sh', '-c', `echo '${content}' > /var/www/index.html`]);
      mark(`write: version ${v} of the page inside the primary container`);
      const seq = await waitFor(`version ${v} in the bucket`, waitMs, async () => {
        const t = performance.now();
        const s = await headSeq();
        if (performance.now() - t > 300) log(`  note: reading the head took ${Math.round(performance.now() - t)} ms`);
        return s > before ? s : undefined;
      }, 5);
      mark(`in bucket: commit ${seq}`);
      await waitFor(`commit ${seq} staged on the standby`, waitMs, async () => ((await stagedSeq()) >= seq ? true : undefined), 5);
      mark(`staged: commit ${seq} in the stopped twin's upper layer`);
      versions.push(content);
    }
    const lastInBucket = versions.at(-1) ?? '';

    const killedAt = mark('primary killed (keepalived, dockerd, containerd, the container: SIGKILL)');
    await lab.killHost('primary');
    await lab.waitForVip('standby', waitMs);
    const masterAt = mark('standby is MASTER (holds the virtual IP); keepalived runs notify.sh -> hook');
    const twinAt = await waitFor('the twin running on the standby', waitMs, async () => {
      const out = await dockerCli(standby.engine!, ['inspect', '-f', '{{.State.Running}}', 'web']).catch(() => '');
      return out.trim() === 'true' ? mark('twin started') : undefined;
    }, 10);
    let served = '';
    const goodAt = await waitFor('the last version on the virtual IP', waitMs, async () => {
      const page = await fetchPage();
      if (page?.trim() === lastInBucket) {
        served = page.trim();
        return mark('first good response from the twin on the virtual IP');
      }
      return undefined;
    }, 10);
    const hookStatus = await lab.exec('standby', ['curl', '-s', '--max-time', '2', '-H', `authorization: Bearer ${token}`, 'http://127.0.0.1:7450/v1/status']).then((r) => JSON.parse(r.stdout) as unknown).catch(() => null);
    return {
      timeline, versions, served, lastInBucket, hookStatus,
      killToMasterMs: masterAt - killedAt, killToTwinStartedMs: twinAt - killedAt, killToFirstGoodMs: goodAt - killedAt,
    };
  } finally {
    for (const c of cleanups) c();
    await teardown(s3, lab, mark);
  }
}

/** Closes the S3 server and destroys the lab; a teardown failure is reported, never hidden. */
async function teardown(s3: { close(): Promise<void> } | null, lab: Lab | null, mark: (event: string) => number): Promise<void> {
  const problems: string[] = [];
  await s3?.close().catch((err: unknown) => problems.push(String(err)));
  await lab?.destroy().catch((err: unknown) => problems.push(String(err)));
  mark('lab torn down');
  if (problems.length > 0) throw new Error(`teardown: ${problems.join('; ')}`);
}
