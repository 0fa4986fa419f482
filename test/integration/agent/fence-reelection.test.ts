// A primary told BACKUP (its keepalived restarted as BACKUP after another host took MASTER) that sees the newer
// generation only afterwards is fenced with VRRP already saying BACKUP, so no later BACKUP ends its fence. When the
// new owner then dies, VRRP elects this host MASTER again, and the new owner releases nothing: the fence must not
// keep the host down (the quick chaos soak found it: after a keepalived failover and the final kill of the new
// primary, no host took over). An agent in process (a real engine, the embedded S3 server); the other host is
// played through the bucket with its own key.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Agent } from '../../../src/agent/index.js';
import { waitFor } from '../../../src/lab/wait.js';
import { Bucket, type Generation } from '../../../src/store/index.js';
import { startAgentFixture, type AgentFixture } from '../../support/agent.js';

const BUCKET = 'twinlayer-fence-reelection';
const GROUP = 'refence';

describe('agent: fenced after VRRP said BACKUP, then elected MASTER when the new owner is gone', { timeout: 180_000 }, () => {
  let fx: AgentFixture;

  before(async () => {
    fx = await startAgentFixture({ tmpPrefix: 'tl-refence-', engine: 'refence', bucket: BUCKET, hosts: ['host-a', 'host-b'] });
  });

  after(() => fx?.close());

  it('takes over on the new MASTER: claims the next generation and runs as primary', async () => {
    const hostA = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures('host-a') });
    const hostB = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures('host-b') });
    const observer = new Bucket(fx.store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures() });
    // A settle time far above the fence interval: the BACKUP below is taken first, the fence is seen within it.
    const a = fx.agent({ bucket: hostA, hostId: 'host-a', group: GROUP, stateDir: join(fx.base, 'state-a'), timing: { fenceIntervalMs: 100, backupSettleMs: 5_000, standbyCheckMs: 200 } });
    await a.open();
    await a.start();
    // notify.sh's stamps: ns since the epoch, this host's clock, always increasing here.
    let at = 0n;
    const stamp = (ns: bigint = BigInt(Date.now()) * 1_000_000n): string => (at = ns > at ? ns : at + 1n).toString();
    const fencedWhileBackup = async (g: number): Promise<void> => {
      // A's keepalived comes back as BACKUP, then A sees that host B took generation g (B's MASTER, B's claim).
      assert.equal((await a.notify({ state: 'BACKUP', at: stamp() })).offer, 'accepted');
      const claimedAt = new Date().toISOString();
      assert.deepEqual(await hostB.claimGeneration({ version: 1, generation: g as Generation, host: 'host-b', claimedAt, from: { generation: (g - 1) as Generation, containers: {} } }), { won: true });
      const s = await waitFor(`A a fenced standby of generation ${g}`, 30_000, async () => {
        const x = await a.status();
        return x.role === 'standby' && x.generation === g ? x : undefined;
      }, 50);
      assert.match(s.fenced ?? '', new RegExp(`host-b owns generation ${g}`), 'the precondition: fenced after VRRP said BACKUP');
      assert.equal(s.vrrp.state, 'BACKUP');
    };
    const waitPrimary = (g: number): Promise<Awaited<ReturnType<Agent['status']>>> => waitFor(`A primary of generation ${g}`, 30_000, async () => {
      const s = await a.status();
      return s.role === 'primary' && s.generation === g ? s : undefined;
    }, 50);

    // A is MASTER and owns generation 1.
    const first = await a.notify({ state: 'MASTER', at: stamp() });
    assert.equal(first.role, 'primary');
    assert.equal(first.promotion?.claim?.status, 'won');
    assert.equal(first.generation, 1);

    // Fenced after its BACKUP; a MASTER stamped before the fence (a flap's call delivered late) is the MASTER the fence
    // is about: A stays down, as it would have had the call come in time.
    await fencedWhileBackup(2);
    const backupAt = at;
    const late = await a.notify({ state: 'MASTER', at: stamp(backupAt + 1_000n) });
    assert.equal(late.offer, 'accepted');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const still = await a.status();
    assert.equal(still.role, 'standby', 'a MASTER from before the fence promotes nothing');
    assert.match(still.fenced ?? '', /host-b owns generation 2/);
    assert.equal(await observer.readClaim(3 as Generation), null);
    // VRRP leaves MASTER (ends the fence, as before), then elects A: it claims generation 3.
    await a.notify({ state: 'BACKUP', at: stamp() });
    await a.notify({ state: 'MASTER', at: stamp() });
    await waitPrimary(3);

    // Fenced after its BACKUP again; B dies without a word (no release); VRRP elects A: a MASTER stamped after the
    // fence is a new election. (On the old code A stays a fenced standby for good.)
    await fencedWhileBackup(4);
    const answer = await a.notify({ state: 'MASTER', at: stamp() });
    assert.equal(answer.offer, 'accepted');
    const taken = await waitPrimary(5);
    assert.equal(taken.fenced, null);
    assert.equal((await observer.readClaim(5 as Generation))?.host, 'host-a');
    assert.equal((await observer.readClaim(5 as Generation))?.from.generation, 4);
  });
});
