// Issue 7 end to end with keepalived: two lab hosts, a Docker engine and `twinlayer agent` in each, real keepalived
// (VRRPv3, nopreempt, notify.sh for every state) on both, the embedded S3 server in the root namespace. Three
// failovers in a row, A→B→A→B, with writes between each: the whole primary is SIGKILLed (agent, keepalived,
// dockerd, containerd, the container), the VIP serves the latest version that reached the bucket, and the killed
// host comes back as after a reboot (engine with its restart policies, agent, keepalived) and converges as the
// standby (the last time with its VRRP state file still saying MASTER, as if /run had survived). Before the second kill the primary is cut off from the bucket and writes what can never reach it: that
// divergent tail is found under divergent/ after it rejoins, byte-exact, and not in the new primary's container.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import { extract } from 'tar';
import { AgentLab, WEB } from '../../src/lab/agent-lab.js';
import { dockerCli } from '../../src/lab/engine.js';
import { waitFor } from '../../src/lab/wait.js';
import { asDigest } from '../../src/store/index.js';
import { diffTrees, readExport } from '../support/export-tree.js';

const WAIT = 30_000;

interface Inspect { State: { Running: boolean }; Config: { Labels: Record<string, string> }; HostConfig: { RestartPolicy: { Name: string } } }

describe('twinlayer agent with keepalived: three failovers, rejoins after a reboot, a divergent tail', { timeout: 300_000 }, () => {
  let al: AgentLab | undefined;
  const lines: string[] = [];
  let version = 0;
  /** The last version that reached the bucket. */
  let latest = '';

  const L = (): AgentLab => {
    assert.ok(al, 'the lab is up');
    return al;
  };
  const docker = (host: string): Docker => new Docker({ socketPath: L().engine(host).socketPath });
  const inspect = async (host: string): Promise<Inspect | null> => {
    try {
      return (await docker(host).getContainer(WEB).inspect()) as Inspect;
    } catch {
      return null;
    }
  };

  /** Writes the next version of the page on `host` and waits until its commit is in the bucket. */
  async function writeVersion(host: string): Promise<string> {
    const l = L();
    version++;
    const content = `<h1>version ${version} ${Math.random().toString(16).slice(2, 10)}</h1>`;
    const before = await l.head();
    await l.write(host, '/var/www/index.html', content);
    await l.waitInBucket(before, `version ${version}`);
    // The head moving is the burst's first commit; the write may need the next (the shell's O_TRUNC came first).
    await l.shipped(host, `version ${version}`);
    latest = content;
    return content;
  }

  /** SIGKILL of the whole primary; returns kill → first good response on the VIP (ms). Any other answer fails. */
  async function killAndServe(primary: string): Promise<number> {
    const l = L();
    const standby = l.other(primary);
    assert.equal(await l.lab.vipHolder(), primary);
    const killedAt = Date.now();
    await l.kill(primary);
    const firstGood = await waitFor(`the latest version on the VIP from ${standby}`, WAIT, async () => {
      const page = await l.fetchPage();
      if (page === null) return undefined;
      assert.equal(page.trim(), latest, `the VIP served something other than the latest version in the bucket: ${page}`);
      return Date.now();
    }, 10);
    assert.equal(await l.lab.vipHolder(), standby);
    // The twin answers a little before its promotion is over (restart policy, pusher): its report's ms is set at the end.
    const s = await waitFor(`${standby}'s promotion over`, WAIT, async () => {
      const st = await l.status(standby);
      return st?.role === 'primary' && (st.lastPromotion?.ms ?? 0) > 0 ? st : undefined;
    }, 20);
    assert.equal(s.lastPromotion?.outcome, 'booted');
    assert.equal((await inspect(standby))?.HostConfig.RestartPolicy.Name, 'unless-stopped', 'the promoted twin has its restart policy back');
    return firstGood - killedAt;
  }

  /**
   * The killed host comes back as after a reboot: its engine restarts the stale container (restart policy), its
   * agent stops it within 2 s of its first log line, keepalived rejoins as BACKUP, and it converges as the standby.
   */
  async function rejoin(host: string, ctx: { diagnostic(msg: string): void }, opts: { keepVrrpStateFile?: boolean } = {}): Promise<void> {
    const l = L();
    const primary = l.other(host);
    await l.revive(host, opts);
    const stale = await waitFor(`the stale container running again on ${host} (restart policy)`, WAIT, async () => (await l.runningId(host)) ?? undefined, 50);
    // Watched from outside while the agent starts: the moment it is seen stopped (or removed: a container that is
    // no twin is replaced by one after its tail is saved) bounds the real stop from above.
    let stoppedSeenAt: number | undefined;
    const watching = (async () => {
      for (let i = 0; i < 2000 && stoppedSeenAt === undefined; i++) {
        if ((await l.runningId(host, stale)) === null) stoppedSeenAt = Date.now();
        else await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const agent = await l.startAgent(host);
    await watching;
    const firstLineAt = Date.parse(agent.lines[0]?.time ?? '');
    assert.ok(stoppedSeenAt !== undefined && Number.isFinite(firstLineAt), 'the stale container was seen stopped');
    ctx.diagnostic(`${host}: stale container stopped ≤ ${stoppedSeenAt - firstLineAt} ms after the agent's first log line`);
    assert.ok(stoppedSeenAt - firstLineAt <= 2000, `stale container stopped ${stoppedSeenAt - firstLineAt} ms after the agent's first log line`);
    await l.lab.startKeepalivedOn(host);
    const s = await waitFor(`${host} converged as the standby`, WAIT, async () => {
      const c = await l.converged(host);
      return c?.vrrp.state === 'BACKUP' ? c : undefined;
    }, 50);
    assert.equal(s.role, 'standby');
    assert.equal(await l.lab.vipHolder(), primary, 'nopreempt: the rejoining host does not take the VIP');
    const twin = await inspect(host);
    assert.equal(twin?.State.Running, false);
    assert.equal(twin.Config.Labels['twinlayer.twin'], 'true');
    assert.ok(['no', ''].includes(twin.HostConfig.RestartPolicy.Name), 'a twin runs with restart policy no');
    const [tp, tt] = await Promise.all([readExport(await docker(primary).getContainer(WEB).export()), readExport(await docker(host).getContainer(WEB).export())]);
    const diff = diffTrees(tp, tt, [primary, host]);
    assert.deepEqual(diff, [], `docker export of ${primary} and ${host} differ:\n${diff.slice(0, 20).join('\n')}`);
  }

  before(async () => {
    al = await AgentLab.create({ log: (line) => lines.push(line) });
  });

  after(async () => {
    if (process.env['TWINLAYER_TEST_ECHO']) for (const line of lines) process.stderr.write(line + '\n');
    await al?.destroy();
  });

  it('keepalived makes A MASTER: its agent claims generation 1 and protects web; B keeps a full-replica twin', async () => {
    const l = L();
    const [a, b] = l.hosts;
    await Promise.all([l.startAgent(a), l.startAgent(b)]);
    await l.startKeepalived();
    const s = await waitFor('A primary of generation 1', WAIT, async () => {
      const st = await l.status(a);
      return st?.role === 'primary' && st.claim?.status === 'owner' ? st : undefined;
    }, 50);
    assert.equal(s.generation, 1);
    assert.equal((await l.bucket.readClaim(1 as never))?.host, l.hostId(a));
    await writeVersion(a);
    await waitFor('B converged', WAIT, () => l.converged(b), 50);
    assert.equal((await inspect(b))?.Config.Labels['twinlayer.enable'], 'true', 'the twin carries the opt-in label');
    assert.equal((await l.fetchPage())?.trim(), latest);
  });

  it('failover 1, A→B: the VIP serves the latest version in the bucket; A rejoins as the standby', async (ctx) => {
    const l = L();
    const [a] = l.hosts;
    await writeVersion(a);
    const ms = await killAndServe(a);
    ctx.diagnostic(`A→B: kill → first good response ${ms} ms`);
    await rejoin(a, ctx);
  });

  it('failover 2, B→A after B was cut off from the bucket: A serves the last version that reached it; B\'s divergent tail is saved byte-exact and not applied', async (ctx) => {
    const l = L();
    const [a, b] = l.hosts;
    await writeVersion(b);
    await l.cutBucket(b);
    const divergentPage = '<h1>divergent: never reached the bucket</h1>';
    await l.write(b, '/var/www/index.html', divergentPage);
    await l.write(b, '/var/www/lost.txt', 'lost on B');
    // B's pusher saw the change and could not ship it.
    await waitFor('B failing to ship', WAIT, async () => {
      const s = await l.status(b);
      return (s?.containers.find((c) => c.name === WEB)?.consecutiveFailures ?? 0) > 0 ? true : undefined;
    }, 50);
    const ms = await killAndServe(b);
    ctx.diagnostic(`B→A: kill → first good response ${ms} ms`);
    await assert.rejects(dockerCli(l.engine(a), ['exec', WEB, 'cat', '/var/www/lost.txt']), 'what never reached the bucket is not on A');
    await rejoin(b, ctx);
    const s = await l.status(b);
    assert.deepEqual(s?.divergent.map((d) => d.container), [WEB], `B reports one divergent tail: ${JSON.stringify(s?.divergent)}`);
    const items = await l.bucket.listDivergent(l.hostId(b));
    const records = items.flatMap((i) => ('record' in i ? [i.record] : []));
    assert.equal(records.length, 1, `one divergent record of B: ${JSON.stringify(items)}`);
    const rec = records[0]!;
    assert.equal(rec.container, WEB);
    assert.equal(rec.generation, 2, 'B wrote generation 2');
    assert.equal(rec.claimGeneration, 3, 'A\'s claim of generation 3 superseded it');
    const dir = join(l.lab.dir, 'divergent-b');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'tail.tar.gz');
    await l.bucket.downloadBlob(asDigest(rec.digest), rec.size, file);
    await extract({ file, cwd: dir });
    assert.equal(await readFile(join(dir, 'var/www/index.html'), 'utf8'), `${divergentPage}\n`);
    assert.equal(await readFile(join(dir, 'var/www/lost.txt'), 'utf8'), 'lost on B\n');
    // Not applied: A (primary) and B (its twin) hold the last version that reached the bucket.
    await assert.rejects(dockerCli(l.engine(a), ['exec', WEB, 'cat', '/var/www/lost.txt']));
    assert.equal((await dockerCli(l.engine(a), ['exec', WEB, 'cat', '/var/www/index.html'])).trim(), latest);
  });

  it('failover 3, A→B: the VIP serves the latest version; A rejoins as the standby and follows B', async (ctx) => {
    const l = L();
    const [a, b] = l.hosts;
    await writeVersion(a);
    const ms = await killAndServe(a);
    ctx.diagnostic(`A→B: kill → first good response ${ms} ms`);
    // This time the host's /run survived: its VRRP state file still says MASTER, from before B's claim. That MASTER
    // is superseded: the agent must not promote on it (it would take generation 5 from B, which serves).
    await rejoin(a, ctx, { keepVrrpStateFile: true });
    const s = await l.status(a);
    assert.equal(s?.fenced, null, 'keepalived\'s BACKUP lifted the latch');
    assert.equal((await l.bucket.listGenerations()).at(-1), 4, 'A claimed nothing on its stale MASTER');
    await writeVersion(b);
    await waitFor('A converged on B\'s latest write', WAIT, () => l.converged(a), 50);
    const gens = await l.bucket.listGenerations();
    assert.equal(gens.at(-1), 4, 'four generations: A, B, A, B');
    assert.deepEqual(await Promise.all([1, 2, 3, 4].map(async (g) => (await l.bucket.readClaim(g as never))?.host)), [l.hostId(a), l.hostId(b), l.hostId(a), l.hostId(b)]);
    assert.equal((await l.fetchPage())?.trim(), latest);
  });

  it('split brain: VRRP between the hosts cut, the bucket reachable by both: within 2 s of the claim one host owns the newest generation and runs web; healed, one primary remains', async (ctx) => {
    const l = L();
    const primary = await l.lab.vipHolder();
    assert.ok(primary !== null);
    const other = l.other(primary);
    const before = await l.head();
    const holdsVip = async (h: string): Promise<boolean> => (await l.lab.exec(h, ['ip', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout.includes(`${l.lab.vip}/`);
    // VRRP (IP protocol 112) dropped both ways; the bucket (TCP through the bridge) still flows.
    const rule = ['INPUT', '-p', 'vrrp', '-j', 'DROP'];
    for (const h of l.hosts) {
      const r = await l.lab.exec(h, ['iptables', '-I', ...rule]);
      assert.equal(r.code, 0, `iptables in ${h}: ${r.stderr}`);
    }
    try {
      await waitFor('both hosts hold the VIP (split brain)', WAIT, async () => ((await holdsVip(primary)) && (await holdsVip(other)) ? true : undefined), 50);
      const st = await waitFor(`${other} promoted in a new generation`, WAIT, async () => {
        const s = await l.status(other);
        return s?.role === 'primary' && (s.generation ?? 0) > before.generation && (s.lastPromotion?.ms ?? 0) > 0 ? s : undefined;
      }, 50);
      const claim = await l.bucket.readClaim(st.generation as never);
      assert.equal(claim?.host, l.hostId(other));
      const claimedAt = Date.parse(claim?.claimedAt ?? '');
      const stoppedAt = await waitFor(`${primary} stops web`, WAIT, async () => ((await l.runningId(primary)) === null ? Date.now() : undefined), 20);
      ctx.diagnostic(`split brain: claim → the fenced host's web stopped ${stoppedAt - claimedAt} ms`);
      assert.ok(stoppedAt - claimedAt <= 2000, `${primary} stopped web ${stoppedAt - claimedAt} ms after the claim`);
      assert.equal(await l.bucket.newestGenerationFrom(st.generation as never), st.generation, 'exactly one newest generation');
      assert.notEqual(await l.runningId(other), null, `${other} runs web`);
      const sp = await waitFor(`${primary} standing down while VRRP calls it MASTER`, WAIT, async () => {
        const s = await l.status(primary);
        return s?.role === 'standby' && s.fenced !== null ? s : undefined;
      }, 50);
      assert.equal(sp.vrrp.state, 'MASTER');
    } finally {
      for (const h of l.hosts) await l.lab.exec(h, ['iptables', '-D', ...rule]);
    }
    // Healed: keepalived keeps one MASTER; whichever it is, the agents converge on it (an owner that goes BACKUP
    // releases its generation, and the fenced MASTER takes over).
    const winner = await waitFor('one VIP holder again', WAIT, async () => (await l.lab.vipHolder().catch(() => null)) ?? undefined, 100);
    await waitFor(`${winner} primary with web running, the other a standby with web stopped`, WAIT, async () => {
      const sw = await l.status(winner);
      const so = await l.status(l.other(winner));
      const ok = sw?.role === 'primary' && sw.fenced === null && so?.role === 'standby' && (await l.runningId(winner)) !== null && (await l.runningId(l.other(winner))) === null;
      return ok ? true : undefined;
    }, 100);
    assert.equal((await l.fetchPage())?.trim(), latest, 'the VIP serves the latest version that reached the bucket');
    await writeVersion(winner);
    await waitFor('the standby converged on the winner\'s write', WAIT, () => l.converged(l.other(winner)), 50);
  });
});
