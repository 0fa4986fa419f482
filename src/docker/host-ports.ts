// The host ports and addresses a twin's port bindings take on the standby, and the policy entries that allow them
// (allowedHostPorts, allowedHostIps). Pure.
import { BlockList, isIP, isIPv6 } from 'node:net';
import type { TwinSpec } from './spec.js';

export type Protocol = 'tcp' | 'udp' | 'sctp';

export interface PortRange {
  low: number;
  high: number;
  /** null: any protocol. */
  protocol: Protocol | null;
}

/** Linux's default ephemeral range, from which Docker picks a host port when a binding names none. */
export const EPHEMERAL_PORTS: PortRange = Object.freeze({ low: 32768, high: 60999, protocol: null });

const RANGE = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/;

/** `PORT`, `LOW-HIGH`, optionally with `/tcp`, `/udp` or `/sctp`; a string naming the problem when it is not one. */
export function parsePortRange(entry: string): PortRange | string {
  const m = RANGE.exec(entry);
  if (m === null) return `${JSON.stringify(entry.slice(0, 40))} is not PORT or LOW-HIGH, optionally with /tcp, /udp or /sctp`;
  const low = Number(m[1]);
  const high = m[2] === undefined ? low : Number(m[2]);
  if (low < 1 || high > 65535 || low > high) return `${JSON.stringify(entry)} is not a range within 1-65535`;
  return { low, high, protocol: (m[3] as Protocol | undefined) ?? null };
}

/** Why `entry` is neither an IP address nor a CIDR, or null. */
export function hostIpEntryProblem(entry: string): string | null {
  const [address = '', bits, extra] = entry.split('/');
  if (extra !== undefined || isIP(address) === 0) return `${JSON.stringify(entry.slice(0, 60))} is not an IP address or CIDR`;
  if (bits === undefined) return null;
  const max = isIPv6(address) ? 128 : 32;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= max ? null : `${JSON.stringify(entry.slice(0, 60))} has a prefix length outside 0-${max}`;
}

/** No address, 0.0.0.0 or ::: every address of the host (the engine's default bind address). */
export function isWildcardIp(ip: string): boolean {
  return ip === '' || ip === '0.0.0.0' || ip === '::';
}

/** Pure: `ip` is one of the entries (addresses or CIDRs); an entry that does not parse allows nothing. */
export function hostIpAllowed(ip: string, allowed: readonly string[]): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  const list = new BlockList();
  for (const entry of allowed) {
    if (hostIpEntryProblem(entry) !== null) continue;
    const [address = '', bits] = entry.split('/');
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}

/** Pure: every port of `range` (of `protocol`) lies in the union of the entries that do parse. */
export function portsAllowed(range: { low: number; high: number }, protocol: Protocol, allowed: readonly string[]): boolean {
  const spans = allowed.map(parsePortRange)
    .filter((r): r is PortRange => typeof r !== 'string' && (r.protocol === null || r.protocol === protocol))
    .sort((a, b) => a.low - b.low);
  let next = range.low;
  for (const s of spans) {
    if (s.low > next) break;
    if (s.high >= next) next = s.high + 1;
    if (next > range.high) return true;
  }
  return next > range.high;
}

/** One host port (or range) a twin's binding takes. */
export interface HostBinding {
  /** Where it comes from: HostConfig.PortBindings or HostConfig.PublishAllPorts. */
  field: string;
  /** The container port as Docker names it (`53/udp`). */
  containerPort: string;
  protocol: Protocol;
  hostIp: string;
  /** As the spec gives it; '' when Docker picks one. */
  hostPort: string;
  /** The host ports taken; null when hostPort is not a port or range. */
  range: { low: number; high: number } | null;
}

function protocolOf(containerPort: string): Protocol {
  const proto = containerPort.split('/')[1];
  return proto === 'udp' || proto === 'sctp' ? proto : 'tcp';
}

function rangeOf(hostPort: string): { low: number; high: number } | null {
  if (hostPort === '' || hostPort === '0') return { low: EPHEMERAL_PORTS.low, high: EPHEMERAL_PORTS.high };
  const parsed = parsePortRange(hostPort);
  return typeof parsed === 'string' || parsed.protocol !== null ? null : { low: parsed.low, high: parsed.high };
}

/** Pure: the host ports a twin of this spec publishes (PublishAllPorts: an ephemeral port for each exposed port that
 *  no binding names). */
export function hostBindingsOf(spec: TwinSpec): HostBinding[] {
  const out: HostBinding[] = [];
  for (const [containerPort, bindings] of Object.entries(spec.portBindings)) {
    for (const b of bindings) {
      out.push({ field: 'HostConfig.PortBindings', containerPort, protocol: protocolOf(containerPort), hostIp: b.hostIp, hostPort: b.hostPort, range: rangeOf(b.hostPort) });
    }
  }
  if (spec.hostConfig?.PublishAllPorts === true) {
    for (const containerPort of spec.exposedPorts) {
      if (Object.hasOwn(spec.portBindings, containerPort)) continue;
      out.push({ field: 'HostConfig.PublishAllPorts', containerPort, protocol: protocolOf(containerPort), hostIp: '', hostPort: '', range: rangeOf('') });
    }
  }
  return out;
}

/** `53/udp -> 127.0.0.1:5353`, `80/tcp -> *:(ephemeral)`. */
export function describeBinding(b: HostBinding): string {
  // From the bucket: shown bounded.
  const hostIp = b.hostIp.slice(0, 64);
  const ip = isWildcardIp(hostIp) ? '*' : hostIp.includes(':') ? `[${hostIp}]` : hostIp;
  return `${b.containerPort.slice(0, 16)} -> ${ip}:${b.hostPort === '' || b.hostPort === '0' ? '(ephemeral)' : b.hostPort.slice(0, 16)}`;
}
