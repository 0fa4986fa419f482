// HTTPS as a twin: nginx on the host's network answers on port WEB_TLS_PORT (so on the VIP) with a certificate it
// makes at its first start with the image's openssl, kept in TLS_DIR (a named volume when `volume` is given): a
// start that finds one keeps it. Its site configuration is changed inside the container and reloaded; a client in
// the lab asks with curl, verifying the certificate taken from the primary (not -k), and reads the certificate the
// server presented (curl's %{certs}) to compare fingerprints.
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServiceLab } from './service-lab.js';

export const NGINX = 'nginx';
export const WEB_TLS_PORT = 8443;
export const SITE_NAME = 'www.lab.twinlayer.test';
export const TLS_DIR = '/etc/nginx/tls';
const SITE_CONF = '/etc/nginx/conf.d/site.conf';

function siteConf(body: string): string {
  return `server { listen ${WEB_TLS_PORT} ssl; server_name ${SITE_NAME}; ssl_certificate ${TLS_DIR}/cert.pem; ssl_certificate_key ${TLS_DIR}/key.pem; location / { return 200 "${body}\\n"; } }`;
}

/** nginx on host a answering `firstBody`; `volume`: the named volume holding its certificate and key. */
export async function startWeb(sl: ServiceLab, firstBody: string, opts: { volume?: string } = {}): Promise<void> {
  const setup = [
    'set -e',
    `mkdir -p ${TLS_DIR}`,
    // Made once: a start that finds a certificate keeps it (the twin must present the primary's).
    `[ -s ${TLS_DIR}/cert.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ${TLS_DIR}/key.pem -out ${TLS_DIR}/cert.pem -days 2 -subj /CN=${SITE_NAME} -addext subjectAltName=DNS:${SITE_NAME} 2>/dev/null`,
    'rm -f /etc/nginx/sites-enabled/default',
    `[ -f ${SITE_CONF} ] || printf '%s\\n' '${siteConf(firstBody)}' > ${SITE_CONF}`,
    "exec nginx -g 'daemon off;'",
  ].join('\n');
  await sl.runProtected(sl.hosts[0], NGINX, [...(opts.volume !== undefined ? ['-v', `${opts.volume}:${TLS_DIR}`] : []), sl.images.nginx.ref, 'sh', '-c', setup]);
}

/** Changes the site inside the container to answer `body` and reloads nginx. */
export async function changeSite(sl: ServiceLab, host: string, body: string): Promise<void> {
  if (!/^[\w .:-]+$/.test(body)) throw new Error(`changeSite: a plain body, got ${JSON.stringify(body)}`);
  await sl.exec(host, NGINX, ['sh', '-c', `printf '%s\\n' '${siteConf(body)}' > ${SITE_CONF} && nginx -s reload`]);
}

/** The certificate in the container on `host` (PEM), written where the client's curl reads it as its only CA. */
export async function pinCertificate(sl: ServiceLab, host: string): Promise<{ pem: string; file: string; fingerprint: string }> {
  const pem = await sl.exec(host, NGINX, ['cat', `${TLS_DIR}/cert.pem`]);
  const file = join(sl.lab.dir, 'pinned-cert.pem');
  await writeFile(file, pem);
  return { pem, file, fingerprint: new X509Certificate(pem).fingerprint256 };
}

export type HttpsAnswer = { body: string; fingerprint: string } | { error: string };

/** curl over HTTPS from the client to `address` (the VIP), verifying against `caFile`; the body and the server's certificate. */
export async function fetchHttps(sl: ServiceLab, address: string, caFile: string, connectTimeoutS = 0.2): Promise<HttpsAnswer | null> {
  const r = await sl.lab.exec(sl.client, [
    'curl', '-sS', '--connect-timeout', String(connectTimeoutS), '--max-time', '2', '--cacert', caFile,
    '--resolve', `${SITE_NAME}:${WEB_TLS_PORT}:${address}`, '-w', '\n--certs--\n%{certs}', `https://${SITE_NAME}:${WEB_TLS_PORT}/`,
  ], { timeoutMs: 5_000 });
  // Nothing listening yet, or the SYN lost to a dead host: not an answer.
  if (r.code === 7 || r.code === 28) return null;
  if (r.code !== 0) return { error: `curl exit ${r.code}: ${r.stderr.trim()}` };
  const [body = '', certs = ''] = r.stdout.split('\n--certs--\n');
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(certs)?.[0];
  if (pem === undefined) return { error: `curl printed no server certificate: ${JSON.stringify(certs.slice(0, 200))}` };
  return { body: body.trim(), fingerprint: new X509Certificate(pem).fingerprint256 };
}
