// Choosing the lab's /24: a 10.x.y.0/24 that no route or address of the root namespace already covers, so the
// lab's own root-side veth never shadows a real network of this machine.
import { randomInt } from 'node:crypto';
import { LabError } from './errors.js';
import { mustRun } from './run.js';

export interface Subnet {
  /** First three octets, e.g. "10.231.7". */
  prefix: string;
  cidr: string;
}

function toInt(ip: string): number {
  const parts = ip.split('.').map((p) => Number(p));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new LabError('LAB_SUBNET', `Expected an IPv4 address, got ${JSON.stringify(ip)}`);
  }
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

function range(cidr: string): [number, number] {
  const [ip, bitsText] = cidr.split('/');
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  if (ip === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) {
    throw new LabError('LAB_SUBNET', `Expected a CIDR like 10.231.7.0/24, got ${JSON.stringify(cidr)}`);
  }
  const size = 2 ** (32 - bits);
  const start = Math.floor(toInt(ip) / size) * size;
  return [start, start + size - 1];
}

export function overlaps(a: string, b: string): boolean {
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}

export function parseSubnet(cidr: string): Subnet {
  const m = /^(10\.\d{1,3}\.\d{1,3})\.0\/24$/.exec(cidr);
  if (!m?.[1]) throw new LabError('LAB_SUBNET', `Expected \`subnet\` to be a 10.x.y.0/24, got ${JSON.stringify(cidr)}`);
  range(cidr); // validates the octets
  return { prefix: m[1], cidr };
}

/** Destinations of the root namespace's IPv4 routes (all tables) and addresses, default routes excluded. */
async function usedRanges(): Promise<string[]> {
  const routes = await mustRun('ip', ['-4', '-o', 'route', 'show', 'table', 'all']);
  const addrs = await mustRun('ip', ['-4', '-o', 'addr', 'show']);
  const out: string[] = [];
  for (const line of routes.split('\n')) {
    const words = line.trim().split(/\s+/);
    // "local 127.0.0.1 dev lo ..." / "broadcast ..." / "10.1.0.0/16 dev ..."
    const dest = ['local', 'broadcast', 'unicast', 'blackhole', 'unreachable', 'prohibit', 'throw'].includes(words[0] ?? '') ? words[1] : words[0];
    if (dest && dest !== 'default' && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dest)) out.push(dest);
  }
  for (const m of addrs.matchAll(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/g)) if (m[1]) out.push(m[1]);
  return out;
}

/** Check a requested subnet, or pick a free random 10.231.y.0/24 (bounded number of tries). */
export async function chooseSubnet(requested?: string): Promise<Subnet> {
  const used = await usedRanges();
  const free = (cidr: string): boolean => !used.some((u) => overlaps(u, cidr));
  if (requested !== undefined) {
    const s = parseSubnet(requested);
    if (!free(s.cidr)) throw new LabError('LAB_SUBNET', `subnet ${s.cidr} overlaps a route or address of this machine`, { hint: 'pick another 10.x.y.0/24 or omit `subnet`' });
    return s;
  }
  for (let i = 0; i < 64; i++) {
    const s = parseSubnet(`10.231.${randomInt(0, 256)}.0/24`);
    if (free(s.cidr)) return s;
  }
  throw new LabError('LAB_SUBNET', 'no free 10.231.y.0/24 found after 64 tries', { hint: 'pass `subnet` explicitly' });
}
