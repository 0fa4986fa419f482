// One real service failing over, end to end, for `twinlayer demo --service` and bench/services-failover.ts: the
// service lab (service-lab.ts) built, the service started and changed on host a, everything staged on b, a SIGKILLed
// whole, and the client's answers before and after, with kill → the client's first good answer. Tears the lab down
// in any case. The e2e tests walk the same steps with their checks in between.
import { randomBytes } from 'node:crypto';
import { ADDED_ADDRESS, ADDED_NAME, addName, DHCP, HOSTS_FILE, LEASE_FILE, resolve, startDhcp, startDhcpClient } from './service-dhcp.js';
import { BLOCKED_PORT, editRuleset, FIREWALL, firewallAnswer, hostRuleset, OPEN_PORT, startFirewall, tryPort, type PortAnswer } from './service-firewall.js';
import { ServiceLab } from './service-lab.js';
import { changeSite, fetchHttps, NGINX, pinCertificate, startWeb } from './service-web.js';
import { waitFor } from './wait.js';

export const DEMO_SERVICES = ['dhcp', 'web', 'firewall'] as const;
export type DemoService = (typeof DEMO_SERVICES)[number];

export interface ServiceFailoverRun {
  service: DemoService;
  from: string;
  to: string;
  /** What the client saw: before the change, after it (on the primary), after the failover. */
  answers: { step: string; answer: string }[];
  /** kill → the client's first good answer (the start of the probe that got it). */
  killToAnswerMs: number;
  /** The new primary's own promotion time (its status). */
  promotionMs: number;
  /** More figures of the service (DHCP: renewal asked → acknowledged by the twin). */
  extra: Record<string, number>;
  /** Every answer after the failover was the expected one. */
  ok: boolean;
}

export interface ServiceFailoverOptions {
  log?: (line: string) => void;
  /** Called at each step, for a live timeline. */
  onStep?: (text: string) => void;
}

const show = (a: PortAnswer): string => (typeof a === 'string' ? a : 'page' in a ? `answered "${a.page}"` : a.error);

export async function runServiceFailover(service: DemoService, opts: ServiceFailoverOptions = {}): Promise<ServiceFailoverRun> {
  const step = opts.onStep ?? ((): void => undefined);
  const sl = await ServiceLab.create({ ...(opts.log ? { log: opts.log } : {}), clientAddress: service === 'dhcp' ? 'dhcp' : 'static' });
  try {
    const [a, b] = sl.hosts;
    step(`lab up: hosts ${a} and ${b}, a Docker engine and \`twinlayer agent\` on each, keepalived (VRRPv3), VIP ${sl.lab.vip}, a client namespace on the lab network`);
    const answers: ServiceFailoverRun['answers'] = [];
    const saw = (s: string, answer: string): void => {
      answers.push({ step: s, answer });
      step(`client, ${s}: ${answer}`);
    };
    if (service === 'firewall') {
      await startFirewall(sl);
      await sl.start();
      step(`${FIREWALL} (nftables, NET_ADMIN, host network) runs on ${a} with its image's ruleset; host services on ports ${BLOCKED_PORT} and ${OPEN_PORT} of both hosts`);
      await waitFor('the firewall\'s ruleset on a', sl.waitMs, async () => ((await hostRuleset(sl, a)).includes('table inet filter') ? true : undefined), 100);
      const ports = async (s: string): Promise<void> => {
        saw(`${s}, VIP:${BLOCKED_PORT}`, show(await tryPort(sl, sl.lab.vip, BLOCKED_PORT)));
        saw(`${s}, VIP:${OPEN_PORT}`, show(await tryPort(sl, sl.lab.vip, OPEN_PORT)));
      };
      await ports('before the edit');
      await sl.replicate(FIREWALL, 'the edited ruleset', () => editRuleset(sl, a));
      step(`/etc/nftables.conf edited inside ${FIREWALL} on ${a} (drop tcp dport ${BLOCKED_PORT}) and applied; the change staged in ${b}'s twin`);
      await ports('after the edit');
      step(`SIGKILL of ${a} (agent, keepalived, dockerd, containers)`);
      const f = await sl.failover(() => firewallAnswer(sl, b));
      step(`${b} took over; its twin applied the edited ruleset at start`);
      await ports(`after the failover (${b})`);
      const after = answers.slice(-2).map((x) => x.answer);
      return { service, from: f.from, to: f.to, answers, killToAnswerMs: f.killToAnswerMs, promotionMs: f.promotion.ms, extra: {}, ok: after[0] === 'dropped' && after[1] === `answered "${b}:${OPEN_PORT}"` };
    }
    if (service === 'dhcp') {
      await startDhcp(sl, { volume: 'dhcp-leases' });
      await sl.start();
      step(`${DHCP} (dnsmasq: DHCP range and DNS on the VIP, its lease file in the named volume dhcp-leases) runs on ${a}`);
      const client = await startDhcpClient(sl);
      const lease = await client.waitEvent('a lease', 0, (e) => e.event === 'bound');
      saw('DHCP', `lease of ${lease.ip} from ${lease.serverId}, DNS server ${lease.dns}`);
      await sl.waitTwinFile(b, DHCP, LEASE_FILE, ` ${lease.ip} `);
      await sl.replicate(DHCP, 'the added name', () => addName(sl, a));
      step(`${ADDED_NAME} added to ${HOSTS_FILE} inside ${DHCP} on ${a}, dnsmasq reloaded; staged in ${b}'s twin`);
      await sl.waitTwinFile(b, DHCP, HOSTS_FILE, ADDED_NAME);
      saw(`dig ${ADDED_NAME} @${lease.dns}`, (await resolve(sl, lease.dns)) ?? 'no answer');
      step(`SIGKILL of ${a} (agent, keepalived, dockerd, containers)`);
      const f = await sl.failover(async () => {
        const r = await resolve(sl, sl.lab.vip);
        if (r !== null && r !== ADDED_ADDRESS) throw new Error(`the VIP answered ${ADDED_NAME} with ${r}`);
        return r ?? undefined;
      });
      saw(`after the failover, dig ${ADDED_NAME} @${sl.lab.vip}`, f.answer);
      const from = client.events.length;
      const asked = Date.now();
      client.renew();
      const next = await client.waitEvent('the renewal answered', from, (e) => ['renew', 'bound', 'deconfig', 'leasefail', 'nak'].includes(e.event));
      const lost = client.events.slice(from).some((e) => e.event === 'deconfig');
      saw('after the failover, DHCP renewal', `${next.event} of ${next.ip} from ${next.serverId}${lost ? ' (the lease was lost first)' : ''}`);
      const ok = f.answer === ADDED_ADDRESS && next.event === 'renew' && next.ip === lease.ip && next.serverId === sl.hostIp(b) && !lost;
      return { service, from: f.from, to: f.to, answers, killToAnswerMs: f.killToAnswerMs, promotionMs: f.promotion.ms, extra: { renewAskedToAckMs: next.at - asked }, ok };
    }
    const first = `site v1 ${randomBytes(3).toString('hex')}`;
    const changed = `site v2 ${randomBytes(3).toString('hex')}`;
    await startWeb(sl, first, { volume: 'web-tls' });
    await sl.start();
    step(`${NGINX} (HTTPS on port 8443, a certificate it made at its first start in the named volume web-tls) runs on ${a}`);
    const pin = await waitFor('nginx\'s certificate', sl.waitMs, async () => pinCertificate(sl, a).catch(() => undefined), 200);
    const https = async (): Promise<string | undefined> => {
      const r = await fetchHttps(sl, sl.lab.vip, pin.file);
      if (r === null) return undefined;
      if ('error' in r) throw new Error(`HTTPS to the VIP: ${r.error}`);
      return `"${r.body}", certificate ${r.fingerprint === pin.fingerprint ? 'the same' : 'ANOTHER'} (${r.fingerprint.slice(0, 23)}…)`;
    };
    saw('curl https://VIP:8443/', await waitFor('nginx on the VIP', sl.waitMs, https, 100));
    await sl.replicate(NGINX, 'the changed site', () => changeSite(sl, a, changed));
    step(`site changed inside ${NGINX} on ${a} and reloaded; staged in ${b}'s twin`);
    saw('after the change, curl https://VIP:8443/', await waitFor('the changed site', sl.waitMs, async () => {
      const r = await https();
      return r?.includes(changed) === true ? r : undefined;
    }, 100));
    step(`SIGKILL of ${a} (agent, keepalived, dockerd, containers)`);
    const f = await sl.failover(https);
    saw(`after the failover (${b}), curl https://VIP:8443/`, f.answer);
    return { service, from: f.from, to: f.to, answers, killToAnswerMs: f.killToAnswerMs, promotionMs: f.promotion.ms, extra: {}, ok: f.answer.startsWith(`"${changed}", certificate the same`) };
  } finally {
    await sl.destroy();
  }
}
