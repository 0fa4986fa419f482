// Issue 3 end to end: two hosts in network namespaces, real keepalived (VRRPv3), one Docker engine per host,
// `twinlayer push` on the primary, `twinlayer pull` with its hook on the standby, keepalived's notify script
// calling the hook. After SIGKILL of the primary's keepalived and engine, the virtual IP serves the last content
// that reached the bucket, from the twin.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runFailover } from '../../src/lab/failover.js';

describe('failover in the two-host lab', { timeout: 300_000 }, () => {
  it('the twin serves the last content in the bucket on the virtual IP after the primary dies', async (t) => {
    const lines: string[] = [];
    const result = await runFailover({ versions: 3, log: (l) => lines.push(l) });
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
