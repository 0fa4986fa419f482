// HTTPS failing over (issue 9): nginx protected on A makes its certificate at its first start, in a named volume (a start that finds one
// keeps it, so a twin without A's certificate would present a new one); its site is changed inside the container and
// reloaded; `twinlayer agent` and keepalived on both hosts; A SIGKILLed whole. From a client namespace on the lab's
// network, curl over HTTPS to the VIP, verifying against A's certificate (not -k), gets the changed site's answer from
// B's twin, which presents the same certificate (fingerprints compared).
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dockerCli } from '../../src/lab/engine.js';
import { ServiceLab } from '../../src/lab/service-lab.js';
import { changeSite, fetchHttps, NGINX, pinCertificate, startWeb, TLS_DIR, type HttpsAnswer } from '../../src/lab/service-web.js';
import { waitFor } from '../../src/lab/wait.js';

/** The named volume holding nginx's certificate and key. */
const TLS_VOLUME = 'web-tls';

describe('HTTPS (nginx) failing over with keepalived: the changed site, the same certificate', { timeout: 600_000 }, () => {
  let sl: ServiceLab | undefined;
  let pinned: { pem: string; file: string; fingerprint: string } | undefined;
  const firstBody = `site v1 ${randomBytes(4).toString('hex')}`;
  const changedBody = `site v2 ${randomBytes(4).toString('hex')}`;
  const logs: string[] = [];
  const L = (): ServiceLab => {
    assert.ok(sl, 'the lab is up');
    return sl;
  };
  const P = (): { pem: string; file: string; fingerprint: string } => {
    assert.ok(pinned, 'A\'s certificate was read');
    return pinned;
  };
  /** The VIP's answer; fails on an error (a certificate curl rejects, a TLS failure), waits while nothing answers. */
  const answerOnVip = async (): Promise<{ body: string; fingerprint: string } | undefined> => {
    const r: HttpsAnswer | null = await fetchHttps(L(), L().lab.vip, P().file);
    if (r === null) return undefined;
    if ('error' in r) throw new Error(`HTTPS to the VIP: ${r.error}`);
    return r;
  };

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd, keepalived)');
    sl = await ServiceLab.create({ log: (l) => logs.push(l) });
    await startWeb(sl, firstBody, { volume: TLS_VOLUME });
    await sl.start();
  });

  after(async () => {
    if (process.env['TWINLAYER_TEST_ECHO']) for (const line of logs) process.stderr.write(line + '\n');
    await sl?.destroy();
  });

  it('nginx on A answers curl over HTTPS on the VIP with the certificate it made; B\'s twin holds that certificate in its volume', async () => {
    const l = L();
    const [a, b] = l.hosts;
    pinned = await waitFor('nginx on A to make its certificate', l.waitMs, async () => {
      try {
        return await pinCertificate(l, a);
      } catch {
        return undefined;
      }
    }, 200);
    const first = await waitFor('nginx on A to answer on the VIP', l.waitMs, answerOnVip, 100);
    assert.deepEqual(first, { body: firstBody, fingerprint: P().fingerprint });
    await l.waitTwinFile(b, NGINX, `${TLS_DIR}/cert.pem`, P().pem.trim());
    await l.standbyConverged(b);
    const mounts = JSON.parse(await dockerCli(l.engine(b), ['inspect', '-f', '{{json .Mounts}}', NGINX])) as Array<{ Type: string; Name?: string; Destination: string }>;
    assert.deepEqual(mounts.map((m) => [m.Type, m.Name, m.Destination]), [['volume', TLS_VOLUME, TLS_DIR]], 'the twin mounts a volume of the same name');
  });

  it('the site changed inside the container and reloaded: the VIP answers the new configuration with the same certificate', async () => {
    const l = L();
    const [a, b] = l.hosts;
    await l.replicate(NGINX, 'the changed site', () => changeSite(l, a, changedBody));
    const changed = await waitFor('the changed site on the VIP', l.waitMs, async () => {
      const r = await answerOnVip();
      return r?.body === changedBody ? r : undefined;
    }, 100);
    assert.equal(changed.fingerprint, P().fingerprint);
    await l.waitTwinFile(b, NGINX, '/etc/nginx/conf.d/site.conf', changedBody);
    await l.standbyConverged(b);
  });

  it('failover A→B (SIGKILL of A): curl over HTTPS to the VIP gets the changed site from B\'s twin, with A\'s certificate', async (t) => {
    const l = L();
    const [a, b] = l.hosts;
    const f = await l.failover(async () => {
      const r = await answerOnVip();
      if (r === undefined) return undefined;
      assert.deepEqual(r, { body: changedBody, fingerprint: P().fingerprint }, 'the first answer after the kill is the changed site with A\'s certificate');
      return r;
    });
    t.diagnostic(`${a}→${b}: kill → first HTTPS answer on the VIP: ${f.killToAnswerMs} ms (promotion ${f.promotion.ms} ms)`);
    assert.equal(f.promotion.outcome, 'booted');
    assert.equal(await l.lab.vipHolder(), b);
    // B's own address answers too: it is B's nginx that serves, with the certificate from A.
    const direct = await fetchHttps(l, l.hostIp(b), P().file, 1);
    assert.deepEqual(direct, { body: changedBody, fingerprint: P().fingerprint });
    assert.equal((await l.exec(b, NGINX, ['cat', `${TLS_DIR}/cert.pem`])).trim(), P().pem.trim());
  });
});
