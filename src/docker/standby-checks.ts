// What a spec needs of the standby host itself: bind-mount sources, devices and networks that exist here. Docker
// would otherwise create a missing bind source as an empty directory (a twin that silently differs) or fail at start.
import { realpath, stat } from 'node:fs/promises';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { additionalNetworks, primaryNetworkOf } from './spec.js';
import type { TwinSpec } from './spec.js';
import { bindSources, isAtOrUnder } from './twin-policy.js';
import type { TwinPolicy } from './twin-policy.js';

/** Docker's own networks, which every engine has. */
const BUILTIN_NETWORKS = new Set(['bridge', 'host', 'none', 'default']);

/** The subnets of a network of the standby's engine; null when it has no network of that name. */
export type NetworkLookup = (name: string) => Promise<{ subnets: string[] } | null>;

function errnoOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : String(err);
}

async function bindProblems(spec: TwinSpec, policy: TwinPolicy): Promise<string[]> {
  const problems: string[] = [];
  const roots = await Promise.all(policy.allowedBindRoots.map(async (r) => realpath(r).catch(() => null)));
  for (const source of bindSources(spec)) {
    let real: string;
    try {
      real = await realpath(source);
    } catch (err) {
      problems.push(`bind-mount source ${source} does not exist on this host (${errnoOf(err)})`);
      continue;
    }
    // A symlink under an allowed root may lead anywhere: the resolved path must lie under a resolved root too.
    if (!roots.some((root) => root !== null && isAtOrUnder(real, root))) {
      problems.push(`bind-mount source ${source} resolves to ${real}, outside the allowed bind roots (${policy.allowedBindRoots.join(', ') || 'none'})`);
    }
  }
  return problems;
}

async function deviceProblems(spec: TwinSpec): Promise<string[]> {
  const problems: string[] = [];
  for (const d of spec.hostConfig?.Devices ?? []) {
    try {
      const s = await stat(d.PathOnHost);
      if (!s.isCharacterDevice() && !s.isBlockDevice()) problems.push(`device ${d.PathOnHost} is not a device on this host`);
    } catch (err) {
      problems.push(`device ${d.PathOnHost} does not exist on this host (${errnoOf(err)})`);
    }
  }
  return problems;
}

function inSubnets(address: string, subnets: string[]): boolean {
  const list = new BlockList();
  for (const subnet of subnets) {
    const [net, bits] = subnet.split('/');
    const prefix = Number(bits);
    if (net === undefined || !Number.isInteger(prefix)) continue;
    if (isIPv4(net)) list.addSubnet(net, prefix, 'ipv4');
    else if (isIPv6(net)) list.addSubnet(net, prefix, 'ipv6');
  }
  return list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
}

async function networkProblems(spec: TwinSpec, lookup: NetworkLookup): Promise<string[]> {
  const problems: string[] = [];
  const names = new Set([primaryNetworkOf(spec), ...additionalNetworks(spec).map(([n]) => n)]);
  for (const name of [...names].sort()) {
    if (BUILTIN_NETWORKS.has(name)) continue;
    const network = await lookup(name);
    if (network === null) {
      problems.push(`network ${name} does not exist on this host`);
      continue;
    }
    const ipam = spec.networks?.[name]?.IPAMConfig;
    for (const address of [ipam?.IPv4Address, ipam?.IPv6Address]) {
      if (address === undefined || address === '') continue;
      if (!inSubnets(address, network.subnets)) problems.push(`network ${name} on this host (${network.subnets.join(', ') || 'no subnet'}) does not hold the static address ${address}`);
    }
  }
  return problems;
}

/** What this host lacks to create the spec's twin as the primary's container is: empty when nothing. */
export async function standbyProblems(spec: TwinSpec, policy: TwinPolicy, networks: NetworkLookup): Promise<string[]> {
  return [...(await bindProblems(spec, policy)), ...(await deviceProblems(spec)), ...(await networkProblems(spec, networks))];
}
