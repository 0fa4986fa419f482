// A real firewall failing over (issue 9): an nftables container (NET_ADMIN, the host's network) protected on A, its
// ruleset file edited inside the container; `twinlayer agent` and keepalived on both lab hosts; A SIGKILLed whole.
// B's twin applies the edited file at start: from a client namespace on the lab's network, a connection to the port
// the new rule drops gets no answer from B (and the rule's counter on B counts it), while the open port answers.
// Both ports are plain host services on each host (busybox httpd, not replicated), so only the ruleset differs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { capabilityName } from '../../src/docker/index.js';
import { dockerCli } from '../../src/lab/engine.js';
import { BLOCKED_PORT, droppedPackets, editRuleset, FIREWALL, firewallAnswer, hostRuleset, OPEN_PORT, startFirewall, tryPort } from '../../src/lab/service-firewall.js';
import { ServiceLab } from '../../src/lab/service-lab.js';
import { waitFor } from '../../src/lab/wait.js';

const inspectSchema = z.looseObject({
  State: z.looseObject({ Running: z.boolean() }),
  Config: z.looseObject({ Labels: z.record(z.string(), z.string()).nullable() }),
  HostConfig: z.looseObject({ CapAdd: z.array(z.string()).nullable(), NetworkMode: z.string(), RestartPolicy: z.looseObject({ Name: z.string() }) }),
});

describe('a firewall (nftables container) failing over with keepalived: the twin applies the ruleset edited on the primary', { timeout: 600_000 }, () => {
  let sl: ServiceLab | undefined;
  const logs: string[] = [];
  const L = (): ServiceLab => {
    assert.ok(sl, 'the lab is up');
    return sl;
  };
  const inspect = async (host: string): Promise<z.infer<typeof inspectSchema>> => {
    const out = await dockerCli(L().engine(host), ['inspect', FIREWALL]);
    const parsed = z.array(inspectSchema).length(1).parse(JSON.parse(out));
    return parsed[0]!;
  };

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd, keepalived)');
    sl = await ServiceLab.create({ log: (l) => logs.push(l) });
    await startFirewall(sl);
    await sl.start();
  });

  after(async () => {
    if (process.env['TWINLAYER_TEST_ECHO']) for (const line of logs) process.stderr.write(line + '\n');
    await sl?.destroy();
  });

  it('A runs the firewall with its image\'s ruleset (all open): both ports answer on the VIP from A; B has its stopped twin although it wrote nothing', async () => {
    const l = L();
    const [a, b] = l.hosts;
    await waitFor('the firewall to apply its ruleset on A', l.waitMs, async () => ((await hostRuleset(l, a)).includes('table inet filter') ? true : undefined), 100);
    assert.deepEqual(await tryPort(l, l.lab.vip, BLOCKED_PORT), { page: `${a}:${BLOCKED_PORT}` });
    assert.deepEqual(await tryPort(l, l.lab.vip, OPEN_PORT), { page: `${a}:${OPEN_PORT}` });
    // Its first full checkpoint is published although empty: the twin is there before the container's first write.
    const twin = await waitFor('the stopped twin of the firewall on B', l.waitMs, async () => {
      const out = await dockerCli(l.engine(b), ['ps', '-a', '--filter', `name=^${FIREWALL}$`, '--format', '{{.State}}']);
      return out.trim() === '' ? undefined : out.trim();
    }, 100);
    assert.equal(twin, 'created');
  });

  it('the ruleset file edited inside the container (and applied on A): A drops the blocked port, the open one answers; B\'s stopped twin (NET_ADMIN, host network) holds the edited file, B itself drops nothing yet', async () => {
    const l = L();
    const [a, b] = l.hosts;
    await l.replicate(FIREWALL, 'the edited ruleset', () => editRuleset(l, a));
    assert.equal(await tryPort(l, l.lab.vip, BLOCKED_PORT), 'dropped');
    assert.deepEqual(await tryPort(l, l.lab.vip, OPEN_PORT), { page: `${a}:${OPEN_PORT}` });
    assert.ok(((await droppedPackets(l, a)) ?? 0) > 0, 'A\'s rule counted the dropped connection');
    await l.waitTwinFile(b, FIREWALL, '/etc/nftables.conf', `tcp dport ${BLOCKED_PORT} counter drop`);
    const twin = await inspect(b);
    assert.equal(twin.State.Running, false);
    assert.equal(twin.Config.Labels?.['twinlayer.twin'], 'true');
    // The spec carries the capabilities as the primary's inspect shows them, and the twin is created with that spelling.
    const primary = await inspect(a);
    assert.deepEqual(twin.HostConfig.CapAdd, primary.HostConfig.CapAdd, 'the twin has the capabilities of the primary, spelled alike');
    assert.deepEqual(twin.HostConfig.CapAdd?.map(capabilityName), ['NET_ADMIN'], 'the twin has the capability the firewall needs');
    assert.equal(twin.HostConfig.NetworkMode, 'host');
    // B's own address: its host service answers, no rule there while the twin is stopped.
    assert.deepEqual(await tryPort(l, l.hostIp(b), BLOCKED_PORT), { page: `${b}:${BLOCKED_PORT}` });
  });

  it('failover A→B (SIGKILL of A): B\'s twin applies the edited ruleset at start; the blocked port is dropped on B, the open one answers from B', async (t) => {
    const l = L();
    const [a, b] = l.hosts;
    const f = await l.failover(() => firewallAnswer(l, b));
    t.diagnostic(`${a}→${b}: kill → blocked port dropped and open port answering from ${b}: ${f.killToAnswerMs} ms (promotion ${f.promotion.ms} ms)`);
    assert.equal(f.promotion.outcome, 'booted');
    assert.equal(await l.lab.vipHolder(), b);
    const twin = await inspect(b);
    assert.equal(twin.State.Running, true);
    assert.equal(twin.HostConfig.RestartPolicy.Name, 'unless-stopped', 'the promoted twin has its restart policy back');
    assert.match(await hostRuleset(l, b), new RegExp(`tcp dport ${BLOCKED_PORT} counter packets \\d+ bytes \\d+ drop`), 'B\'s network namespace has the edited rule');
    // One more client connection each way: the dropped one is counted by B's rule, the open one is answered by B.
    const counted = (await droppedPackets(l, b)) ?? 0;
    assert.ok(counted > 0, 'B\'s rule already dropped the probes of the failover');
    assert.equal(await tryPort(l, l.lab.vip, BLOCKED_PORT), 'dropped');
    assert.equal(await tryPort(l, l.hostIp(b), BLOCKED_PORT), 'dropped', 'the rule is B\'s, not only the VIP\'s');
    assert.ok(((await droppedPackets(l, b)) ?? 0) > counted, 'B\'s rule counted the client\'s new connections');
    assert.deepEqual(await tryPort(l, l.lab.vip, OPEN_PORT), { page: `${b}:${OPEN_PORT}` });
  });
});
