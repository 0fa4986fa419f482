// A release put back after its owner withdrew it (review of issue 8, finding 3). A fenced host that VRRP still
// calls MASTER takes over when the owner of the newest generation releases it; a release is signed, but its
// signature binds it to its key only, so a bucket writer without a key could put back a release the owner made and
// withdrew, and the fenced MASTER took over from a primary that runs. An agent in process (a real engine, the
// embedded S3 server), fenced by its VRRP state file, refuses the release put back (alone, and with the head it was
// made at) and shows why in its status; it takes over on a release the owner makes now. A release made by a host
// that does not own the generation is refused too.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { currentRelease, releaseGeneration, withdrawRelease } from '../../../src/agent/release.js';
import { waitFor } from '../../../src/lab/wait.js';
import { asDigest, Bucket, type CommitRecord, type Generation, type Seq } from '../../../src/store/index.js';
import { startAgentFixture, type AgentFixture } from '../../support/agent.js';

const BUCKET = 'twinlayer-release-replay';
const GROUP = 'rreplay';
const g1 = 1 as Generation;

function recordOf(seq: number): CommitRecord {
  return {
    version: 1, seq: seq as Seq, parentSeq: (seq - 1) as Seq, generation: g1, container: 'web', digest: asDigest('ab'.repeat(32)), size: 10, kind: seq === 1 ? 'full' : 'delta',
    counts: { files: 1, deletions: 0, bytes: 10 }, firstWriteAt: new Date().toISOString(), publishedAt: new Date().toISOString(), writer: 'host-b',
  };
}

describe('agent: a release put back after its owner withdrew it makes no fenced MASTER take over', { timeout: 180_000 }, () => {
  let fx: AgentFixture;

  before(async () => {
    fx = await startAgentFixture({ tmpPrefix: 'tl-rreplay-', engine: 'rreplay', bucket: BUCKET, image: 'tl-busybox:rreplay', hosts: ['host-a', 'host-b'] });
  });

  after(() => fx?.close());

  it('refuses the replayed release (alone and with its head) in its status, and takes over on a release made now', async () => {
    const { store } = fx;
    const hostB = new Bucket(store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures('host-b') });
    const hostA = new Bucket(store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures('host-a') });
    const observer = new Bucket(store, { prefix: 'twinlayer', group: GROUP, signatures: fx.keys.signatures() });
    const raw = async (key: string): Promise<Buffer> => {
      const body = await store.getBuffer(key, 1 << 20);
      assert.ok(body, `${key} is there`);
      return body;
    };

    // Host B owns generation 1; it leaves MASTER with no successor and releases it, then comes back and withdraws
    // the release, and goes on publishing.
    const claimedAt = new Date();
    assert.deepEqual(await hostB.claimGeneration({ version: 1, generation: g1, host: 'host-b', claimedAt: claimedAt.toISOString(), from: { generation: 0 as Generation, containers: {} } }), { won: true });
    await hostB.writeRecord(recordOf(1));
    await hostB.writeHead({ version: 1, generation: g1, seq: 1 as Seq, writer: 'host-b', updatedAt: new Date().toISOString(), containers: { web: 1 as Seq } });
    await releaseGeneration(hostB, g1, 'host-b', 'VRRP BACKUP');
    assert.equal((await currentRelease(observer, g1)).status, 'valid');
    const oldRelease = await raw(hostB.layout.releaseKey(g1));
    const oldHead = await raw(hostB.headKey(g1));
    await withdrawRelease(hostB, g1);
    assert.equal((await currentRelease(observer, g1)).status, 'none');

    // Put back right away (nothing published since): the head was written again at the withdrawal.
    await store.put(hostB.layout.releaseKey(g1), oldRelease);
    const replayed = await currentRelease(observer, g1);
    assert.equal(replayed.status, 'stale');
    assert.match(replayed.status === 'stale' ? replayed.reason : '', /withdrawn, or put back/);
    await store.delete(hostB.layout.releaseKey(g1));

    await hostB.writeRecord(recordOf(2));
    await hostB.writeHead({ version: 1, generation: g1, seq: 2 as Seq, writer: 'host-b', updatedAt: new Date().toISOString(), containers: { web: 2 as Seq } });
    const currentHead = await raw(hostB.headKey(g1));

    // Host A: fenced at start (its VRRP state file says MASTER since before B's claim), a standby following B.
    const vrrpFile = join(fx.base, 'vrrp-a');
    await writeFile(vrrpFile, `MASTER ${BigInt(claimedAt.getTime() - 5_000) * 1_000_000n}\n`);
    const a = fx.agent({ bucket: hostA, hostId: 'host-a', group: GROUP, stateDir: join(fx.base, 'state-a'), vrrpStateFile: vrrpFile, timing: { standbyCheckMs: 200 } });
    await a.open();
    await a.start();
    const st = await a.status();
    assert.equal(st.role, 'standby');
    assert.match(st.fenced ?? '', /VRRP state file says MASTER/);

    // The release put back: refused (made at a head that is gone), shown in the status; no takeover.
    await store.put(hostB.layout.releaseKey(g1), oldRelease);
    const refused = await waitFor('the replayed release refused', 30_000, async () => {
      const s = await a.status();
      return /release of generation 1 refused: made at head seq 1 .*withdrawn, or put back/.test(s.refusedRelease ?? '') ? s : undefined;
    }, 50);
    assert.equal(refused.role, 'standby');
    assert.equal(await observer.readClaim(2 as Generation), null, 'no takeover');

    // With the head it was made at put back too: records were published past that head.
    await store.put(hostB.headKey(g1), oldHead);
    const refused2 = await waitFor('the replayed release and head refused', 30_000, async () => {
      const s = await a.status();
      return /journal seq 2 lies past the head it was made at \(seq 1\)/.test(s.refusedRelease ?? '') ? s : undefined;
    }, 50);
    assert.equal(refused2.role, 'standby');
    assert.equal(await observer.readClaim(2 as Generation), null, 'no takeover');
    await store.put(hostB.headKey(g1), currentHead);

    // A release by a host that does not own the generation (a trusted key, the wrong host): refused.
    await hostA.putRelease({ version: 1, generation: g1, host: 'host-a', headSeq: 2 as Seq, headUpdatedAt: null, releasedAt: new Date().toISOString(), reason: 'not mine' });
    const foreign = await currentRelease(observer, g1);
    assert.match(foreign.status === 'stale' ? foreign.reason : foreign.status, /released by host-a, but generation 1 is owned by host-b/);

    // The owner releases now: the fenced MASTER takes over.
    await releaseGeneration(hostB, g1, 'host-b', 'VRRP BACKUP');
    await waitFor('host-a claims generation 2', 60_000, async () => ((await observer.readClaim(2 as Generation))?.host === 'host-a' ? true : undefined), 100);
    const taken = await waitFor('host-a primary', 60_000, async () => {
      const s = await a.status();
      return s.role === 'primary' ? s : undefined;
    }, 100);
    assert.equal(taken.refusedRelease, null);
  });
});
