// A proxy in front of the embedded S3 server that checks every request's AWS Signature Version 4 the way S3 does,
// written from AWS's specification ("Authenticating Requests: Using the Authorization Header", header-based, S3's
// single URI encoding), not from a signer library. s3rver checks version 2 signatures only (its v4 path accepts any
// signature), so without this a request signed wrongly would pass every test and fail against MinIO or AWS.
// A request whose signature does not match is answered 403 SignatureDoesNotMatch, as S3 answers it.
import { createHash, createHmac } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SigV4Checked {
  method: string;
  path: string;
  ok: boolean;
  reason: string;
  /** The request's x-amz-content-sha256. */
  payloadHash?: string;
}

export interface SigV4Proxy {
  endpoint: string;
  /** Every request seen, in order, with its verdict. */
  readonly checked: SigV4Checked[];
  close(): Promise<void>;
}

const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256Hex = (data: string): string => createHash('sha256').update(data, 'utf8').digest('hex');

/** RFC 3986 unreserved characters stay, everything else is %XX (upper case); '/' kept in a path. */
function awsEncode(s: string, keepSlash: boolean): string {
  return Array.from(Buffer.from(s, 'utf8')).map((b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === '/') ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

/** Why `method url headers` is not signed with `secret` for `region`, or '' when it is. */
export function sigV4Mismatch(method: string, url: string, headers: IncomingHttpHeaders, credentials: { accessKeyId: string; secretAccessKey: string }, region: string): string {
  const auth = headers.authorization;
  if (typeof auth !== 'string') return 'no Authorization header';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (m === null) return `not a SigV4 Authorization header: ${auth}`;
  const [, keyId, day, scopeRegion, service, signedList, signature] = m as unknown as [string, string, string, string, string, string, string];
  if (keyId !== credentials.accessKeyId) return `access key ${keyId}`;
  if (scopeRegion !== region || service !== 's3') return `scope ${scopeRegion}/${service}`;
  const amzDate = headers['x-amz-date'];
  if (typeof amzDate !== 'string' || !amzDate.startsWith(day)) return `x-amz-date ${String(amzDate)} outside the scope's day ${day}`;
  const payloadHash = headers['x-amz-content-sha256'];
  if (typeof payloadHash !== 'string') return 'no x-amz-content-sha256';
  const signed = signedList.split(';');
  if (!signed.includes('host')) return 'host not signed';
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const canonicalPath = awsEncode(rawPath.split('/').map((seg) => decodeURIComponent(seg)).join('/'), true);
  const query = q < 0 ? '' : url.slice(q + 1);
  const canonicalQuery = query === '' ? '' : query.split('&').map((kv) => {
    const i = kv.indexOf('=');
    const k = decodeURIComponent((i < 0 ? kv : kv.slice(0, i)).replace(/\+/g, ' '));
    const v = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1).replace(/\+/g, ' '));
    return [awsEncode(k, false), awsEncode(v, false)] as const;
  }).sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join('&');
  const canonicalHeaders = signed.map((name) => {
    const v = headers[name];
    if (v === undefined) return null;
    const value = (Array.isArray(v) ? v.join(',') : v).trim().replace(/\s+/g, ' ');
    return `${name}:${value}\n`;
  });
  const missing = signed.filter((_, i) => canonicalHeaders[i] === null);
  if (missing.length > 0) return `signed headers not sent: ${missing.join(', ')}`;
  const canonicalRequest = [method, canonicalPath, canonicalQuery, canonicalHeaders.join(''), signedList, payloadHash].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const expected = createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex');
  return expected === signature ? '' : `signature mismatch for canonical request:\n${canonicalRequest}`;
}

/** S3 refuses a request signed more than 15 minutes away from its clock. */
const MAX_SKEW_MS = 15 * 60_000;

/** x-amz-date (20261207T131500Z) as ms since the epoch. */
function amzDateMs(v: string | string[] | undefined): number {
  const m = typeof v === 'string' ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v) : null;
  return m === null ? Number.NaN : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

export interface SigV4ProxyOptions {
  /** How far this server's clock is ahead of the host's: a request signed more than 15 min from it is refused, 403
   *  RequestTimeTooSkewed with the server's Date, as S3 does. */
  clockOffsetMs?: number;
  /** Answer a GET that passes the checks with these bytes instead of forwarding it: the S3 server behind checks
   *  request times against the host's own clock, so a server ahead of the host can only be this proxy. */
  answerGets?: Buffer;
  /** Hash the body of a request that names its sha256 in x-amz-content-sha256 and refuse it, 400
   *  XAmzContentSHA256Mismatch, when it differs, as S3 does (the body is held in memory: for tests' small objects). */
  checkPayload?: boolean;
}

/** Starts the checking proxy on 127.0.0.1 in front of `target` (http://127.0.0.1:port). */
export async function startSigV4Proxy(target: string, credentials: { accessKeyId: string; secretAccessKey: string }, region: string, opts: SigV4ProxyOptions = {}): Promise<SigV4Proxy> {
  const clockOffsetMs = opts.clockOffsetMs ?? 0;
  const upstream = new URL(target);
  const checked: SigV4Checked[] = [];
  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const serverNow = Date.now() + clockOffsetMs;
    const skewed = Math.abs(amzDateMs(req.headers['x-amz-date']) - serverNow) > MAX_SKEW_MS || Number.isNaN(amzDateMs(req.headers['x-amz-date']));
    const reason = skewed ? `x-amz-date ${String(req.headers['x-amz-date'])} more than 15 min from the server's clock` : sigV4Mismatch(method, url, req.headers, credentials, region);
    const payloadHash = typeof req.headers['x-amz-content-sha256'] === 'string' ? req.headers['x-amz-content-sha256'] : undefined;
    checked.push({ method, path: url, ok: reason === '', reason, ...(payloadHash === undefined ? {} : { payloadHash }) });
    if (skewed) {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml', date: new Date(serverNow).toUTCString() });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>`);
      return;
    }
    if (reason !== '') {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>checked by the test proxy</Message></Error>`);
      return;
    }
    if (opts.answerGets !== undefined && method === 'GET') {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': opts.answerGets.length, etag: '"answered-by-the-proxy"', date: new Date(serverNow).toUTCString() });
      res.end(opts.answerGets);
      return;
    }
    const forward = (body: Buffer | null): void => {
      const out = request({ host: upstream.hostname, port: upstream.port, method, path: url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      out.on('error', () => res.destroy());
      if (body === null) req.pipe(out);
      else out.end(body);
    };
    if (!opts.checkPayload || payloadHash === undefined || !/^[0-9a-f]{64}$/.test(payloadHash)) {
      forward(null);
      return;
    }
    // A signed payload: S3 hashes the body it received and refuses it when the hash differs from the header.
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      if (createHash('sha256').update(body).digest('hex') !== payloadHash) {
        checked[checked.length - 1] = { method, path: url, ok: false, reason: 'x-amz-content-sha256 does not match the body', payloadHash };
        res.writeHead(400, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided 'x-amz-content-sha256' header does not match what was computed.</Message></Error>`);
        return;
      }
      forward(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    checked,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
