// A primary agent (in process, a real engine and the embedded S3 server) while a bucket writer without a trusted key
// claims the next generation (issue 8 item 3): before signed commits an unparsable or foreign claim at g+1 stopped
// the primary's publishing or fenced it, and it demoted (stopping its containers). Now the fence reads the junk,
// refuses it, and the primary goes on publishing in its generation, the refusal in its status.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Agent } from '../../../src/agent/index.js';
import { startAgentFixture, type AgentFixture } from '../../support/agent.js';
import { Bucket, Signatures, SigningKey, type Generation, type Seq } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/log/logger.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';

const BUCKET = 'twinlayer-signed-fence';
const GROUP = 'fence';
let lastAt = BigInt(Date.now()) * 1_000_000n;
const nextAt = (): bigint => (lastAt += 1_000_000n);

describe('agent: a keyless claim of the next generation fences nobody', { timeout: 180_000 }, () => {
  let fx: AgentFixture;
  let agent: Agent;
  let observer: Bucket;

  before(async () => {
    fx = await startAgentFixture({ tmpPrefix: 'tl-sfence-', engine: 'sfence', bucket: BUCKET, image: 'tl-busybox:sfence', hosts: ['host-a', 'host-b'] });
    await dockerCli(fx.engine, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', 'tl-busybox:sfence', 'sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.2; done"]);
    observer = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures() });
    agent = fx.agent({ bucket: new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures('host-a'), log: silentLogger }), hostId: 'host-a', group: GROUP, stateDir: join(fx.base, 'state') });
    await agent.open();
    await agent.start();
  });

  after(() => fx?.close());

  /** The last seq of web in generation 1's journal (0 before any). */
  const lastOfWeb = async (): Promise<number> => {
    let last = 0;
    for await (const item of observer.listRecords(1 as Generation, 0)) if ('record' in item && item.record.container === 'web') last = item.seq;
    return last;
  };

  it('refuses the forged claim and head of generation 2, stays the primary of 1 and keeps publishing', async () => {
    const answer = await agent.notify({ state: 'MASTER', at: nextAt().toString() });
    assert.equal(answer.role, 'primary');
    await dockerCli(fx.engine, ['exec', 'web', 'sh', '-c', 'echo before-forgery > /before']);
    const first = await waitFor('the first checkpoint of web in generation 1', 30_000, async () => ((await lastOfWeb()) > 0 ? lastOfWeb() : undefined), 50);

    // No key: an unsigned claim of 2 in host-b's name. A key of its own, named host-b: a head of 2.
    const attacker = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: new Signatures({ signer: null, trusted: [], acceptUnsigned: true }) });
    await attacker.claimGeneration({ version: 1, generation: 2 as Generation, host: 'host-b', claimedAt: new Date().toISOString(), from: { generation: 1 as Generation, containers: { web: first as Seq } } });
    const mallory = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: new Signatures({ signer: SigningKey.generate('host-b'), trusted: [], acceptUnsigned: false }) });
    await mallory.writeHead({ version: 1, generation: 2 as Generation, seq: 0 as Seq, writer: 'host-b', updatedAt: new Date().toISOString(), containers: {} });

    // The fence read both (they are in the status) ...
    const claimKey = observer.claimKey(2 as Generation);
    const headKey = observer.headKey(2 as Generation);
    const status = await waitFor('the fence to refuse the forged claim and head', 15_000, async () => {
      const s = await agent.status();
      const keys = s.signatures.refused.recent.map((r) => r.key);
      return keys.includes(claimKey) && keys.includes(headKey) ? s : undefined;
    }, 50);
    assert.match(status.signatures.refused.recent.find((r) => r.key === claimKey)?.reason ?? '', /^not signed/);
    assert.match(status.signatures.refused.recent.find((r) => r.key === headKey)?.reason ?? '', /not among the group's trusted keys/);
    // ... and a write after that is published in generation 1: the fence let it through.
    await dockerCli(fx.engine, ['exec', 'web', 'sh', '-c', 'echo after-forgery > /after']);
    await waitFor('a commit of web after the forgery', 30_000, async () => ((await lastOfWeb()) > first ? true : undefined), 50);
    const after = await agent.status();
    assert.equal(after.role, 'primary');
    assert.equal(after.generation, 1);
    assert.equal(after.fenced, null);
    assert.match((await dockerCli(fx.engine, ['inspect', '-f', '{{.State.Running}}', 'web'])).trim(), /^true$/);
    assert.equal(await observer.newestGenerationFrom(1 as Generation), 1);
  });
});
