// What a spec needs of the standby host itself: bind-mount sources, devices and networks that exist here, and named
// volumes that are what they seem. Docker would otherwise create a missing bind source as an empty directory (a
// twin that silently differs) or fail at start; a named volume that already exists here with a bind of /etc or a
// block device as its options would hand the twin that. These are facts of the host, not of the spec: they may
// change any time (an operator restores a directory, a network is recreated), so the keeper holds the twin and
// checks again rather than give it up.
import { realpath, stat } from 'node:fs/promises';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { parseBind } from './spec-run.js';
import { additionalNetworks, primaryNetworkOf } from './spec.js';
import type { TwinSpec } from './spec.js';
import { bindSources, isAtOrUnder } from './twin-policy.js';
import type { TwinPolicy } from './twin-policy.js';

/** Docker's own networks, which every engine has. */
const BUILTIN_NETWORKS = new Set(['bridge', 'host', 'none', 'default']);

/** A named volume as the standby's engine has it. */
export interface VolumeFacts {
  driver: string;
  options: Record<string, string>;
}

/** What the standby's engine has: a network's subnets, a named volume; null when it has none of that name. */
export interface HostLookups {
  network(name: string): Promise<{ subnets: string[] } | null>;
  volume(name: string): Promise<VolumeFacts | null>;
}

function errnoOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : String(err);
}

async function resolvedRoots(policy: TwinPolicy): Promise<Array<string | null>> {
  return Promise.all(policy.allowedBindRoots.map(async (r) => realpath(r).catch(() => null)));
}

/** What is wrong with these bind-mount sources on this host now: missing (Docker would mount a new empty directory), or
 *  resolving outside the allowed bind roots (a symlink put in place since). Empty when nothing. */
export async function bindSourceProblems(sources: readonly string[], policy: TwinPolicy): Promise<string[]> {
  const problems: string[] = [];
  const roots = await resolvedRoots(policy);
  for (const source of sources) {
    let real: string;
    try {
      real = await realpath(source);
    } catch (err) {
      problems.push(`bind-mount source ${source} does not exist on this host (${errnoOf(err)})`);
      continue;
    }
    // A symlink under an allowed root may lead anywhere: the resolved path must lie under a resolved root too.
    if (!roots.some((root) => root !== null && isAtOrUnder(real, root))) {
      problems.push(`bind-mount source ${source} resolves to ${real}, outside the allowed bind roots (allowedBindRoots: ${policy.allowedBindRoots.join(', ') || 'none'})`);
    }
  }
  return problems;
}

/** Pure: the named volumes a spec mounts (Binds with a volume name, Mounts of type volume with a source). */
export function volumeNames(spec: TwinSpec): string[] {
  const out = new Set<string>();
  for (const b of spec.hostConfig?.Binds ?? []) {
    const parsed = parseBind(b);
    if (typeof parsed !== 'string' && parsed.kind === 'volume') out.add(parsed.source);
  }
  for (const m of spec.hostConfig?.Mounts ?? []) if (m.Type === 'volume' && m.Source !== undefined && m.Source !== '') out.add(m.Source);
  return [...out].sort();
}

function optionsShown(options: Record<string, string>): string {
  const s = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(',');
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** A local volume with `o=bind` and a `device` is a bind mount of that path (`docker volume create -o type=none -o
 *  o=bind -o device=/etc`): held to the bind roots like any other. Other options mount whatever they name. */
async function volumeProblem(name: string, volume: VolumeFacts, policy: TwinPolicy, roots: Array<string | null>): Promise<string | null> {
  const { driver, options } = volume;
  if (!policy.allowedVolumeDrivers.includes(driver)) {
    return `named volume ${name} on this host has driver ${driver}, which the host policy refuses (allowedVolumeDrivers: ${policy.allowedVolumeDrivers.join(', ') || 'none'})`;
  }
  if (driver !== 'local' || Object.keys(options).length === 0) return null;
  const mountOptions = (options['o'] ?? '').split(',');
  const device = options['device'];
  const isBind = (mountOptions.includes('bind') || mountOptions.includes('rbind')) && (options['type'] ?? 'none') === 'none' && device !== undefined;
  if (!isBind) {
    if (policy.allowVolumeOptions) return null;
    return `named volume ${name} on this host has driver options ${optionsShown(options)}, which the host policy refuses (allowVolumeOptions: false)`;
  }
  let real: string;
  try {
    real = await realpath(device);
  } catch (err) {
    return `named volume ${name} on this host binds ${device}, which does not exist on this host (${errnoOf(err)})`;
  }
  if (roots.some((root) => root !== null && isAtOrUnder(real, root))) return null;
  return `named volume ${name} on this host binds ${device}${real === device ? '' : ` (resolved: ${real})`}, which the host policy refuses (allowedBindRoots: ${policy.allowedBindRoots.join(', ') || 'none'})`;
}

async function volumeProblems(spec: TwinSpec, policy: TwinPolicy, lookups: HostLookups): Promise<string[]> {
  const problems: string[] = [];
  const roots = await resolvedRoots(policy);
  const replicated = new Set((spec.volumes ?? []).map((v) => v.name));
  const names = new Set([...volumeNames(spec), ...replicated, ...(spec.unreplicatedVolumes ?? []).map((v) => v.name)]);
  for (const name of [...names].sort()) {
    // Absent: the twin's creation makes it, a plain local volume (ensureTwin), or Docker does.
    const volume = await lookups.volume(name);
    if (volume === null) continue;
    // A replicated volume is staged into: it must be a plain dir of Docker's whatever the policy lets a twin mount.
    const plain = volume.driver === 'local' && Object.keys(volume.options).length === 0;
    const problem = replicated.has(name) && !plain
      ? `named volume ${name} on this host has ${volume.driver === 'local' ? `driver options ${optionsShown(volume.options)}` : `driver ${volume.driver}`}; the twin's data is replicated into it, so it must be a plain local volume`
      : await volumeProblem(name, volume, policy, roots);
    if (problem !== null) problems.push(problem);
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

async function networkProblems(spec: TwinSpec, lookups: HostLookups): Promise<string[]> {
  const problems: string[] = [];
  const names = new Set([primaryNetworkOf(spec), ...additionalNetworks(spec).map(([n]) => n)]);
  for (const name of [...names].sort()) {
    if (BUILTIN_NETWORKS.has(name)) continue;
    const network = await lookups.network(name);
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
export async function standbyProblems(spec: TwinSpec, policy: TwinPolicy, lookups: HostLookups): Promise<string[]> {
  return [
    ...(await bindSourceProblems(bindSources(spec), policy)), ...(await deviceProblems(spec)),
    ...(await volumeProblems(spec, policy, lookups)), ...(await networkProblems(spec, lookups)),
  ];
}
