// `twinlayer demo`: the two-host failover in network namespaces, printed as a timeline. Needs root.
export async function runDemo(_opts: { keep: boolean }): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('twinlayer demo: run as root (network namespaces, Docker engines, keepalived)\n');
    return 2;
  }
  // The lab (namespaces, engines, keepalived) is loaded only for the demo, not by the other commands.
  const { runFailover } = await import('../lab/failover.js');
  const out = (line: string): void => void process.stdout.write(line + '\n');
  out('twinlayer demo: primary and standby hosts in network namespaces, keepalived (VRRPv3), the embedded S3 server\n');
  const verbose = process.env['TWINLAYER_DEMO_VERBOSE'] === '1';
  const result = await runFailover({ log: (line) => (verbose || !line.startsWith('  lab:') ? out(line) : undefined) });
  out('');
  out(`served by the twin on the virtual IP: ${result.served}`);
  out(`last version in the bucket before the kill: ${result.lastInBucket}`);
  out(`kill -> standby MASTER:        ${result.killToMasterMs} ms`);
  out(`kill -> twin started:          ${result.killToTwinStartedMs} ms`);
  out(`kill -> first good response:   ${result.killToFirstGoodMs} ms`);
  return result.served === result.lastInBucket ? 0 : 1;
}
