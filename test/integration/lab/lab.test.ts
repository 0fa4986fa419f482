// (busybox 1.35 wget segfaults on a refused connection, hence curl.)
// The two-host lab against the real kernel and keepalived: election, VIP service, failover timing, teardown.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Lab } from '../../../src/lab/index.js';
import { createLab, isAlive } from '../../../src/lab/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli } from '../../../src/lab/engine.js';

const logLines: string[] = [];
const log = (line: string): void => {
  logLines.push(line);
  if (process.env['TL_LAB_VERBOSE']) console.log(line);
};

/** Bounded poll: returns the first truthy value of `fn`, or throws with `what` after `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | null | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function events(lab: Lab, host: string): Promise<string[][]> {
  const text = await readFile(join(lab.dir, `events-${host}`), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => l.split(' '));
}

function netnsList(): string {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
}

describe('lab: keepalived election, VIP and failover', () => {
  let lab: Lab | undefined;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, keepalived)');
    lab = await createLab({ log });
    const notify: Record<string, string> = {};
    for (const h of lab.hosts) {
      const script = join(lab.dir, `notify-${h.name}.sh`);
      // Args: TYPE NAME STATE PRIORITY; the first column is the wall clock in ns for the failover time.
      await writeFile(script, `#!/bin/sh\necho "$(date +%s%N) $* $TL_TEST_MARK" >> '${join(lab.dir, `events-${h.name}`)}'\n`);
      await chmod(script, 0o700);
      notify[h.name] = script;
      const www = join(lab.dir, `www-${h.name}`);
      await mkdir(www);
      await writeFile(join(www, 'index.html'), `served by ${h.name}\n`);
    }
    await lab.startKeepalived({ notify, advertIntSec: 0.1, env: { TL_TEST_MARK: 'env-ok' } });
    for (const h of lab.hosts) {
      await lab.spawn(h.name, ['/bin/busybox', 'httpd', '-f', '-p', `${lab.vip}:8080`, '-h', join(lab.dir, `www-${h.name}`)]);
    }
  });

  after(async () => {
    await lab?.destroy();
  });

  const fetchVip = async (l: Lab): Promise<string | undefined> => {
    const r = await l.exec(l.bridgeNetns, ['curl', '-sS', '--max-time', '1', `http://${l.vip}:8080/`], { timeoutMs: 3_000 });
    return r.code === 0 ? r.stdout.trim() : undefined;
  };

  test('primary is MASTER, standby BACKUP, and the VIP serves the primary', async () => {
    assert.ok(lab);
    const l = lab;
    assert.equal(await l.vipHolder(), 'primary');
    const primary = await until('MASTER notify on primary', 5_000, async () => (await events(l, 'primary')).find((e) => e[3] === 'MASTER'));
    assert.deepEqual(primary.slice(1), ['INSTANCE', `tl_${l.id}`, 'MASTER', '150', 'env-ok']);
    const standby = await until('BACKUP notify on standby', 5_000, async () => (await events(l, 'standby')).find((e) => e[3] === 'BACKUP'));
    assert.deepEqual(standby.slice(1), ['INSTANCE', `tl_${l.id}`, 'BACKUP', '100', 'env-ok']);
    assert.equal((await events(l, 'standby')).some((e) => e[3] === 'MASTER'), false, 'standby must not have been MASTER');
    assert.equal(await until('page on the VIP', 5_000, () => fetchVip(l)), 'served by primary');
  });

  test('services of the root namespace are reachable from a host through forwardToRoot', async () => {
    assert.ok(lab);
    const server = createServer((_req, res) => res.end('root ns\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const fwd = await lab.forwardToRoot((server.address() as AddressInfo).port);
      assert.equal(fwd.host, lab.rootAddress);
      const r = await lab.exec('standby', ['curl', '-sS', '--max-time', '2', `http://${fwd.host}:${fwd.port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'root ns\n');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('killing the primary moves the VIP: standby notified MASTER, the URL serves the standby', async () => {
    assert.ok(lab);
    const l = lab;
    const killedAtNs = BigInt(Date.now()) * 1_000_000n;
    await l.killHost('primary');
    const master = await until('MASTER notify on standby', 10_000, async () => (await events(l, 'standby')).find((e) => e[3] === 'MASTER'));
    const tookMs = Number(BigInt(master[0] ?? '0') - killedAtNs) / 1e6;
    console.log(`# failover: primary killed -> standby MASTER notify in ${tookMs.toFixed(0)} ms (advert_int 0.1 s)`);
    assert.ok(tookMs > 0, `notify time ${tookMs} ms must come after the kill`);
    assert.equal(master[4], '100');
    await l.waitForVip('standby', 5_000);
    assert.equal(await l.vipHolder(), 'standby');
    assert.equal(await until('standby page on the VIP', 5_000, async () => ((await fetchVip(l)) === 'served by standby' ? 'ok' : undefined)), 'ok');
  });

  test('a killed host revived with its keepalived started again rejoins as BACKUP; the VIP stays (nopreempt)', async () => {
    assert.ok(lab);
    const l = lab;
    await assert.rejects(l.startKeepalivedOn('primary'), /dead/, 'keepalived of a dead host does not start');
    await assert.rejects(l.reviveHost('standby'), /not killed/);
    const before = (await events(l, 'primary')).length;
    await l.reviveHost('primary');
    // eth0 is up again: the standby reaches the primary's own address.
    const primaryIp = l.hosts[0]?.ip ?? '';
    const ping = await l.exec('standby', ['/bin/busybox', 'ping', '-c', '1', '-W', '1', primaryIp], { timeoutMs: 5_000 });
    assert.equal(ping.code, 0, `standby pings the revived primary: ${ping.stderr}`);
    await l.startKeepalivedOn('primary');
    await assert.rejects(l.startKeepalivedOn('primary'), /already runs/);
    const backup = await until('BACKUP notify on the revived primary', 10_000, async () => (await events(l, 'primary')).slice(before).find((e) => e[3] === 'BACKUP'));
    assert.deepEqual(backup.slice(1), ['INSTANCE', `tl_${l.id}`, 'BACKUP', '150', 'env-ok']);
    // Several advert intervals (0.1 s) later the standby still holds the VIP although the primary's priority is higher.
    const settleUntil = Date.now() + 1_000;
    while (Date.now() < settleUntil) {
      assert.equal(await l.vipHolder(), 'standby');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await events(l, 'primary')).slice(before).some((e) => e[3] === 'MASTER'), false, 'the revived primary did not take the VIP');
    assert.equal(await until('standby page on the VIP', 5_000, async () => ((await fetchVip(l)) === 'served by standby' ? 'ok' : undefined)), 'ok');
  });

  test('stopping the MASTER\'s keepalived (SIGTERM) hands the VIP over at once, notified STOP; started again it rejoins as BACKUP', async () => {
    assert.ok(lab);
    const l = lab;
    assert.equal(await l.vipHolder(), 'standby');
    const [beforeP, beforeS] = [(await events(l, 'primary')).length, (await events(l, 'standby')).length];
    await l.stopKeepalivedOn('standby');
    await assert.rejects(l.stopKeepalivedOn('standby'), /does not run/);
    await until('MASTER notify on the primary', 5_000, async () => (await events(l, 'primary')).slice(beforeP).find((e) => e[3] === 'MASTER'));
    await until('STOP notify on the standby', 5_000, async () => (await events(l, 'standby')).slice(beforeS).find((e) => e[3] === 'STOP'));
    await l.waitForVip('primary', 5_000);
    // Its httpd died with the host kill above: the revived host serves again.
    await l.spawn('primary', ['/bin/busybox', 'httpd', '-f', '-p', `${l.vip}:8080`, '-h', join(l.dir, 'www-primary')]);
    assert.equal(await until('primary page on the VIP', 5_000, async () => ((await fetchVip(l)) === 'served by primary' ? 'ok' : undefined)), 'ok');
    await l.startKeepalivedOn('standby');
    await until('BACKUP notify on the standby', 10_000, async () => (await events(l, 'standby')).slice(beforeS).find((e) => e[3] === 'BACKUP'));
    assert.equal(await l.vipHolder(), 'primary');
  });

  test('destroy leaves no namespace, veth, process or temp dir behind', async () => {
    assert.ok(lab);
    const l = lab;
    const names = [l.bridgeNetns, ...l.hosts.map((h) => h.netns)];
    const pids = names.flatMap(netnsPidsOf);
    assert.ok(pids.length >= 2, `expected the standby's keepalived and httpd in the lab, got pids ${pids.join(' ')}`);
    await l.destroy();
    await l.destroy(); // idempotent
    const left = netnsList();
    for (const ns of names) assert.ok(!left.split('\n').some((line) => line.split(' ')[0] === ns), `netns ${ns} left behind`);
    assert.throws(() => execFileSync('ip', ['link', 'show', 'dev', `tl-${l.id}-r`], { stdio: 'ignore' }), 'root-side veth left behind');
    for (const pid of pids) assert.equal(await isAlive(pid), false, `pid ${pid} still alive`);
    await assert.rejects(stat(l.dir), 'lab temp dir left behind');
  });
});

describe('lab: a Docker engine inside each host namespace', () => {
  let lab: Lab | undefined;
  /** A container on host 0 with `--restart always` (no network: it lives outside the host's namespace). */
  let keeperPid = 0;
  let revivedKeeperPid = 0;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd)');
    lab = await createLab({ log });
    await lab.startEngines();
  });

  after(async () => {
    await lab?.destroy();
  });

  test('--network host containers serve on their host address, reachable from the other host; killHost ends them', async () => {
    assert.ok(lab);
    const l = lab;
    const containerPids = new Map<string, number>();
    for (const h of l.hosts) {
      const engine = h.engine;
      assert.ok(engine, `engine of ${h.name}`);
      assert.ok(netnsPidsOf(h.netns).includes(engine.pid), `dockerd of ${h.name} runs inside ${h.netns}`);
      await importBusyboxImage(engine.socketPath, 'tl-lab-busybox:1');
      const script = `mkdir -p /tmp/w && echo "container on ${h.name}" > /tmp/w/index.html && exec httpd -f -p ${h.ip}:8080 -h /tmp/w`;
      const id = (await dockerCli(engine, ['run', '-d', '--network', 'host', '--name', 'web', 'tl-lab-busybox:1', 'sh', '-c', script])).trim();
      const pid = Number((await dockerCli(engine, ['inspect', '-f', '{{.State.Pid}}', id])).trim());
      assert.ok(pid > 0, `container pid on ${h.name}`);
      containerPids.set(h.name, pid);
    }
    const [a, b] = l.hosts;
    assert.ok(a && b);
    const get = async (from: string, ip: string): Promise<string | undefined> => {
      const r = await l.exec(from, ['curl', '-sS', '--max-time', '1', `http://${ip}:8080/`], { timeoutMs: 3_000 });
      return r.code === 0 ? r.stdout : undefined;
    };
    assert.equal(await until(`${a.name}'s container from ${b.name}`, 10_000, () => get(b.name, a.ip)), `container on ${a.name}\n`);
    assert.equal(await until(`${b.name}'s container from ${a.name}`, 10_000, () => get(a.name, b.ip)), `container on ${b.name}\n`);

    assert.ok(a.engine);
    await dockerCli(a.engine, ['run', '-d', '--name', 'keeper', '--restart', 'always', '--network', 'none', 'tl-lab-busybox:1', 'sleep', '3600']);
    keeperPid = Number((await dockerCli(a.engine, ['inspect', '-f', '{{.State.Pid}}', 'keeper'])).trim());
    assert.ok(keeperPid > 0);
    const dockerdPid = a.engine.pid;
    await l.killHost(a.name);
    assert.equal(await isAlive(dockerdPid), false, 'dockerd of the killed host is gone');
    assert.equal(await isAlive(containerPids.get(a.name) ?? 0), false, 'container process of the killed host is gone');
    assert.equal(await isAlive(keeperPid), false, 'a container outside the host\'s network namespace is gone too');
    assert.equal(await isAlive(containerPids.get(b.name) ?? 0), true, 'the other host keeps running');
    const r = await l.exec(b.name, ['curl', '-sS', '--max-time', '1', `http://${a.ip}:8080/`], { timeoutMs: 3_000 });
    assert.notEqual(r.code, 0, 'a killed host answers nothing');
  });

  test('reviveHost restarts the engine on its data root: restart policies apply, the stale container runs again', async () => {
    assert.ok(lab);
    const l = lab;
    const [a, b] = l.hosts;
    assert.ok(a?.engine && b?.engine);
    const engine = a.engine;
    const oldPid = engine.pid;
    await l.reviveHost(a.name);
    assert.notEqual(engine.pid, oldPid, 'a new dockerd');
    assert.ok(netnsPidsOf(a.netns).includes(engine.pid), `the revived dockerd runs inside ${a.netns}`);
    await assert.rejects(engine.restart(), /still runs/, 'restart refuses a live dockerd');
    // `--restart always` came back by itself; `web` (no policy) stays exited.
    const state = async (name: string): Promise<string> => (await dockerCli(engine, ['inspect', '-f', '{{.State.Status}} {{.State.Pid}}', name])).trim();
    const keeper = await until('keeper running again', 30_000, async () => {
      const [status, pid] = (await state('keeper')).split(' ');
      return status === 'running' && Number(pid) > 0 ? Number(pid) : undefined;
    });
    assert.notEqual(keeper, keeperPid, 'keeper was started again (a new process)');
    assert.match(await state('web'), /^exited /);
    revivedKeeperPid = keeper;
    // The revived host serves again on its address.
    await dockerCli(engine, ['start', 'web']);
    assert.equal(await until(`${a.name}'s container from ${b.name} after revive`, 10_000, async () => {
      const r = await l.exec(b.name, ['curl', '-sS', '--max-time', '1', `http://${a.ip}:8080/`], { timeoutMs: 3_000 });
      return r.code === 0 ? r.stdout : undefined;
    }), `container on ${a.name}\n`);
  });

  test('destroy stops the surviving engine and leaves no namespace, mount or process behind', async () => {
    assert.ok(lab);
    const l = lab;
    const pids = [...l.hosts.flatMap((h) => netnsPidsOf(h.netns)), ...l.hosts.map((h) => h.engine?.pid ?? 0).filter((p) => p > 0)];
    assert.ok(pids.length > 0, 'the standby engine still runs before destroy');
    assert.ok(revivedKeeperPid > 0 && (await isAlive(revivedKeeperPid)), 'the revived engine\'s container runs before destroy');
    pids.push(revivedKeeperPid);
    await l.destroy();
    for (const pid of pids) assert.equal(await isAlive(pid), false, `pid ${pid} still alive`);
    const left = netnsList().split('\n').map((line) => line.split(' ')[0]);
    for (const ns of [l.bridgeNetns, ...l.hosts.map((h) => h.netns)]) assert.ok(!left.includes(ns), `netns ${ns} left behind`);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(l.dir), `mounts left under ${l.dir}`);
    await assert.rejects(stat(l.dir), 'lab temp dir left behind');
  });
});

function netnsPidsOf(ns: string): number[] {
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
}
