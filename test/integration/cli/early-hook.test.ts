// The real `twinlayer agent` and `twinlayer pull` answer on their hook before they are open: /healthz answers and
// /v1/status says "starting" while the start waits at its engine check (a socket that holds the connection, where
// the Docker engine's would be), a MASTER posted meanwhile is held, and when the start then fails (the engine goes
// away) that MASTER is answered 503 with the reason — never as a success — and the process exits 2. Light: the
// embedded S3 server in process, no Docker engine. (An early MASTER honoured once the start succeeds, against a real
// engine: test/integration/agent/early-master.test.ts.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startS3Server, S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { waitFor } from '../../../src/lab/wait.js';
import { startHeldSocket } from '../../support/held-socket.js';
import { freePort, spawnTwinlayer } from '../../support/twinlayer.js';

const TOKEN = 'early-token-0123456789abcdef';

describe('the hook while the daemon starts (CLI, no engine)', { timeout: 120_000 }, () => {
  let dir: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let keys: GroupKeys;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-early-'));
    keys = await GroupKeys.create(join(dir, 'keys'), ['early']);
    s3 = await startS3Server({ dir: join(dir, 's3'), buckets: ['early-twins'], silent: true });
  });
  after(async () => {
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const command of ['agent', 'pull'] as const) {
    it(`${command}: /healthz answers and status says starting; a MASTER held through a failed start is answered 503 with the reason`, async () => {
      const engine = await startHeldSocket(join(dir, `${command}-docker.sock`));
      const port = await freePort();
      const p = spawnTwinlayer([command], {
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        TWINLAYER_ENDPOINT: s3.endpoint, TWINLAYER_BUCKET: 'early-twins', TWINLAYER_PATH_STYLE: 'true',
        TWINLAYER_GROUP: `early-${command}`, TWINLAYER_HOST_ID: 'early', ...keys.env('early'),
        TWINLAYER_STATE_DIR: join(dir, `${command}-state`), TWINLAYER_VRRP_STATE_FILE: join(dir, `${command}-vrrp`),
        TWINLAYER_DOCKER_SOCKET: engine.path, TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port}`, TWINLAYER_HOOK_TOKEN: TOKEN,
      });
      const base = `http://127.0.0.1:${port}`;
      const headers = { authorization: `Bearer ${TOKEN}` };
      try {
        await p.waitForLine(/"msg":"hook answering while starting"/, 30_000);
        const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) });
        assert.equal(health.status, 200);
        assert.equal(await health.text(), 'ok');

        // The start waits at the engine: nothing answers there until the test says so.
        await waitFor('the start at its engine check', 30_000, () => Promise.resolve(engine.held > 0 ? true : undefined), 10);
        const status = await fetch(`${base}/v1/status`, { headers, signal: AbortSignal.timeout(10_000) });
        assert.equal(status.status, 503);
        assert.equal(((await status.json()) as { phase: string }).phase, 'starting');

        const master = fetch(`${base}/v1/vrrp`, {
          method: 'POST', headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100, at: String(Date.now() * 1e6) }),
          signal: AbortSignal.timeout(30_000),
        });
        await p.waitForLine(/held until the daemon is ready/, 30_000);
        assert.equal(p.lines.some((l) => /"msg":"hook listening"/.test(l)), false, 'not ready while the engine check waits');

        engine.cut();
        const answer = await master;
        assert.equal(answer.status, 503);
        const body = (await answer.json()) as { phase: string; state: string; error: string };
        assert.equal(body.phase, 'failed');
        assert.equal(body.state, 'MASTER');
        assert.match(body.error, /the daemon did not start, so MASTER was not acted on: docker info failed/);
        assert.equal(await p.exited, 2, p.lines.join('\n'));
        assert.ok(p.lines.some((l) => /twinlayer: docker info failed/.test(l)), p.lines.join('\n'));
      } finally {
        await p.kill('SIGKILL');
        await engine.close();
      }
    });
  }
});
