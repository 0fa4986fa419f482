// DHCP and DNS as a twin: dnsmasq on the lab's network (the host's eth0, so on the VIP too: --bind-dynamic follows
// the VIP as it comes and goes) hands out a range to the client namespace, whose real DHCP client (busybox udhcpc,
// running all along) configures its eth0, and answers DNS on the VIP for names in an addn-hosts file. Its lease file
// is where dnsmasq keeps it (LEASE_DIR, a named volume when `volume` is given). dnsmasq is not authoritative
// (Debian's default): a server that has lost its lease file ignores a client rebinding its address, and the client
// loses it and starts over; with the lease file the twin acknowledges the renewal at once.
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dockerCli } from './engine.js';
import type { LabProcess } from './index.js';
import type { ServiceLab } from './service-lab.js';
import { waitFor } from './wait.js';

export const DHCP = 'dhcp';
export const LEASE_DIR = '/var/lib/misc';
export const LEASE_FILE = `${LEASE_DIR}/dnsmasq.leases`;
export const HOSTS_FILE = '/etc/dnsmasq.lab-hosts';
/** The name added on the primary and what it resolves to (a documentation address, RFC 5737: never a destination). */
export const ADDED_NAME = 'printer.lab.twinlayer.test';
export const ADDED_ADDRESS = '192.0.2.77';

/** dnsmasq on host a; `volume`: the named volume holding its lease dir. */
export async function startDhcp(sl: ServiceLab, opts: { volume?: string } = {}): Promise<void> {
  const p = sl.prefix;
  const dnsmasq = [
    'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--no-resolv', '--no-hosts', '--log-dhcp',
    '--interface=eth0', '--bind-dynamic',
    // No ping before offering a new address: dnsmasq holds the offer back while it pings, and the client's first
    // DISCOVERs go unanswered.
    '--no-ping',
    `--dhcp-range=${p}.150,${p}.159,1h`, `--dhcp-option=option:dns-server,${sl.lab.vip}`,
    `--dhcp-leasefile=${LEASE_FILE}`, `--addn-hosts=${HOSTS_FILE}`,
  ];
  await sl.runProtected(sl.hosts[0], DHCP, [
    '--cap-add', 'NET_ADMIN', ...(opts.volume !== undefined ? ['-v', `${opts.volume}:${LEASE_DIR}`] : []),
    sl.images.dnsmasq.ref, 'sh', '-c', `touch ${HOSTS_FILE} && exec ${dnsmasq.join(' ')}`,
  ]);
}

/** Adds ADDED_NAME to the hosts file inside the container (its upper layer) and has dnsmasq read it (SIGHUP). */
export async function addName(sl: ServiceLab, host: string): Promise<void> {
  await sl.exec(host, DHCP, ['sh', '-c', `echo '${ADDED_ADDRESS} ${ADDED_NAME}' >> ${HOSTS_FILE}`]);
  await dockerCli(sl.engine(host), ['kill', '--signal', 'HUP', DHCP]);
}

/** dig from the client: the A record of `name` at `server`; null when nothing answered (or no record). */
export async function resolve(sl: ServiceLab, server: string, name = ADDED_NAME): Promise<string | null> {
  const r = await sl.lab.exec(sl.client, ['dig', `@${server}`, '+short', '+time=1', '+tries=1', name, 'A'], { timeoutMs: 5_000 });
  const answer = r.stdout.trim();
  return r.code === 0 && answer !== '' ? answer : null;
}

/** One event of the DHCP client, as its script reports it. */
export interface DhcpEvent {
  event: string;
  ip: string;
  serverId: string;
  dns: string;
  lease: string;
  /** Epoch ms when the test process read it. */
  at: number;
}

export interface DhcpClient {
  events: DhcpEvent[];
  proc: LabProcess;
  /** The first event after index `from` that `match` accepts (bounded). */
  waitEvent(what: string, from: number, match: (e: DhcpEvent) => boolean): Promise<DhcpEvent>;
  /** SIGUSR1: udhcpc renews its lease now (unicast to its server; when that does not answer, broadcast). */
  renew(): void;
  /** The client's eth0 addresses now. */
  addresses(): Promise<string[]>;
}

/**
 * busybox udhcpc in the client namespace, in the foreground for the whole test: its script configures eth0 on
 * `bound`/`renew`, flushes it on `deconfig`, and prints every event. Broadcast replies asked for (-B): the client
 * has no address to be answered at until it is bound.
 */
export async function startDhcpClient(sl: ServiceLab): Promise<DhcpClient> {
  const script = join(sl.lab.dir, 'udhcpc-script.sh');
  await writeFile(script, [
    '#!/bin/sh',
    'case "$1" in',
    '  bound|renew) ip addr replace "$ip/${mask:-24}" dev "$interface" ;;',
    '  deconfig) ip addr flush dev "$interface" ;;',
    'esac',
    'echo "udhcpc-event $1 ip=$ip serverid=$serverid dns=$dns lease=$lease"',
    'exit 0',
    '',
  ].join('\n'));
  await chmod(script, 0o755);
  const events: DhcpEvent[] = [];
  const proc = await sl.lab.spawn(sl.client, ['busybox', 'udhcpc', '-i', 'eth0', '-f', '-B', '-t', '10', '-T', '1', '-s', script], {
    onLine: (line) => {
      const m = /^udhcpc-event (\S+) ip=(\S*) serverid=(\S*) dns=(\S*) lease=(\S*)/.exec(line);
      if (m) events.push({ event: m[1] ?? '', ip: m[2] ?? '', serverId: m[3] ?? '', dns: m[4] ?? '', lease: m[5] ?? '', at: Date.now() });
    },
  });
  return {
    events,
    proc,
    waitEvent: (what, from, match) => waitFor(`DHCP client: ${what} (events so far: ${JSON.stringify(events.map((e) => `${e.event} ${e.ip} from ${e.serverId}`))})`, sl.waitMs, () => {
      if (!proc.running) return Promise.reject(new Error('udhcpc exited'));
      return Promise.resolve(events.slice(from).find(match));
    }, 20),
    renew: () => proc.kill('SIGUSR1'),
    addresses: async () => {
      const r = await sl.lab.exec(sl.client, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
      return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1] ?? '');
    },
  };
}

/** dnsmasq's lease file in the container on `host` (its lines: expiry, MAC, address, name, client id). */
export function leases(sl: ServiceLab, host: string): Promise<string> {
  return sl.exec(host, DHCP, ['cat', LEASE_FILE]);
}
