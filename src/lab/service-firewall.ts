// A firewall as a twin: an nftables container (NET_ADMIN, the host's network) applies /etc/nftables.conf to its
// host at start. Each lab host also runs two plain host services (busybox httpd, not containers, not replicated) on
// BLOCKED_PORT and OPEN_PORT, answering with the host's name: what the firewall lets through or not is seen by a
// client in the lab. The ruleset edited inside the container drops BLOCKED_PORT; after a failover the twin applies
// the edited file on the new primary.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServiceLab } from './service-lab.js';

export const FIREWALL = 'firewall';
export const BLOCKED_PORT = 8081;
export const OPEN_PORT = 8082;

/** The edited ruleset: the image's file with one rule more, counting what it drops. */
export const EDITED_RULESET = `#!/usr/sbin/nft -f
flush ruleset
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport ${BLOCKED_PORT} counter drop comment "twinlayer-lab"
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
`;

/** The host services on both hosts and the firewall container on host a (its image's ruleset: everything open). */
export async function startFirewall(sl: ServiceLab): Promise<void> {
  for (const host of sl.hosts) {
    for (const port of [BLOCKED_PORT, OPEN_PORT]) {
      const dir = join(sl.lab.dir, `www-${host}-${port}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'index.html'), `${host}:${port}\n`);
      await sl.lab.spawn(host, ['busybox', 'httpd', '-f', '-p', String(port), '-h', dir]);
    }
  }
  await sl.runProtected(sl.hosts[0], FIREWALL, ['--cap-add', 'NET_ADMIN', sl.images.nftables.ref]);
}

/** Writes EDITED_RULESET to /etc/nftables.conf inside the container and applies it there, as an operator does. */
export async function editRuleset(sl: ServiceLab, host: string): Promise<void> {
  await sl.exec(host, FIREWALL, ['sh', '-c', `cat > /etc/nftables.conf <<'EOF'\n${EDITED_RULESET}EOF\nnft -f /etc/nftables.conf`]);
}

/** What a client sees of one port: the page (naming the host that answered), refused, or dropped (no answer at all). */
export type PortAnswer = { page: string } | 'refused' | 'dropped' | { error: string };

/** curl from the client to address:port with a connect timeout of `timeoutS`: a SYN that is dropped times out. */
export async function tryPort(sl: ServiceLab, address: string, port: number, timeoutS = 0.5): Promise<PortAnswer> {
  const r = await sl.lab.exec(sl.client, ['curl', '-sS', '--connect-timeout', String(timeoutS), '--max-time', String(timeoutS * 2), `http://${address}:${port}/index.html`], { timeoutMs: 5_000 });
  if (r.code === 0) return { page: r.stdout.trim() };
  if (r.code === 7) return 'refused';
  if (r.code === 28) return 'dropped';
  return { error: `curl exit ${r.code}: ${r.stderr.trim()}` };
}

/** The ruleset the host has now (asked through the firewall container on it). */
export function hostRuleset(sl: ServiceLab, host: string): Promise<string> {
  return sl.exec(host, FIREWALL, ['nft', 'list', 'ruleset']);
}

/** Packets the edited rule has dropped on `host` (its counter); null when the rule is not there. */
export async function droppedPackets(sl: ServiceLab, host: string): Promise<number | null> {
  const m = /tcp dport \d+ counter packets (\d+) bytes \d+ drop comment "twinlayer-lab"/.exec(await hostRuleset(sl, host));
  return m ? Number(m[1]) : null;
}

/**
 * The firewall's good answer on the VIP from `host`: OPEN_PORT answers with `host`'s page and BLOCKED_PORT is
 * dropped. undefined while not yet (the VIP elsewhere, or the ruleset not applied); throws on anything else.
 */
export async function firewallAnswer(sl: ServiceLab, host: string): Promise<{ open: string; blocked: 'dropped' } | undefined> {
  // One after the other: the open port answering from `host` shows the client's ARP entry for the VIP names `host`
  // (right after a kill it still names the dead primary, where every SYN vanishes as if dropped).
  const open = await tryPort(sl, sl.lab.vip, OPEN_PORT);
  if (typeof open === 'object' && 'error' in open) throw new Error(`port ${OPEN_PORT} on the VIP: ${open.error}`);
  if (typeof open !== 'object' || open.page !== `${host}:${OPEN_PORT}`) return undefined;
  const blocked = await tryPort(sl, sl.lab.vip, BLOCKED_PORT);
  if (typeof blocked === 'object' && 'error' in blocked) throw new Error(`port ${BLOCKED_PORT} on the VIP: ${blocked.error}`);
  return blocked === 'dropped' ? { open: open.page, blocked } : undefined;
}
