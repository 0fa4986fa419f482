// The scenario of `twinlayer demo` end to end: two hosts in network namespaces, `twinlayer agent` and real
// keepalived (VRRPv3, nopreempt, notify.sh for every state) on both, one Docker engine per host. a is killed (SIGKILL
// of everything), b serves the last version in the bucket on the VIP; a comes back as after a reboot and rejoins as
// the standby; b is killed and a serves again: a failover and a failback with their timeline.
// Also the fixed roles: `twinlayer push` on the primary, `twinlayer pull` with its hook on the standby, keepalived's
// notify.sh calling that hook; after SIGKILL of the primary's keepalived and engine, the twin serves the last content.
// Both for each engine pair (issue 11): dockerd 20.10 on overlay2 on both hosts, dockerd 26 on the containerd image
// store on both, and a primary on overlay2 with its standby on the containerd store.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runFailover } from '../../src/lab/failover.js';
import { runPushPullFailover } from '../../src/lab/push-pull-failover.js';
import { ENGINE_PAIRS, pairName } from '../support/engine.js';

for (const pair of ENGINE_PAIRS) describe(`failover and failback in the two-host lab (the demo scenario; ${pairName(pair)})`, { timeout: 300_000 }, () => {
  it('b serves the last content in the bucket after a dies; a rejoins as standby; a serves again after b dies', async (t) => {
    const lines: string[] = [];
    const r = await runFailover({ versions: 3, log: (l) => lines.push(l), engineKinds: pair });
    t.diagnostic(`timeline:\n${r.timeline.map((e) => `${String(e.ms).padStart(6)} ms  ${e.event}`).join('\n')}`);
    assert.equal(r.versions.length, 4, 'three versions on a, one on b');
    for (const [leg, from, to, version] of [[r.failover, 'a', 'b', r.versions[2]], [r.failback, 'b', 'a', r.versions[3]]] as const) {
      t.diagnostic(`${from} -> ${to}: kill -> MASTER ${leg.killToMasterMs} ms, -> twin started ${leg.killToTwinStartedMs} ms, -> first good response ${leg.killToFirstGoodMs} ms; MASTER -> full checkpoint ${leg.masterToFullCheckpointMs} ms`);
      assert.deepEqual([leg.from, leg.to], [from, to]);
      assert.equal(leg.lastInBucket, version);
      assert.equal(leg.served, leg.lastInBucket, `${to} serves the last version that was in the bucket`);
      // Not twin started ≤ first good response: "started" is Docker's State.StartedAt, which dockerd records after
      // containerd has started the task, so a fast service can answer a millisecond or two before it (CI: started
      // 599 ms, first good response 598 ms on 26/containerd).
      assert.ok(leg.killToMasterMs > 0 && leg.killToMasterMs <= leg.killToTwinStartedMs && leg.killToMasterMs <= leg.killToFirstGoodMs, JSON.stringify(leg));
      assert.ok(leg.masterToFullCheckpointMs > 0, 'the full checkpoint follows the MASTER');
    }
    assert.deepEqual([r.failover.generation, r.failback.generation], [2, 3], 'each promotion claims the next generation');
    assert.equal(r.rejoin.staleRestartedByDocker, true, 'Docker restarted the stale container on the returning host');
    assert.ok(r.rejoin.agentStartToStaleStoppedMs <= 2000, `stale container stopped ${r.rejoin.agentStartToStaleStoppedMs} ms after the agent's start`);
    assert.equal(r.rejoin.vipStayed, true, 'nopreempt: the returning host did not take the VIP');
    assert.deepEqual(r.rejoin.divergent, [], 'nothing diverged: every write had reached the bucket');
    assert.equal(r.finalStatus?.role, 'primary');
    assert.equal(r.finalStatus.generation, 3);
    const events = r.timeline.map((e) => e.event);
    const at = (re: RegExp): number => {
      const i = events.findIndex((e) => re.test(e));
      assert.ok(i >= 0, `timeline has ${re}: ${events.join(' | ')}`);
      return i;
    };
    // The story in order: a's claim, the failover, b's claim and protection, a rejoining, the failback.
    const order = [/^a: claimed generation 1/, /^failover: a killed/, /^b: claimed generation 2/, /^b: promoted containers protected/, /^b: first full checkpoint/,
      /^a: demoting/, /^a: stale containers stopped/, /^old primary a rejoined as the standby/, /^second failover \(failback\): b killed/, /^a: claimed generation 3/];
    const idx = order.map(at);
    assert.deepEqual(idx, [...idx].sort((x, y) => x - y), `timeline order: ${order.map((re, i) => `${re.source}@${idx[i]}`).join(', ')}`);
  });
});

for (const pair of ENGINE_PAIRS) describe(`fixed roles: push and pull, failover in the two-host lab (${pairName(pair)})`, { timeout: 300_000 }, () => {
  it('the twin serves the last content in the bucket on the virtual IP after the primary dies', async (t) => {
    const lines: string[] = [];
    const result = await runPushPullFailover({ versions: 3, log: (l) => lines.push(l), engineKinds: pair });
    t.diagnostic(`timeline:\n${result.timeline.map((e) => `${String(e.ms).padStart(6)} ms  ${e.event}`).join('\n')}`);
    t.diagnostic(`kill -> standby MASTER ${result.killToMasterMs} ms, -> twin started ${result.killToTwinStartedMs} ms, -> first good response ${result.killToFirstGoodMs} ms`);
    assert.equal(result.versions.length, 3);
    assert.equal(result.served, result.lastInBucket, 'the twin serves the last version that was in the bucket');
    assert.ok(result.killToMasterMs <= result.killToTwinStartedMs && result.killToTwinStartedMs <= result.killToFirstGoodMs);
    const status = result.hookStatus as { role?: string; hook?: { phase?: string; result?: { outcome?: string } }; containers?: Array<{ name: string; twin: string }> };
    assert.equal(status.role, 'master');
    assert.equal(status.hook?.result?.outcome, 'booted');
    assert.deepEqual(status.containers?.map((c) => [c.name, c.twin]), [['web', 'running']]);
  });
});
