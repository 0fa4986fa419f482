// serveHook's token policy, and the hook over the wire: infra/keepalived/notify.sh run with curl against it; the
// metrics listener.
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { createLogger, silentLogger } from '../../../src/log/logger.js';
import { createHookApp, createMetricsApp, HookError, isLoopback, serveApp, serveHook, type ServedHook } from '../../../src/vrrp-hook/index.js';
import { Metrics } from '../../../src/metrics/index.js';
import { parsePrometheusText, sampleValue } from '../../support/prom-text.js';
import { notifyRunner, type NotifyRun } from './notify-script.js';
import { TestPromoter } from './test-promoter.js';

const TOKEN = 'wire-token-0123456789abcdef';

function app(promoter = new TestPromoter(), log = silentLogger) {
  return createHookApp({ token: TOKEN, promoter, log, finalizeDeadlineMs: 1000, bootTimeoutMs: 5000 });
}

async function refuses(p: Promise<ServedHook>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof HookError && err.code === code);
}

describe('serveHook token policy', () => {
  it('refuses a non-loopback listen without a token, even with allowNoToken', async () => {
    for (const listen of ['0.0.0.0:0', '192.0.2.10:7450', '[::]:0', 'hook.example:7450']) {
      await refuses(serveHook(app(), { listen, token: undefined, allowNoToken: true }), 'HOOK_NO_TOKEN');
      await refuses(serveHook(app(), { listen, token: '', allowNoToken: false }), 'HOOK_NO_TOKEN');
    }
  });

  it('refuses no token on loopback unless allowNoToken', async () => {
    await refuses(serveHook(app(), { listen: '127.0.0.1:0', token: undefined, allowNoToken: false }), 'HOOK_NO_TOKEN');
    const served = await serveHook(app(), { listen: '127.0.0.1:0', token: undefined, allowNoToken: true });
    try {
      assert.equal(served.address, '127.0.0.1');
      assert.ok(served.port > 0);
      const res = await fetch(`http://127.0.0.1:${served.port}/healthz`);
      assert.equal(await res.text(), 'ok');
    } finally {
      await served.close();
    }
  });

  it('refuses a listen address it cannot parse', async () => {
    for (const listen of ['7450', '127.0.0.1', '127.0.0.1:99999', ':7450', '::1:7450']) {
      await refuses(serveHook(app(), { listen, token: TOKEN, allowNoToken: false }), 'HOOK_BAD_LISTEN');
    }
  });

  it('names a port already in use', async () => {
    const first = await serveHook(app(), { listen: '127.0.0.1:0', token: TOKEN, allowNoToken: false });
    try {
      await refuses(serveHook(app(), { listen: `127.0.0.1:${first.port}`, token: TOKEN, allowNoToken: false }), 'HOOK_LISTEN_FAILED');
    } finally {
      await first.close();
    }
  });

  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.0.2.1', '128.0.0.1', 'example.com', '::2']) assert.equal(isLoopback(h), false, h);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('notify.sh over the wire', () => {
  let dir: string;
  let promoter: TestPromoter;
  let served: ServedHook;
  let url: string;
  let notify: (args: string[], env: Record<string, string>) => Promise<NotifyRun>;
  const logs: string[] = [];
  const noEnvFile = (): string => join(dir, 'absent.env');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-hook-'));
    notify = notifyRunner(join(dir, 'vrrp-state'));
    promoter = new TestPromoter();
    served = await serveHook(app(promoter, createLogger({ level: 'debug', write: (l) => logs.push(l) })), {
      listen: '127.0.0.1:0', token: TOKEN, allowNoToken: false,
    });
    url = `http://127.0.0.1:${served.port}/v1/vrrp`;
  });
  after(async () => {
    await served.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a wrong token exits non-zero and starts nothing', async () => {
    const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '100'], { TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN: 'wrong-token-0123456789', TWINLAYER_ENV_FILE: noEnvFile() });
    assert.notEqual(run.code, 0);
    assert.equal(run.signal, null);
    assert.match(run.stderr, /401|invalid bearer token/);
    assert.deepEqual(promoter.calls, []);
  });

  it('no token at all exits non-zero and starts nothing', async () => {
    const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '100'], { TWINLAYER_HOOK_URL: url, TWINLAYER_ENV_FILE: noEnvFile() });
    assert.notEqual(run.code, 0);
    assert.deepEqual(promoter.calls, []);
  });

  it('a BACKUP with a name needing JSON escapes reaches the hook verbatim (token from a file)', async () => {
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const name = 'VI "1" \\ \\n $(id) `x` ünï {}';
    const run = await notify(['INSTANCE', name, 'BACKUP', '50'], { TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN_FILE: tokenFile, TWINLAYER_ENV_FILE: noEnvFile() });
    assert.equal(run.code, 0, run.stderr);
    // The hook's answer is logged for BACKUP as for MASTER.
    assert.match(run.stderr, /BACKUP 50 at \d{19}: \{"state":"BACKUP","acknowledged":true\}/);
    const seen = logs.map((l) => JSON.parse(l) as { msg: string; name?: string; state?: string; priority?: number })
      .find((l) => l.msg === 'vrrp notification' && l.state === 'BACKUP');
    assert.equal(seen?.name, name);
    assert.equal(seen?.priority, 50);
    assert.deepEqual(promoter.calls, []);
    // Control characters still make valid JSON; the hook then refuses them by name, not as malformed JSON.
    const tab = await notify(['INSTANCE', 'VI\t1', 'BACKUP', '50'], { TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_ENV_FILE: noEnvFile() });
    assert.notEqual(tab.code, 0);
    assert.match(tab.stderr, /`name`: expected no control characters/);
  });

  it('MASTER exits 0 and boots once; URL, token and state file from the env file keepalived cannot pass', async () => {
    const envFile = join(dir, 'twinlayer.env');
    const stateFile = join(dir, 'from-env', 'vrrp-state');
    await writeFile(envFile, `# comment\nTWINLAYER_HOOK_LISTEN=127.0.0.1:${served.port}\nTWINLAYER_HOOK_TOKEN="${TOKEN}"\nTWINLAYER_VRRP_STATE_FILE=${stateFile}\n`, { mode: 0o600 });
    const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '150'], { TWINLAYER_ENV_FILE: envFile, TWINLAYER_VRRP_STATE_FILE: '' });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /"outcome":"booted"/);
    assert.match(await readFile(stateFile, 'utf8'), /^MASTER \d{19}\n$/);
    const again = await notify(['GROUP', 'G1', 'MASTER', '0'], { TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_ENV_FILE: noEnvFile() });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(promoter.count('finalize'), 1);
    assert.equal(promoter.count('startTwins'), 1);
  });

  it('a state the hook rejects exits non-zero with the reason', async () => {
    const run = await notify(['INSTANCE', 'VI_1', 'PRIMARY', '100'], { TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_ENV_FILE: noEnvFile() });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /`state`/);
  });

  it('an unreachable port exits non-zero by itself, within its timeout', async () => {
    const port = await freePort();
    const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '100'], {
      TWINLAYER_HOOK_URL: `http://127.0.0.1:${port}/v1/vrrp`, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_HOOK_TIMEOUT: '3', TWINLAYER_ENV_FILE: noEnvFile(),
    });
    assert.notEqual(run.code, 0);
    assert.equal(run.signal, null, 'the script ended itself rather than being killed by the test');
    assert.match(run.stderr, /curl exit/);
  });

  it('a hook that accepts but never answers is cut off by TWINLAYER_HOOK_TIMEOUT', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => { sockets.add(socket); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '100'], {
        TWINLAYER_HOOK_URL: `http://127.0.0.1:${port}/v1/vrrp`, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_HOOK_TIMEOUT: '1', TWINLAYER_ENV_FILE: noEnvFile(),
      });
      assert.equal(run.code, 28, run.stderr); // curl: operation timed out
      assert.equal(run.signal, null);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('a promotion the hook reports as failed exits 4', async () => {
    const failing = new TestPromoter();
    failing.startError = new Error('docker socket gone');
    const other = await serveHook(app(failing), { listen: '127.0.0.1:0', token: TOKEN, allowNoToken: false });
    try {
      const run = await notify(['INSTANCE', 'VI_1', 'MASTER', '100'], {
        TWINLAYER_HOOK_URL: `http://127.0.0.1:${other.port}/v1/vrrp`, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_ENV_FILE: noEnvFile(),
      });
      assert.equal(run.code, 4, run.stderr);
      assert.match(run.stderr, /promotion failed.*docker socket gone/);
    } finally {
      await other.close();
    }
  });

  it('missing arguments exit 2', async () => {
    const run = await notify(['INSTANCE'], { TWINLAYER_ENV_FILE: noEnvFile() });
    assert.equal(run.code, 2);
  });
});

describe('the metrics listener (metricsListen)', () => {
  it('serves /metrics and /healthz of the registry without a token and nothing else, over the wire', async () => {
    const metrics = new Metrics({ processMetrics: false });
    metrics.bucketRequest('PUT');
    const served = await serveApp(createMetricsApp(metrics), '127.0.0.1:0');
    try {
      const base = `http://127.0.0.1:${served.port}`;
      const res = await fetch(`${base}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      assert.equal(sampleValue(parsePrometheusText(await res.text()), 'twinlayer_bucket_requests_total', { kind: 'PUT' }), 1);
      assert.equal(await (await fetch(`${base}/healthz`)).text(), 'ok');
      const vrrp = await fetch(`${base}/v1/vrrp`, { method: 'POST', body: '{}' });
      assert.equal(vrrp.status, 404, 'no hook route here');
      assert.equal((await fetch(`${base}/v1/status`)).status, 404);
    } finally {
      await served.close();
    }
  });
});
