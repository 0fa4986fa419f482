// SigV4 (AWS4-HMAC-SHA256) for the lean GETs of s3-small-get.ts: a body-less S3 request with an unsigned payload,
// signed as @smithy/signature-v4 (the SDK's signer) signs it, byte for byte (test/unit/store/s3-sigv4-get.test.ts
// compares them). The standby signs a head poll four times a second; profiled, the SDK's signer was about a sixth of
// a lean GET's CPU (an HMAC of the credentials per request to find its cached key, a hash object per step, its
// header normalisation). This one derives the signing key once per day, region and credentials, and per request
// hashes the canonical request once and takes one HMAC.
import { createHash, createHmac } from 'node:crypto';

import type { AwsCredentialIdentity } from '@smithy/types';

/** RFC 3986 escaping, as SigV4 canonicalizes a query name or value (and S3 a key's path segment). */
export function escapeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A query as SigV4 signs it: names and values escaped, in escaped-name order (the x-amz-signature of a presigned URL
 *  is never in a query signed here). The request sends this same string, so what is sent is what was signed. */
export function canonicalQuery(query: Readonly<Record<string, string>>): string {
  return Object.entries(query).map(([k, v]) => [escapeRfc3986(k), escapeRfc3986(v)] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
}

/** Headers SigV4 leaves unsigned (the SDK's list): a proxy or the client may change them. */
const UNSIGNED = new Set(['authorization', 'cache-control', 'connection', 'expect', 'from', 'keep-alive', 'max-forwards', 'pragma', 'referer', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'x-amzn-trace-id']);

export class GetSigner {
  readonly #region: string;
  readonly #service: string;
  #keyFor = '';
  #key: Buffer = Buffer.alloc(0);

  constructor(region: string, service = 's3') {
    this.#region = region;
    this.#service = service;
  }

  /**
   * The headers to send: `headers` (lower-case names; `host` and `x-amz-content-sha256` among them) with
   * x-amz-date, the session token when the credentials have one, and authorization added. `path` is sent and
   * signed as given (S3: each key segment escaped once); `query` is canonicalized (escaped, in name order).
   */
  sign(credentials: AwsCredentialIdentity, date: Date, path: string, query: Readonly<Record<string, string>>, headers: Readonly<Record<string, string>>): Record<string, string> {
    const longDate = date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
    const shortDate = longDate.slice(0, 8);
    const out: Record<string, string> = { ...headers, 'x-amz-date': longDate };
    if (credentials.sessionToken !== undefined && credentials.sessionToken !== '') out['x-amz-security-token'] = credentials.sessionToken;
    const names = Object.keys(out).filter((n) => !UNSIGNED.has(n) && !/^(proxy|sec)-/.test(n)).sort();
    // A value's line breaks and runs of blanks become one space, one leading and trailing space goes (the SDK's).
    const canonicalHeaders = names.map((n) => `${n}:${(out[n] ?? '').replace(/[\r\n]/g, ' ').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '')}\n`).join('');
    const signedHeaders = names.join(';');
    const payload = out['x-amz-content-sha256'] ?? 'UNSIGNED-PAYLOAD';
    const canonical = `GET\n${path}\n${canonicalQuery(query)}\n${canonicalHeaders}\n${signedHeaders}\n${payload}`;
    const scope = `${shortDate}/${this.#region}/${this.#service}/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${longDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const signature = createHmac('sha256', this.#signingKey(credentials, shortDate)).update(toSign).digest('hex');
    out['authorization'] = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return out;
  }

  /** kSigning of SigV4, kept while the day and the credentials stay the same (the SDK's signer caches it too). */
  #signingKey(credentials: AwsCredentialIdentity, shortDate: string): Buffer {
    const id = `${shortDate}\n${credentials.accessKeyId}\n${credentials.secretAccessKey}`;
    if (id !== this.#keyFor) {
      let key = createHmac('sha256', `AWS4${credentials.secretAccessKey}`).update(shortDate).digest();
      for (const part of [this.#region, this.#service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
      this.#key = key;
      this.#keyFor = id;
    }
    return this.#key;
  }
}
