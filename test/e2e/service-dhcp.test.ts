// DHCP and DNS failing over (issue 9): dnsmasq protected on A serves a range and DNS on the VIP; a real DHCP client
// (busybox udhcpc, running all along) in a client namespace on the lab's network takes a lease (dnsmasq's lease file
// in a named volume); a name is added on A
// (a hosts file in its upper layer, dnsmasq reloaded); `twinlayer agent` and keepalived on both hosts; A SIGKILLed
// whole. B's twin answers the name (dig, from the client) and acknowledges the client's renewal of the same address
// at once: dnsmasq is not authoritative, so without A's lease file it would ignore the renewal and the client would
// lose its address and start over (checked by hand: three rebinding broadcasts unanswered, then deconfig).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADDED_ADDRESS, ADDED_NAME, addName, DHCP, HOSTS_FILE, LEASE_DIR, LEASE_FILE, leases, resolve, startDhcp, startDhcpClient, type DhcpClient, type DhcpEvent } from '../../src/lab/service-dhcp.js';
import { dockerCli } from '../../src/lab/engine.js';
import { ServiceLab } from '../../src/lab/service-lab.js';

/** The named volume holding dnsmasq's lease dir. */
const LEASE_VOLUME = 'dhcp-leases';

describe('DHCP and DNS (dnsmasq) failing over with keepalived: the client keeps its address, the added name resolves from the twin', { timeout: 600_000 }, () => {
  let sl: ServiceLab | undefined;
  let client: DhcpClient | undefined;
  let lease: DhcpEvent | undefined;
  const logs: string[] = [];
  const L = (): ServiceLab => {
    assert.ok(sl, 'the lab is up');
    return sl;
  };
  const C = (): DhcpClient => {
    assert.ok(client, 'the DHCP client runs');
    return client;
  };

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd, keepalived)');
    sl = await ServiceLab.create({ clientAddress: 'dhcp', log: (l) => logs.push(l) });
    await startDhcp(sl, { volume: LEASE_VOLUME });
    await sl.start();
  });

  after(async () => {
    if (process.env['TWINLAYER_TEST_ECHO']) for (const line of logs) process.stderr.write(line + '\n');
    await sl?.destroy();
  });

  it('the client takes a lease from dnsmasq on A (DNS server: the VIP); the lease reaches the named volume of B\'s twin', async () => {
    const l = L();
    const [a, b] = l.hosts;
    client = await startDhcpClient(l);
    lease = await C().waitEvent('a lease', 0, (e) => e.event === 'bound');
    assert.match(lease.ip, new RegExp(`^${l.prefix.replace(/\./g, '\\.')}\\.15\\d$`), 'an address of the range');
    assert.equal(lease.serverId, l.hostIp(a), 'A\'s dnsmasq answered');
    assert.equal(lease.dns, l.lab.vip, 'the DNS server handed out is the VIP');
    assert.deepEqual(await C().addresses(), [lease.ip], 'the client configured its eth0');
    assert.ok((await leases(l, a)).includes(` ${lease.ip} `), 'A\'s lease file holds the lease');
    await l.waitTwinFile(b, DHCP, LEASE_FILE, ` ${lease.ip} `);
    await l.standbyConverged(b);
    const mounts = JSON.parse(await dockerCli(l.engine(b), ['inspect', '-f', '{{json .Mounts}}', DHCP])) as Array<{ Type: string; Name?: string; Destination: string }>;
    assert.deepEqual(mounts.map((m) => [m.Type, m.Name, m.Destination]), [['volume', LEASE_VOLUME, LEASE_DIR]], 'the twin mounts a volume of the same name');
  });

  it('a name added on A (its hosts file, dnsmasq reloaded) resolves on the VIP with dig from the client; B\'s twin has the file', async () => {
    const l = L();
    const [a, b] = l.hosts;
    assert.ok(lease);
    assert.equal(await resolve(l, lease.dns), null, 'not known before it is added');
    await l.replicate(DHCP, 'the added name', () => addName(l, a));
    assert.equal(await resolve(l, lease.dns), ADDED_ADDRESS);
    await l.waitTwinFile(b, DHCP, HOSTS_FILE, ADDED_NAME);
    await l.standbyConverged(b);
  });

  it('failover A→B (SIGKILL of A): the name resolves from B\'s twin; the client renews from B and keeps its address without losing it', async (t) => {
    const l = L();
    const [a, b] = l.hosts;
    assert.ok(lease);
    const f = await l.failover(async () => {
      const answer = await resolve(l, l.lab.vip);
      if (answer === null) return undefined;
      assert.equal(answer, ADDED_ADDRESS, `the VIP answered ${ADDED_NAME} with something else`);
      return answer;
    });
    t.diagnostic(`${a}→${b}: kill → ${ADDED_NAME} resolved on the VIP: ${f.killToAnswerMs} ms (promotion ${f.promotion.ms} ms)`);
    assert.equal(f.promotion.outcome, 'booted');
    assert.equal(await l.lab.vipHolder(), b);
    // The client renews now (SIGUSR1): its unicast to A goes unanswered, its broadcast reaches B's dnsmasq, which
    // knows the lease from A's lease file.
    const from = C().events.length;
    const renewedAt = Date.now();
    C().renew();
    const next = await C().waitEvent('the renewal answered', from, (e) => ['renew', 'bound', 'deconfig', 'leasefail', 'nak'].includes(e.event));
    t.diagnostic(`renewal asked → acknowledged: ${next.at - renewedAt} ms`);
    assert.deepEqual(
      { event: next.event, ip: next.ip, serverId: next.serverId },
      { event: 'renew', ip: lease.ip, serverId: l.hostIp(b) },
      `the client renewed its address from B without losing it first; events: ${JSON.stringify(C().events.slice(from))}`,
    );
    assert.deepEqual(await C().addresses(), [lease.ip], 'the client kept its address');
    assert.ok((await leases(l, b)).includes(` ${lease.ip} `), 'B\'s lease file holds the renewed lease');
    assert.equal(next.dns, l.lab.vip);
    assert.equal(await resolve(l, next.dns), ADDED_ADDRESS, 'the DNS server the renewal handed out answers the name');
  });
});
