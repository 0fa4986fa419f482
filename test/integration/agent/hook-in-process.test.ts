// The agent behind the Hono hook, in process (app.request): a real Agent on a real engine and the embedded S3 server.
// Concurrent duplicate MASTERs promote once; a MASTER/BACKUP/MASTER flap within the settle time leaves the primary
// as it was; a late, older BACKUP is stale; a bad stamp is a 400 with no side effect.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { AgentHookHandler, type Agent } from '../../../src/agent/index.js';
import { startAgentFixture, type AgentFixture } from '../../support/agent.js';
import { Bucket } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { createHookApp } from '../../../src/vrrp-hook/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { testSignatures } from '../../support/signing.js';

const BUCKET = 'twinlayer-inproc';
const TOKEN = 'inproc-token-0123456789abcdef';
let lastAt = BigInt(Date.now()) * 1_000_000n;
const nextAt = (): string => (lastAt += 1_000_000n).toString();

describe('agent hook in process', { timeout: 180_000 }, () => {
  let fx: AgentFixture;
  let bucket: Bucket;
  let agent: Agent;
  let app: Hono;

  const post = async (state: string, at: string | null = nextAt()): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await app.request('/v1/vrrp', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state, priority: 100, ...(at === null ? {} : { at }) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const startedAt = async (): Promise<string> => (await dockerCli(fx.engine, ['inspect', '-f', '{{.State.StartedAt}} {{.State.Running}}', 'web'])).trim();

  before(async () => {
    fx = await startAgentFixture({ tmpPrefix: 'tl-inproc-', engine: 'inproc', bucket: BUCKET, image: 'tl-busybox:inproc' });
    await dockerCli(fx.engine, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:inproc', 'sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.2; done"]);
    bucket = new Bucket(fx.store, { prefix: 'twinlayer', group: 'inproc', signatures: testSignatures(), log: silentLogger });
    agent = fx.agent({ bucket, hostId: 'host-a', group: 'inproc', stateDir: join(fx.base, 'state') });
    await agent.open();
    app = createHookApp({ token: TOKEN, handler: new AgentHookHandler(agent), log: silentLogger });
    await agent.start();
  });

  after(() => fx?.close());

  it('five identical MASTERs at once promote once: one claim, the container not restarted', async () => {
    const before = await startedAt();
    const at = nextAt();
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => post('MASTER', at)));
    assert.ok(answers.every((a) => a.status === 200 && a.body['role'] === 'primary'), JSON.stringify(answers.map((a) => a.body)));
    assert.deepEqual(answers.map((a) => a.body['offer']).sort(), ['accepted', 'duplicate', 'duplicate', 'duplicate', 'duplicate']);
    assert.deepEqual(await bucket.listGenerations(), [1]);
    assert.equal(await startedAt(), before);
  });

  it('MASTER, BACKUP, MASTER within the settle time: still the primary of the same generation, nothing restarted', async () => {
    const before = await startedAt();
    await post('BACKUP');
    await post('MASTER');
    await new Promise((r) => setTimeout(r, 800));
    const status = (await (await app.request('/v1/status', { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { role: string; generation: number };
    assert.equal(status.role, 'primary');
    assert.equal(status.generation, 1);
    assert.equal(await startedAt(), before);
    assert.deepEqual(await bucket.listGenerations(), [1]);
  });

  it('a BACKUP stamped before the latest MASTER is stale and changes nothing; a bad stamp is a 400', async () => {
    const older = (BigInt(nextAt()) - 100_000_000n).toString();
    const late = await post('BACKUP', older);
    assert.equal(late.status, 200);
    assert.equal(late.body['offer'], 'stale');
    const bad = await post('BACKUP', 'soon');
    assert.equal(bad.status, 400);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(agent.role, 'primary');
    assert.match(await startedAt(), / true$/);
  });

  it('a BACKUP that lasts demotes: the container stops with restart policy no; MASTER again resumes the same generation', async () => {
    await post('BACKUP');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !(await startedAt()).endsWith('false')) await new Promise((r) => setTimeout(r, 50));
    assert.match(await startedAt(), / false$/);
    assert.equal(agent.role, 'demoting', 'no successor: it waits to save the divergent tail');
    const again = await post('MASTER');
    assert.equal(again.body['role'], 'primary');
    assert.match(await startedAt(), / true$/);
    assert.deepEqual(await bucket.listGenerations(), [1], 'resumed in its own generation, no new claim');
  });
});
