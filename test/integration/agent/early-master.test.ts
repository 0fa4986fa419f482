// A MASTER that comes while `twinlayer agent` or `twinlayer pull` is still starting is honoured once the daemon is
// open: the real CLI, a real Docker engine and the embedded S3 server. The start is held at its engine check (a
// socket in front of the engine's that holds connections until the test releases them), so the MASTER is sure to
// come before the daemon is open; status says "starting" meanwhile; once released the agent promotes (claims
// generation 1) and the puller boots, and the held call is answered with that outcome.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEngine, type Engine } from '../../../src/lab/engine.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { waitFor } from '../../../src/lab/wait.js';
import { startS3Server, S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { startHeldSocket } from '../../support/held-socket.js';
import { freePort, spawnTwinlayer } from '../../support/twinlayer.js';

const TOKEN = 'early-master-token-0123456789';

interface MasterAnswer { state: string; role?: string; generation?: number | null; timedOut: boolean; outcome?: string; promotion?: { outcome: string; claim: { status: string; generation: number } | null } | null }

describe('a MASTER during start-up', { timeout: 300_000 }, () => {
  let dir: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engine: Engine;
  let keys: GroupKeys;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-early-master-'));
    keys = await GroupKeys.create(join(dir, 'keys'), ['early']);
    s3 = await startS3Server({ dir: join(dir, 's3'), buckets: ['early-master'], silent: true });
    engine = await startEngine({ name: 'early-master' });
  });
  after(async () => {
    await engine?.stop();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const command of ['agent', 'pull'] as const) {
    it(`${command}: held until the daemon is open, then acted on; the answer is the promotion's`, async () => {
      const held = await startHeldSocket(join(dir, `${command}-docker.sock`));
      const port = await freePort();
      const p = spawnTwinlayer([command], {
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        TWINLAYER_ENDPOINT: s3.endpoint, TWINLAYER_BUCKET: 'early-master', TWINLAYER_PATH_STYLE: 'true',
        TWINLAYER_GROUP: `early-${command}`, TWINLAYER_HOST_ID: 'early', ...keys.env('early'),
        TWINLAYER_STATE_DIR: join(dir, `${command}-state`), TWINLAYER_VRRP_STATE_FILE: join(dir, `${command}-vrrp`),
        TWINLAYER_DOCKER_SOCKET: held.path, TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port}`, TWINLAYER_HOOK_TOKEN: TOKEN,
        TWINLAYER_POLL_INTERVAL_MS: '100',
      });
      const base = `http://127.0.0.1:${port}`;
      const headers = { authorization: `Bearer ${TOKEN}` };
      try {
        await p.waitForLine(/"msg":"hook answering while starting"/, 30_000);
        await waitFor('the start at its engine check', 30_000, () => Promise.resolve(held.held > 0 ? true : undefined), 10);
        const starting = await fetch(`${base}/v1/status`, { headers, signal: AbortSignal.timeout(10_000) });
        assert.equal(starting.status, 503);
        assert.equal(((await starting.json()) as { phase: string }).phase, 'starting');

        const master = fetch(`${base}/v1/vrrp`, {
          method: 'POST', headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100, at: String(BigInt(Date.now()) * 1_000_000n) }),
          signal: AbortSignal.timeout(60_000),
        });
        await p.waitForLine(/held until the daemon is ready/, 30_000);
        assert.equal(p.lines.some((l) => /"msg":"hook listening"/.test(l)), false, 'not open while the engine check waits');

        held.release(engine.socketPath);
        const answer = await master;
        assert.equal(answer.status, 200, p.lines.slice(-20).join('\n'));
        const body = (await answer.json()) as MasterAnswer;
        assert.equal(body.state, 'MASTER');
        assert.equal(body.timedOut, false);
        await p.waitForLine(/"msg":"hook listening"/, 30_000);
        const status = await fetch(`${base}/v1/status`, { headers, signal: AbortSignal.timeout(10_000) });
        assert.equal(status.status, 200);
        const s = (await status.json()) as { role: string; generation: number | null; hook?: { phase: string } };
        if (command === 'agent') {
          assert.equal(body.role, 'primary', JSON.stringify(body));
          assert.equal(body.promotion?.outcome, 'booted', JSON.stringify(body));
          assert.deepEqual(body.promotion?.claim, { status: 'won', generation: 1 });
          assert.equal(s.role, 'primary');
          assert.equal(s.generation, 1);
        } else {
          assert.equal(body.outcome, 'booted', JSON.stringify(body));
          assert.equal(s.role, 'master');
          assert.equal(s.hook?.phase, 'booted');
        }
        assert.equal(await p.kill('SIGTERM'), 0, p.lines.slice(-20).join('\n'));
      } finally {
        await p.kill('SIGKILL');
        await held.close();
      }
    });
  }
});
