// `twinlayer demo`: failover and failback between two hosts in network namespaces, `twinlayer agent` on both,
// printed as a timeline; `--service dhcp|web|firewall`: a real service (dnsmasq, nginx, nftables) failing over, with
// its client's answers before and after. Needs root.
import type { FailoverLeg } from '../lab/failover.js';

const SERVICES = ['dhcp', 'web', 'firewall'] as const;

export async function runDemo(opts: { keep: boolean; service?: string | undefined }): Promise<number> {
  const service = opts.service === undefined ? undefined : SERVICES.find((s) => s === opts.service);
  if (opts.service !== undefined && service === undefined) {
    process.stderr.write(`twinlayer demo: --service is one of ${SERVICES.join(', ')}, got ${JSON.stringify(opts.service)}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('twinlayer demo: run as root (network namespaces, Docker engines, keepalived)\n');
    return 2;
  }
  if (service !== undefined) return runServiceDemo(service);
  // The lab (namespaces, engines, keepalived) is loaded only for the demo, not by the other commands.
  const { runFailover } = await import('../lab/failover.js');
  const out = (line: string): void => void process.stdout.write(line + '\n');
  out('twinlayer demo: hosts a and b in network namespaces, `twinlayer agent` and keepalived (VRRPv3, nopreempt) on both,');
  out('the embedded S3 server; a fails over to b, comes back as after a reboot and rejoins as the standby, then b fails back to a\n');
  const verbose = process.env['TWINLAYER_DEMO_VERBOSE'] === '1';
  const r = await runFailover({ log: (line) => (verbose || !line.startsWith('  lab:') ? out(line) : undefined) });
  const leg = (title: string, x: FailoverLeg): void => {
    out(`${title} ${x.from} -> ${x.to} (generation ${x.generation})`);
    out(`  served on the virtual IP:         ${x.served}`);
    out(`  last version in the bucket:       ${x.lastInBucket}`);
    out(`  kill -> ${x.to} MASTER:                ${x.killToMasterMs} ms`);
    out(`  kill -> twin started:             ${x.killToTwinStartedMs} ms`);
    out(`  kill -> first good response:      ${x.killToFirstGoodMs} ms`);
    out(`  MASTER -> first full checkpoint:  ${x.masterToFullCheckpointMs} ms`);
  };
  out('');
  leg('failover', r.failover);
  out(`rejoin of ${r.rejoin.host} as the standby`);
  out(`  stale container restarted by Docker, stopped by the agent: ${r.rejoin.staleRestartedByDocker ? `${r.rejoin.agentStartToStaleStoppedMs} ms after its first log line (${r.rejoin.agentSpawnToStaleStoppedMs} ms after its spawn)` : 'no stale container seen'}`);
  out(`  agent start -> standby converged: ${r.rejoin.agentStartToConvergedMs} ms (${r.rejoin.agentFirstLineToConvergedMs} ms from its first log line)`);
  out(`  VIP stayed on the new primary (nopreempt): ${r.rejoin.vipStayed ? 'yes' : 'NO'}`);
  leg('second failover (failback)', r.failback);
  const ok = r.failover.served === r.failover.lastInBucket && r.failback.served === r.failback.lastInBucket && r.rejoin.vipStayed && r.finalStatus?.role === 'primary';
  return ok ? 0 : 1;
}

async function runServiceDemo(service: (typeof SERVICES)[number]): Promise<number> {
  const { runServiceFailover } = await import('../lab/service-failover.js');
  const out = (line: string): void => void process.stdout.write(line + '\n');
  const t0 = Date.now();
  const verbose = process.env['TWINLAYER_DEMO_VERBOSE'] === '1';
  out(`twinlayer demo --service ${service}: a real service protected on host a, its twin kept on b; a is killed (SIGKILL of everything)\n`);
  const r = await runServiceFailover(service, {
    ...(verbose ? { log: (line: string) => out(`  ${line}`) } : {}),
    onStep: (text) => out(`${String(((Date.now() - t0) / 1000).toFixed(1)).padStart(6)} s  ${text}`),
  });
  out('');
  out(`failover ${r.from} -> ${r.to}`);
  out(`  kill -> first good answer of the client: ${r.killToAnswerMs} ms`);
  out(`  promotion on ${r.to}:                    ${r.promotionMs} ms`);
  for (const [k, v] of Object.entries(r.extra)) out(`  ${k}: ${v} ms`);
  out(`  every answer after the failover as expected: ${r.ok ? 'yes' : 'NO'}`);
  return r.ok ? 0 : 1;
}
