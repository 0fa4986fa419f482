// The two-host lab: network namespaces joined by a bridge, keepalived (VRRPv3) in each host, optionally a Docker
// engine per host running inside its namespace. Shared by the integration tests and `twinlayer demo`.
// See README.md in this folder for the wiring and how hosts reach services of the root namespace.
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine, EngineKind } from './engine.js';
import { LabError } from './errors.js';
import type { Forward } from './forward.js';
import { startForward } from './forward.js';
import type { KeepalivedPlan, RunningKeepalived } from './keepalived.js';
import { startKeepalived } from './keepalived.js';
import type { LabProcess } from './processes.js';
import { isAlive, killHard, spawnLogged, withDescendants } from './processes.js';
import type { RunResult } from './run.js';
import { run } from './run.js';
import { chooseSubnet } from './subnet.js';
import type { Topology } from './topology.js';
import { addClientNamespace, buildTopology, netnsPids, planTopology, teardownTopology } from './topology.js';

export { LabError } from './errors.js';
export type { LabProcess } from './processes.js';
export type { RunResult } from './run.js';

/** A relay from the lab to a service of the root namespace; refuse() cuts the path (accept() heals it). */
export interface RootForward {
  host: string;
  port: number;
  refuse(): Promise<void>;
  accept(): Promise<void>;
}

export interface LabHost {
  name: string;
  netns: string;
  /** The host's own address inside the lab, e.g. 10.231.7.11. */
  ip: string;
  engine?: Engine;
}

export interface Lab {
  id: string;
  hosts: LabHost[];
  vip: string;
  bridgeNetns: string;
  /** Address of the bridge namespace (a neutral client for requests to the VIP). */
  bridgeAddress: string;
  /** The address hosts use to reach services of the root namespace (root end of the lab's uplink veth). */
  rootAddress: string;
  /** The lab's /24, e.g. 10.231.7.0/24. */
  subnet: string;
  /** The lab's private temp dir (configs, pidfiles, engine data roots); removed by destroy(). */
  dir: string;
  /**
   * Adds a client namespace on the lab's network (`eth0` on the bridge, no address: a DHCP client configures it, or
   * the caller adds one); `exec`/`spawn` take its name. Removed by destroy(). Returns the namespace's name.
   */
  addClient(name: string): Promise<string>;
  /** Run a command inside a host's namespace (or the bridge namespace when `host` is bridgeNetns, or a client's), bounded by a timeout (default 15 s). */
  exec(host: string, cmd: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Start a long-running process inside a host's namespace; the lab kills it on killHost/destroy. */
  spawn(host: string, cmd: string[], opts?: { env?: Record<string, string>; onLine?: (line: string) => void }): Promise<LabProcess>;
  /** Relay rootAddress:port to 127.0.0.1:targetPort of the root namespace (port 0 picks one); closed by destroy(). */
  forwardToRoot(targetPort: number, port?: number): Promise<RootForward>;
  /** Start keepalived in every host, host 0 first and alone until it holds the VIP (so it is MASTER), then the others. */
  startKeepalived(opts: { notify: Record<string, string>; advertIntSec?: number; env?: Record<string, string>; timeoutMs?: number }): Promise<void>;
  /**
   * Start keepalived again in one host whose keepalived is not running (after reviveHost), with the configuration
   * startKeepalived gave it (same instance, priority, notify script and env). BACKUP + nopreempt: it joins as BACKUP
   * while another host holds the VIP. Resolves once keepalived runs (not after an election).
   */
  startKeepalivedOn(host: string): Promise<void>;
  /**
   * Stop one host's keepalived as an operator would (SIGTERM): it leaves as a VRRP router does (a priority-0 advert,
   * so a peer takes over at once; the VIP removed; notify with STOP) while the rest of the host runs on. Resolves once
   * it has exited (bounded); startKeepalivedOn brings it back.
   */
  stopKeepalivedOn(host: string): Promise<void>;
  /** Which host holds the VIP now; null when none. Throws LAB_STATE if more than one does (split brain). */
  vipHolder(): Promise<string | null>;
  /** Bounded wait until `host` holds the VIP; returns the ms waited. */
  waitForVip(host: string, timeoutMs: number): Promise<number>;
  /**
   * Simulate the host dying: SIGKILL its keepalived, its engine (dockerd, containerd, shims, containers, also those
   * outside the host's network namespace) and every other process in its namespace, then take its eth0 down and drop the VIP from it (a dead host answers nothing).
   */
  killHost(host: string): Promise<void>;
  /**
   * Bring a killed host back as after a reboot: eth0 up again, its Docker engine started again on the same data root
   * (Engine.restart: Docker applies its restart policies, so `always`/`unless-stopped` containers run again). The
   * caller then starts its own processes (lab.spawn) and keepalived (startKeepalivedOn). What lived in the host's
   * /run is the caller's to clear (the lab keeps no such state).
   */
  reviveHost(host: string): Promise<void>;
  /** Start a Docker engine inside each host's namespace (engine.ts); `baseDirs` puts a host's engine (data root,
   *  exec root, socket) under a dir of the caller's, e.g. a small file system of its own. */
  /** `startTimeoutMs`: each engine's bound for /_ping, at start and at every restart (engine.ts; default 30 s).
   *  `kinds`: a host's engine kind (engine.ts: overlay2 or the containerd image store); default overlay2. */
  startEngines(opts?: { baseDirs?: Partial<Record<string, string>>; startTimeoutMs?: number; kinds?: Partial<Record<string, EngineKind>> }): Promise<void>;
  /** Tear everything down; idempotent; safe after partial setup failure. */
  destroy(): Promise<void>;
}

export interface CreateLabOptions {
  /** Host names, default ['primary', 'standby']. Host 0 is the preferred VRRP master. */
  hosts?: string[];
  /** A 10.x.y.0/24; default a free random 10.231.y.0/24. */
  subnet?: string;
  /** Parent of the lab's temp dir; default os.tmpdir(). */
  baseDir?: string;
  log?: (line: string) => void;
}

export async function createLab(opts: CreateLabOptions = {}): Promise<Lab> {
  const hostNames = opts.hosts ?? ['primary', 'standby'];
  if (hostNames.length < 1 || hostNames.length > 8 || new Set(hostNames).size !== hostNames.length) {
    throw new LabError('LAB_STATE', `Expected \`hosts\` to be 1-8 distinct names, got ${JSON.stringify(hostNames)}`);
  }
  const log = opts.log ?? ((): void => undefined);
  const id = randomBytes(2).toString('hex');
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), `tl-lab-${id}-`));
  let topology: Topology | undefined;
  const processes = new Set<LabProcess>();
  const keepaliveds = new Map<string, RunningKeepalived>();
  /** What startKeepalived was given, for startKeepalivedOn. */
  let keepalivedSetup: { plans: Map<string, KeepalivedPlan>; env?: Record<string, string> } | undefined;
  const forwards: Forward[] = [];
  const dead = new Set<string>();
  let destroyed: Promise<void> | undefined;

  const onSignal = (sig: NodeJS.Signals): void => {
    log(`lab ${id}: ${sig}, tearing down`);
    void destroy().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const hosts: LabHost[] = [];
  const hostByName = (name: string): LabHost => {
    const h = hosts.find((x) => x.name === name);
    if (!h) throw new LabError('LAB_STATE', `no lab host named ${JSON.stringify(name)}`, { hint: `hosts: ${hosts.map((x) => x.name).join(', ')}` });
    return h;
  };
  const nsOf = (name: string): string => {
    if (topology && name === topology.bridgeNetns) return name;
    return topology?.clients.find((c) => c.name === name)?.netns ?? hostByName(name).netns;
  };

  async function destroy(): Promise<void> {
    destroyed ??= (async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const problems: string[] = [];
      for (const f of forwards.splice(0)) await f.close();
      for (const h of hosts) {
        if (!h.engine) continue;
        try {
          await h.engine.stop();
        } catch (err) {
          problems.push(`engine ${h.name}: ${String(err)}`);
        }
      }
      // Whatever is left: processes the lab spawned, everything inside its namespaces, and their descendants.
      const roots = [...processes].filter((p) => p.running).map((p) => p.pid);
      if (topology) for (const ns of [topology.bridgeNetns, ...topology.hosts.map((h) => h.netns), ...topology.clients.map((c) => c.netns)]) roots.push(...(await netnsPids(ns)));
      const survivors = await killHard(await withDescendants(roots));
      if (survivors.length > 0) problems.push(`processes still alive after SIGKILL: ${survivors.join(' ')}`);
      if (topology) problems.push(...(await teardownTopology(topology)));
      await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch((err: unknown) => problems.push(`rm ${dir}: ${String(err)}`));
      if (problems.length > 0) throw new LabError('LAB_COMMAND', `lab ${id} teardown incomplete: ${problems.join('; ')}`);
      log(`lab ${id}: destroyed`);
    })();
    return destroyed;
  }

  try {
    const subnet = await chooseSubnet(opts.subnet);
    topology = planTopology(id, subnet, hostNames);
    for (const h of topology.hosts) hosts.push({ name: h.name, netns: h.netns, ip: h.ip });
    await buildTopology(topology);
    log(`lab ${id}: ${subnet.cidr}, hosts ${topology.hosts.map((h) => `${h.name}=${h.netns}/${h.ip}`).join(' ')}, vip ${topology.vip}`);
  } catch (err) {
    await destroy().catch((e: unknown) => log(`lab ${id}: cleanup after failed setup: ${String(e)}`));
    throw err;
  }
  const t = topology;

  const holders = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const h of hosts) {
      const r = await run('ip', ['netns', 'exec', h.netns, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'], { timeoutMs: 5_000 });
      if (r.code !== 0) throw new LabError('LAB_COMMAND', `cannot read addresses of ${h.name}: ${r.stderr.trim()}`);
      if (r.stdout.includes(` ${t.vip}/`)) out.push(h.name);
    }
    return out;
  };

  const lab: Lab = {
    id,
    hosts,
    vip: t.vip,
    bridgeNetns: t.bridgeNetns,
    bridgeAddress: t.bridgeAddress,
    rootAddress: t.rootAddress,
    subnet: t.subnet.cidr,
    dir,

    async addClient(name) {
      if (destroyed !== undefined) throw new LabError('LAB_STATE', `addClient(${name}): lab ${id} is destroyed`);
      if (!/^[a-z][a-z0-9-]{0,15}$/.test(name) || hosts.some((h) => h.name === name) || t.clients.some((c) => c.name === name)) {
        throw new LabError('LAB_STATE', `Expected a new client name of 1-16 lowercase letters, digits, dashes, got ${JSON.stringify(name)}`);
      }
      const c = await addClientNamespace(t, name, t.clients.length);
      log(`lab ${id}: client ${name} in ${c.netns} on the bridge (port ${c.port})`);
      return name;
    },

    exec(host, cmd, o = {}) {
      return run('ip', ['netns', 'exec', nsOf(host), ...cmd], { timeoutMs: o.timeoutMs ?? 15_000 });
    },

    async spawn(host, cmd, o = {}) {
      const p = await spawnLogged(`${host} ${cmd[0] ?? ''}`, 'ip', ['netns', 'exec', nsOf(host), ...cmd], {
        env: { ...process.env, ...o.env },
        log,
        ...(o.onLine ? { onLine: o.onLine } : {}),
      });
      processes.add(p);
      return p;
    },

    async forwardToRoot(targetPort, port = 0) {
      const f = await startForward(t.rootAddress, port, '127.0.0.1', targetPort);
      forwards.push(f);
      return { host: f.host, port: f.port, refuse: () => f.refuse(), accept: () => f.accept() };
    },

    async startKeepalived(o) {
      if (keepaliveds.size > 0) throw new LabError('LAB_STATE', `keepalived already started in lab ${id}`);
      const advert = o.advertIntSec ?? 0.1;
      if (!(advert >= 0.01 && advert <= 255)) throw new LabError('LAB_STATE', `Expected \`advertIntSec\` to be within 0.01..255, got ${advert}`);
      const vrid = randomInt(1, 256);
      for (const h of hosts) if (!o.notify[h.name]) throw new LabError('LAB_STATE', `no notify script for host ${h.name}`);
      // Generous: the first election waits out the master-down interval (~3 adverts) plus keepalived's start.
      const timeoutMs = o.timeoutMs ?? 10_000 + advert * 5_000;
      keepalivedSetup = { plans: new Map(), ...(o.env ? { env: o.env } : {}) };
      for (const [i, h] of hosts.entries()) {
        const plan: KeepalivedPlan = {
          labId: id,
          host: h.name,
          netns: h.netns,
          ip: h.ip,
          peers: hosts.filter((x) => x !== h).map((x) => x.ip),
          vip: t.vip,
          vrid,
          priority: Math.max(1, 150 - i * 50),
          advertIntSec: advert,
          notify: o.notify[h.name] ?? '',
          dir,
        };
        keepalivedSetup.plans.set(h.name, plan);
        const k = await startKeepalived(plan, { ...(o.env ? { env: o.env } : {}), log });
        keepaliveds.set(h.name, k);
        processes.add(k.proc);
        // Host 0 alone first: with every instance BACKUP + nopreempt, the first one up wins deterministically.
        if (i === 0) await lab.waitForVip(h.name, timeoutMs);
      }
      log(`lab ${id}: keepalived up (vrid ${vrid}, advert ${advert}s), ${hosts[0]?.name ?? ''} holds ${t.vip}`);
    },

    async startKeepalivedOn(host) {
      hostByName(host);
      const plan = keepalivedSetup?.plans.get(host);
      if (keepalivedSetup === undefined || plan === undefined) throw new LabError('LAB_STATE', `startKeepalivedOn(${host}): startKeepalived was never called in lab ${id}`);
      if (dead.has(host)) throw new LabError('LAB_STATE', `startKeepalivedOn(${host}): the host is dead; reviveHost first`);
      if (keepaliveds.get(host)?.proc.running === true) throw new LabError('LAB_STATE', `keepalived already runs in ${host}`);
      // A killed keepalived leaves its pidfiles; with them it refuses to start ("daemon is already running"). A reboot
      // clears them (/run).
      await rm(join(dir, `keepalived-${host}.pid`), { force: true });
      await rm(join(dir, `keepalived-${host}.vrrp.pid`), { force: true });
      const k = await startKeepalived(plan, { ...(keepalivedSetup.env ? { env: keepalivedSetup.env } : {}), log });
      keepaliveds.set(host, k);
      processes.add(k.proc);
      // Running means its VRRP child is up (keepalived exits at once on a bad start).
      const deadline = Date.now() + 10_000;
      for (;;) {
        const child = await k.vrrpPid();
        if (child !== null && (await isAlive(child))) break;
        if (!k.proc.running) throw new LabError('LAB_STATE', `keepalived of ${host} exited at start (see the lab log)`);
        if (Date.now() > deadline) throw new LabError('LAB_TIMEOUT', `keepalived of ${host}: no VRRP child within 10 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
      log(`lab ${id}: keepalived started again in ${host}`);
    },

    async stopKeepalivedOn(host) {
      hostByName(host);
      const k = keepaliveds.get(host);
      if (k === undefined || !k.proc.running) throw new LabError('LAB_STATE', `stopKeepalivedOn(${host}): keepalived does not run there`);
      k.proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const exited = await Promise.race([k.proc.exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
      clearTimeout(timer);
      if (!exited) throw new LabError('LAB_TIMEOUT', `keepalived of ${host} did not exit within 10 s of SIGTERM`);
      log(`lab ${id}: keepalived stopped in ${host}`);
    },

    async vipHolder() {
      const hs = await holders();
      if (hs.length > 1) throw new LabError('LAB_STATE', `split brain: ${hs.join(' and ')} all hold ${t.vip}`);
      return hs[0] ?? null;
    },

    async waitForVip(host, timeoutMs) {
      hostByName(host);
      const start = Date.now();
      for (;;) {
        const hs = await holders();
        if (hs.length === 1 && hs[0] === host) return Date.now() - start;
        if (Date.now() - start > timeoutMs) {
          throw new LabError('LAB_TIMEOUT', `${host} did not get the VIP ${t.vip} within ${timeoutMs} ms (holders: ${hs.join(', ') || 'none'})`);
        }
        const k = keepaliveds.get(host);
        if (k && !k.proc.running) throw new LabError('LAB_STATE', `keepalived of ${host} exited while waiting for the VIP`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },

    async killHost(host) {
      const h = hostByName(host);
      const roots: number[] = [];
      const k = keepaliveds.get(host);
      if (k) {
        roots.push(k.proc.pid);
        const child = await k.vrrpPid();
        if (child !== null) roots.push(child);
      }
      if (h.engine) roots.push(h.engine.pid, ...(await h.engine.containerPids()));
      roots.push(...(await netnsPids(h.netns)));
      const pids = await withDescendants(roots);
      const survivors = await killHard(pids);
      if (survivors.length > 0) throw new LabError('LAB_STATE', `${host}: processes survived SIGKILL: ${survivors.join(' ')}`);
      dead.add(host);
      // A SIGKILLed keepalived leaves the VIP configured; a dead machine would not answer for it any more.
      await run('ip', ['netns', 'exec', h.netns, 'ip', 'addr', 'del', `${t.vip}/24`, 'dev', 'eth0']);
      await run('ip', ['netns', 'exec', h.netns, 'ip', 'link', 'set', 'eth0', 'down']);
      log(`lab ${id}: killed ${host} (${pids.length} processes)`);
    },

    async reviveHost(host) {
      const h = hostByName(host);
      if (!dead.has(host)) throw new LabError('LAB_STATE', `reviveHost(${host}): the host was not killed`);
      const up = await run('ip', ['netns', 'exec', h.netns, 'ip', 'link', 'set', 'eth0', 'up'], { timeoutMs: 5_000 });
      if (up.code !== 0) throw new LabError('LAB_COMMAND', `reviveHost(${host}): eth0 up: ${up.stderr.trim()}`);
      dead.delete(host);
      if (h.engine) await h.engine.restart();
      log(`lab ${id}: revived ${host}${h.engine ? ` (engine pid ${h.engine.pid})` : ''}`);
    },

    async startEngines(o = {}) {
      const { startEngine } = await import('./engine.js');
      for (const h of hosts) {
        if (h.engine) continue;
        if (dead.has(h.name)) throw new LabError('LAB_STATE', `host ${h.name} was killed`);
        // engine.ts accepts 1-24 letters, digits, dashes.
        const name = `tl-${id}-${h.name.replace(/[^a-zA-Z0-9-]/g, '-')}`.slice(0, 24);
        const kind = o.kinds?.[h.name];
        h.engine = await startEngine({
          name, baseDir: o.baseDirs?.[h.name] ?? dir, netns: h.netns, log,
          ...(o.startTimeoutMs === undefined ? {} : { startTimeoutMs: o.startTimeoutMs }), ...(kind === undefined ? {} : { kind }),
        });
      }
    },

    destroy,
  };
  return lab;
}

/** True while `pid` runs (for tests asserting that the lab left nothing behind). */
export { isAlive };
