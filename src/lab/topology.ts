// The lab's wiring: one bridge namespace, one namespace per host, a veth per host into the bridge, and one veth
// from the root namespace into the bridge so hosts can reach services of the root namespace at `rootAddress`.
// Everything is named after the lab id, so several labs (and other engineers' labs) never collide.
import type { Subnet } from './subnet.js';
import { mustRun, run } from './run.js';

export interface HostWiring {
  name: string;
  netns: string;
  ip: string;
}

export interface Topology {
  id: string;
  subnet: Subnet;
  bridgeNetns: string;
  /** Address of the bridge namespace itself (useful as a neutral client). */
  bridgeAddress: string;
  /** Root-namespace end of the uplink veth and its address. */
  rootLink: string;
  rootAddress: string;
  vip: string;
  hosts: HostWiring[];
  /** Client namespaces added after the build (addClient), torn down with the lab. */
  clients: ClientWiring[];
}

/** A client namespace on the lab's network: `eth0` on the bridge with no address (a DHCP client gives it one). */
export interface ClientWiring {
  name: string;
  netns: string;
  /** Its port on the bridge (in the bridge namespace). */
  port: string;
}

export function planTopology(id: string, subnet: Subnet, hostNames: readonly string[]): Topology {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  return {
    id,
    subnet,
    bridgeNetns: `tl-${id}-br`,
    bridgeAddress: `${subnet.prefix}.2`,
    rootLink: `tl-${id}-r`,
    rootAddress: `${subnet.prefix}.1`,
    vip: `${subnet.prefix}.100`,
    hosts: hostNames.map((name, i) => ({ name, netns: `tl-${id}-${letters[i] ?? String(i)}`, ip: `${subnet.prefix}.${11 + i}` })),
    clients: [],
  };
}

const inNs = (ns: string, ...args: string[]): string[] => ['netns', 'exec', ns, ...args];

/** Build the wiring. On failure the caller runs teardownTopology, which tolerates any partial state. */
export async function buildTopology(t: Topology): Promise<void> {
  const br = t.bridgeNetns;
  await mustRun('ip', ['netns', 'add', br]);
  await mustRun('ip', inNs(br, 'ip', 'link', 'set', 'lo', 'up'));
  await mustRun('ip', inNs(br, 'ip', 'link', 'add', 'br0', 'type', 'bridge'));
  await mustRun('ip', inNs(br, 'ip', 'addr', 'add', `${t.bridgeAddress}/24`, 'dev', 'br0'));
  await mustRun('ip', inNs(br, 'ip', 'link', 'set', 'br0', 'up'));

  for (const [i, h] of t.hosts.entries()) {
    await mustRun('ip', ['netns', 'add', h.netns]);
    await mustRun('ip', inNs(h.netns, 'ip', 'link', 'set', 'lo', 'up'));
    // Created directly inside the two namespaces, so `eth0` never meets the root namespace's own eth0.
    await mustRun('ip', ['link', 'add', 'eth0', 'netns', h.netns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', br]);
    await mustRun('ip', inNs(br, 'ip', 'link', 'set', `p${i}`, 'master', 'br0'));
    await mustRun('ip', inNs(br, 'ip', 'link', 'set', `p${i}`, 'up'));
    await mustRun('ip', inNs(h.netns, 'ip', 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0'));
    await mustRun('ip', inNs(h.netns, 'ip', 'link', 'set', 'eth0', 'up'));
    // Services bind the VIP before they hold it (the standby's service must be listening when the VIP arrives).
    await mustRun('ip', inNs(h.netns, 'sysctl', '-qw', 'net.ipv4.ip_nonlocal_bind=1'));
  }

  // Uplink to the root namespace: the only thing the lab adds there, removed by teardown.
  await mustRun('ip', ['link', 'add', t.rootLink, 'type', 'veth', 'peer', 'name', 'up0', 'netns', br]);
  await mustRun('ip', inNs(br, 'ip', 'link', 'set', 'up0', 'master', 'br0'));
  await mustRun('ip', inNs(br, 'ip', 'link', 'set', 'up0', 'up'));
  await mustRun('ip', ['addr', 'add', `${t.rootAddress}/24`, 'dev', t.rootLink]);
  await mustRun('ip', ['link', 'set', t.rootLink, 'up']);
}

/**
 * Adds client namespace number `index` (`tl-<id>-c<index>`) to a built topology: `lo` up, `eth0` up on the bridge
 * without an address. Recorded in `t.clients` before anything is made, so teardown removes a partial one too.
 */
export async function addClientNamespace(t: Topology, name: string, index: number): Promise<ClientWiring> {
  const c: ClientWiring = { name, netns: `tl-${t.id}-c${index}`, port: `c${index}` };
  t.clients.push(c);
  await mustRun('ip', ['netns', 'add', c.netns]);
  await mustRun('ip', inNs(c.netns, 'ip', 'link', 'set', 'lo', 'up'));
  await mustRun('ip', ['link', 'add', 'eth0', 'netns', c.netns, 'type', 'veth', 'peer', 'name', c.port, 'netns', t.bridgeNetns]);
  await mustRun('ip', inNs(t.bridgeNetns, 'ip', 'link', 'set', c.port, 'master', 'br0'));
  await mustRun('ip', inNs(t.bridgeNetns, 'ip', 'link', 'set', c.port, 'up'));
  await mustRun('ip', inNs(c.netns, 'ip', 'link', 'set', 'eth0', 'up'));
  return c;
}

/** Pids of every process whose network namespace is `ns` (empty when the namespace is gone). */
export async function netnsPids(ns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', ns]);
  if (r.code !== 0) return [];
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

export async function listNetns(): Promise<string[]> {
  const out = await mustRun('ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}

/** Remove the root-side veth and every namespace of the lab. Idempotent; reports what it could not remove. */
export async function teardownTopology(t: Topology): Promise<string[]> {
  const problems: string[] = [];
  const existing = new Set(await listNetns());
  const link = await run('ip', ['link', 'show', 'dev', t.rootLink]);
  if (link.code === 0) {
    const del = await run('ip', ['link', 'del', 'dev', t.rootLink]);
    if (del.code !== 0) problems.push(`ip link del ${t.rootLink}: ${del.stderr.trim()}`);
  }
  for (const ns of [...t.clients.map((c) => c.netns), ...t.hosts.map((h) => h.netns), t.bridgeNetns]) {
    if (!existing.has(ns)) continue;
    const del = await run('ip', ['netns', 'del', ns]);
    if (del.code !== 0) problems.push(`ip netns del ${ns}: ${del.stderr.trim()}`);
  }
  return problems;
}
