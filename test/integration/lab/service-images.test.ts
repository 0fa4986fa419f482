// The real-service images (src/lab/service-images.ts: Debian's dnsmasq, nginx with openssl and nftables, built with
// debootstrap by scripts/service-rootfs.sh) on an engine inside a lab host, each answering a real client: dig and
// busybox udhcpc ask dnsmasq, curl talks HTTPS to nginx and checks its certificate, nft lists the ruleset a firewall
// container applied to the host's network namespace. No failover: the images themselves.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dockerCli } from '../../../src/lab/engine.js';
import type { Engine } from '../../../src/lab/engine.js';
import { createLab } from '../../../src/lab/index.js';
import type { Lab } from '../../../src/lab/index.js';
import { loadServiceImages } from '../../../src/lab/service-images.js';
import type { ServiceImages } from '../../../src/lab/service-images.js';
import { run } from '../../../src/lab/run.js';
import { waitFor } from '../../../src/lab/wait.js';

const NAME = 'smoke.twinlayer.test';
// A documentation address (RFC 5737): an answer to look for, never a destination.
const ANSWER = '192.0.2.53';

describe('service images on a lab engine, each answering its real client', { timeout: 600_000 }, () => {
  let lab: Lab | undefined;
  let engine: Engine;
  let images: ServiceImages;
  const logs: string[] = [];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd)');
    lab = await createLab({ hosts: ['svc'], log: (l) => logs.push(l) });
    await lab.startEngines();
    const e = lab.hosts[0]?.engine;
    if (e === undefined) throw new Error('the lab started no engine');
    engine = e;
    const t0 = Date.now();
    images = await loadServiceImages([engine], { log: (l) => logs.push(l) });
    logs.push(`service images ready in ${Date.now() - t0} ms`);
  });

  after(async () => {
    await lab?.destroy();
  });

  /** waitFor, and on a timeout the container's own output (stdout and stderr) in the error. */
  async function serviceAnswer<T>(container: string, what: string, probe: () => Promise<T | undefined>): Promise<T> {
    try {
      return await waitFor(what, 20_000, probe, 200);
    } catch (err) {
      const logs = await run('docker', ['-H', `unix://${engine.socketPath}`, 'logs', '--tail', '40', container]);
      throw new Error(`${(err as Error).message}\n--- docker logs ${container} ---\n${logs.stdout}${logs.stderr}`, { cause: err });
    }
  }

  it('dnsmasq answers a DNS query (dig) and hands out a DHCP lease (busybox udhcpc) in the lab', async (t) => {
    const host = lab!.hosts[0]!;
    const prefix = host.ip.split('.').slice(0, 3).join('.');
    await dockerCli(engine, ['run', '-d', '--name', 'dns', '--network', 'host', '--cap-add', 'NET_ADMIN', images.dnsmasq.ref,
      'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--no-resolv', '--no-hosts', '--bind-interfaces', '--interface=lo', '--interface=eth0',
      `--address=/${NAME}/${ANSWER}`, `--dhcp-range=${prefix}.150,${prefix}.159,1h`, '--dhcp-leasefile=/var/lib/misc/dnsmasq.leases']);
    const answer = await serviceAnswer('dns', 'dnsmasq to answer dig', async () => {
      const r = await lab!.exec(host.name, ['dig', '@127.0.0.1', '+short', '+time=1', '+tries=1', NAME, 'A']);
      return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
    });
    assert.equal(answer, ANSWER);

    // The client is the lab's bridge namespace: its DISCOVER crosses the lab bridge to dnsmasq on the host's eth0.
    // The script only reports the lease (udhcpc's default script would reconfigure the bridge).
    const script = join(lab!.dir, 'udhcpc-report.sh');
    await writeFile(script, '#!/bin/sh\n[ "$1" = bound ] && echo "lease $ip from $serverid"\nexit 0\n');
    await chmod(script, 0o755);
    const r = await lab!.exec(lab!.bridgeNetns, ['/bin/busybox', 'udhcpc', '-i', 'br0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], { timeoutMs: 20_000 });
    t.diagnostic(`udhcpc: ${r.stdout.trim()}`);
    assert.equal(r.code, 0, `udhcpc failed: ${r.stderr}`);
    const lease = /lease (\S+) from (\S+)/.exec(r.stdout);
    assert.ok(lease, r.stdout);
    assert.match(lease[1] ?? '', new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.15\\d$`));
    assert.equal(lease[2], host.ip);
    const leases = await dockerCli(engine, ['exec', 'dns', 'cat', '/var/lib/misc/dnsmasq.leases']);
    assert.ok(leases.includes(` ${lease[1]} `), `the lease is in dnsmasq's lease file: ${leases}`);
  });

  it('nginx answers curl over HTTPS with a certificate made by the image\'s openssl', async () => {
    const host = lab!.hosts[0]!;
    const body = `twinlayer nginx smoke ${randomBytes(4).toString('hex')}`;
    const setup = [
      'set -e',
      'mkdir -p /etc/nginx/tls',
      `openssl req -x509 -newkey rsa:2048 -nodes -keyout /etc/nginx/tls/key.pem -out /etc/nginx/tls/cert.pem -days 2 -subj /CN=${NAME} -addext subjectAltName=DNS:${NAME} 2>/dev/null`,
      'rm -f /etc/nginx/sites-enabled/default',
      `printf '%s\\n' 'server { listen 127.0.0.1:8443 ssl; server_name ${NAME}; ssl_certificate /etc/nginx/tls/cert.pem; ssl_certificate_key /etc/nginx/tls/key.pem; location / { return 200 "${body}\\n"; } }' > /etc/nginx/conf.d/smoke.conf`,
      "exec nginx -g 'daemon off;'",
    ].join('\n');
    await dockerCli(engine, ['run', '-d', '--name', 'web', '--network', 'host', images.nginx.ref, 'sh', '-c', setup]);
    const cert = await serviceAnswer('web', 'nginx to make its certificate', async () => {
      const pem = await dockerCli(engine, ['exec', 'web', 'cat', '/etc/nginx/tls/cert.pem']);
      return pem.includes('END CERTIFICATE') ? pem : undefined;
    });
    const caFile = join(lab!.dir, 'smoke-ca.pem');
    await writeFile(caFile, cert);
    // curl verifies the chain and the name against the certificate taken from the container: not -k.
    const got = await serviceAnswer('web', 'nginx to answer curl', async () => {
      const r = await lab!.exec(host.name, ['curl', '-sS', '--max-time', '2', '--cacert', caFile, '--resolve', `${NAME}:8443:127.0.0.1`, `https://${NAME}:8443/`]);
      return r.code === 0 ? r.stdout : undefined;
    });
    assert.equal(got, `${body}\n`);
  });

  it('nftables: a firewall container (NET_ADMIN, host network) applies its ruleset to the host; nft lists it', async () => {
    await dockerCli(engine, ['run', '-d', '--name', 'fw', '--network', 'host', '--cap-add', 'NET_ADMIN', images.nftables.ref]);
    await serviceAnswer('fw', 'the firewall to apply /etc/nftables.conf', async () => {
      const out = await dockerCli(engine, ['exec', 'fw', 'nft', 'list', 'ruleset']);
      return out.includes('table inet filter') ? true : undefined;
    });
    await dockerCli(engine, ['exec', 'fw', 'nft', 'add', 'rule', 'inet', 'filter', 'input', 'tcp', 'dport', '9', 'drop']);
    // Another container of the same host network sees the rule: it is the host's ruleset, not the container's.
    const listed = await dockerCli(engine, ['run', '--rm', '--network', 'host', '--cap-add', 'NET_ADMIN', images.nftables.ref, 'nft', 'list', 'ruleset']);
    assert.match(listed, /table inet filter \{[\s\S]*chain input \{[\s\S]*tcp dport 9 drop/);
    // It ends on docker stop like a service (its trap: exit 0; a SIGKILL after the grace period would be 137).
    await dockerCli(engine, ['stop', '-t', '10', 'fw']);
    assert.equal((await dockerCli(engine, ['inspect', '-f', '{{.State.ExitCode}}', 'fw'])).trim(), '0');
  });
});
