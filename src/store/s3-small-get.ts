// A lean S3 GET for small objects (the head the standby polls four times a second, records, specs, claims): one
// SigV4-signed request over a keep-alive agent, without the AWS SDK's middleware stack. Profiled idle, the SDK's
// GetObject cost 2.6-3.2 ms of CPU a poll (its middleware, endpoint rules, response parsing and the error path a
// 304 takes), over 1 % of a core for the head poll alone. The signature is the SDK's (s3-sigv4-get.ts signs as
// @smithy/signature-v4 does, with a cheaper cache of the signing key), with the credentials the S3 client resolves
// (same chain, same cache). Failures look like the SDK's
// (`name` the S3 error code, `$metadata.httpStatusCode`), so the store's retry and error rules apply unchanged.
// Listing pages go the same way (listPage): the standby lists its specs every 20 polls.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

import type { AwsCredentialIdentity } from '@smithy/types';
import { z } from 'zod';

import { canonicalQuery, escapeRfc3986, GetSigner } from './s3-sigv4-get.js';

/** What one small GET found: the object, `unchanged` (304 to If-None-Match) or `missing` (404 NoSuchKey). */
export type SmallGetResult =
  | { status: 'missing' }
  | { status: 'unchanged' }
  | { status: 'ok'; body: Buffer; etag: string | undefined; contentLength: number | undefined };

export interface SmallGetOptions {
  /** The URL under which the bucket's keys live, as the SDK addresses a GetObject of this bucket (its endpoint
   *  rules: path or virtual-host style, an IP endpoint, AWS_ENDPOINT_URL, the region's partition). Asked once,
   *  again after a failure. */
  resolveBase: () => Promise<URL>;
  region: string;
  /** The S3 client's resolved credentials provider (it caches and refreshes). */
  credentials: () => Promise<AwsCredentialIdentity>;
  /** Milliseconds the host clock is behind the server's (the S3 client's systemClockOffset, which it learns from a
   *  RequestTimeTooSkewed answer). */
  clockOffsetMs?: () => number;
  /** Called with the offset (server clock − host clock, ms) an error answer's Date header shows when it is 5 min or
   *  more away from the one in use: a host whose clock is off is refused (403 RequestTimeTooSkewed) until its
   *  requests are signed with the server's time, as the SDK's signer learns it. */
  learnClockOffsetMs?: (offsetMs: number) => void;
  /** A body larger than this is not read: the error answer's or the object's (the caller bounds the object). */
  maxErrorBodyBytes?: number;
}

/** An HTTP answer other than 200/304/404-NoSuchKey, shaped as the SDK shapes its service errors. */
export class SmallGetHttpError extends Error {
  readonly $metadata: { httpStatusCode: number };
  readonly Code: string | undefined;
  constructor(status: number, code: string | undefined, message: string) {
    super(message);
    // The S3 error code is the name (NoSuchBucket, SlowDown, AccessDenied…), as the SDK names its errors.
    this.name = code ?? (status >= 500 ? 'InternalError' : `Http${status}`);
    this.Code = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/** The two fields of an S3 error document that decide anything (RestXml: <Error><Code/><Message/></Error>). */
const errorFields = z.object({
  code: z.string().regex(/^[A-Za-z0-9.]{1,100}$/).optional(),
  message: z.string().max(1000).optional(),
});

function xmlField(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return m?.[1]?.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e] ?? '');
}

/** The code and message of an error answer's body; an answer without a readable one is named by its status. */
export function parseErrorBody(status: number, body: string): SmallGetHttpError {
  const parsed = errorFields.safeParse({ code: xmlField(body, 'Code'), message: xmlField(body, 'Message') });
  const fields = parsed.success ? parsed.data : {};
  const message = fields.message ?? (fields.code === undefined ? `HTTP ${status}` : fields.code);
  return new SmallGetHttpError(status, fields.code, message);
}

/** How far apart (ms) the server's clock and the signing clock may be before the offset is learned again (the SDK's
 *  own threshold; S3 refuses signatures 15 min off). */
const CLOCK_SKEW_MS = 5 * 60_000;

interface Base {
  url: URL;
  /** The hostname to connect to (an IPv6 address without its brackets). */
  connectHost: string;
  agent: HttpAgent;
  request: typeof httpRequest;
}

export class SmallGetter {
  readonly #resolveBase: () => Promise<URL>;
  #base: Promise<Base> | null = null;
  readonly #agents: HttpAgent[] = [];
  readonly #signer: GetSigner;
  readonly #credentials: () => Promise<AwsCredentialIdentity>;
  readonly #clockOffsetMs: () => number;
  readonly #learnClockOffsetMs: (offsetMs: number) => void;
  readonly #maxErrorBodyBytes: number;

  constructor(o: SmallGetOptions) {
    this.#resolveBase = o.resolveBase;
    this.#signer = new GetSigner(o.region);
    this.#credentials = o.credentials;
    this.#clockOffsetMs = o.clockOffsetMs ?? (() => 0);
    this.#learnClockOffsetMs = o.learnClockOffsetMs ?? (() => undefined);
    this.#maxErrorBodyBytes = o.maxErrorBodyBytes ?? 64 * 1024;
  }

  /** The bucket's base URL and a keep-alive agent for it, resolved once (again after a failure). */
  #baseOf(): Promise<Base> {
    this.#base ??= this.#resolveBase().then((url) => {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`Expected the bucket's endpoint to be an http(s) URL, got ${JSON.stringify(url.href)}`);
      const https = url.protocol === 'https:';
      // Few sockets: small GETs go one at a time per caller, and a kept-alive socket spares a handshake every poll.
      const agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: 8 }) : new HttpAgent({ keepAlive: true, maxSockets: 8 });
      this.#agents.push(agent);
      return { url, connectHost: url.hostname.replace(/^\[(.*)\]$/, '$1'), agent, request: https ? httpsRequest : httpRequest };
    }, (err: unknown) => {
      this.#base = null;
      throw err;
    });
    return this.#base;
  }

  destroy(): void {
    for (const agent of this.#agents) agent.destroy();
  }

  /**
   * One GET of `key` (no retry: the store retries), If-None-Match `etag` when given. The body is read whole up to
   * `maxBytes`; past that, or announced longer, it is not read and `tooLarge` is called (it throws). `signal` ends
   * the request, the body's read included, with the signal's reason.
   */
  async get(key: string, etag: string | undefined, maxBytes: number, signal: AbortSignal, tooLarge: (size: number) => never): Promise<SmallGetResult> {
    const res = await this.#signedGet((base) => `${base.replace(/\/+$/, '')}/${key.split('/').map(escapeRfc3986).join('/')}`, {}, etag, signal);
    const status = res.statusCode ?? 0;
    if (status === 304) {
      res.resume();
      return { status: 'unchanged' };
    }
    const announced = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
    if (status === 200) {
      if (announced !== undefined && announced > maxBytes) {
        res.destroy();
        tooLarge(announced);
      }
      const body = await readBody(res, maxBytes, signal, (bytes) => tooLarge(bytes));
      const tag = res.headers.etag;
      return { status: 'ok', body, etag: typeof tag === 'string' && tag !== '' ? tag : undefined, contentLength: Number.isSafeInteger(announced) ? announced : undefined };
    }
    const err = await this.#errorOf(res, status, signal);
    if (status === 404 && err.name !== 'NoSuchBucket') return { status: 'missing' };
    throw err;
  }

  /**
   * One page of a ListObjects (v1) of `prefix` after `marker`, at most `maxKeys` keys: the answer's XML, whole up to
   * `maxBytes` (past that `tooLarge` throws). No retry (the store retries); s3-list-page.ts reads the page. Version 1
   * because its marker is the last key listed: s3rver makes version 2's continuation tokens with DES, which OpenSSL 3
   * refuses (500), as the SDK's listing found before.
   */
  async listPage(prefix: string, marker: string | undefined, maxKeys: number, maxBytes: number, signal: AbortSignal, tooLarge: (size: number) => never): Promise<Buffer> {
    const query: Record<string, string> = { 'max-keys': String(maxKeys), prefix };
    if (marker !== undefined) query['marker'] = marker;
    // The bucket itself: path style /bucket, virtual-host style /.
    const res = await this.#signedGet((base) => base.replace(/\/+$/, '') || '/', query, undefined, signal);
    const status = res.statusCode ?? 0;
    if (status === 200) return readBody(res, maxBytes, signal, (bytes) => tooLarge(bytes));
    throw await this.#errorOf(res, status, signal);
  }

  /** A signed GET of the path `pathOf` makes from the bucket's base path, with `query`; its answer's head. */
  async #signedGet(pathOf: (basePath: string) => string, query: Record<string, string>, etag: string | undefined, signal: AbortSignal): Promise<IncomingMessage> {
    signal.throwIfAborted();
    const base = await this.#baseOf();
    const { url } = base;
    const path = pathOf(url.pathname);
    const headers: Record<string, string> = { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    if (etag !== undefined) headers['if-none-match'] = etag;
    const offset = this.#clockOffsetMs();
    const credentials = await this.#credentials();
    const signed = this.#signer.sign(credentials, new Date(Date.now() + offset), path, query, headers);
    signal.throwIfAborted();
    const search = canonicalQuery(query);
    const res = await this.#send(base, search === '' ? path : `${path}?${search}`, signed, signal);
    if ((res.statusCode ?? 0) >= 400) this.#noteServerClock(res.headers.date, offset);
    return res;
  }

  /** An error answer as the SDK shapes it; an error document is small, one that is not is cut (its first bytes still
   *  name the code). */
  async #errorOf(res: IncomingMessage, status: number, signal: AbortSignal): Promise<SmallGetHttpError> {
    const text = (await readBody(res, this.#maxErrorBodyBytes, signal, () => null)).toString('utf8');
    return parseErrorBody(status, text);
  }

  /** An error answer's Date far from the signing clock: the offset to sign with from now on. */
  #noteServerClock(date: string | undefined, offsetInUse: number): void {
    const server = date === undefined ? Number.NaN : Date.parse(date);
    if (!Number.isFinite(server)) return;
    const offset = server - Date.now();
    if (Math.abs(offset - offsetInUse) >= CLOCK_SKEW_MS) this.#learnClockOffsetMs(offset);
  }

  #send(base: Base, path: string, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = base.request({ protocol: base.url.protocol, hostname: base.connectHost, port: base.url.port, path, method: 'GET', headers, agent: base.agent });
      const onAbort = (): void => {
        req.destroy();
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.once('response', (res) => {
        signal.removeEventListener('abort', onAbort);
        resolve(res);
      });
      req.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(signal.aborted ? (signal.reason as Error) : err);
      });
      req.end();
    });
  }
}

/** The whole body, at most `limit` bytes: past that the answer is dropped and `over` decides (throw, or null to keep
 *  what was read). A body cut short by the server is a premature close, as the SDK's stream reports it. */
function readBody(res: IncomingMessage, limit: number, signal: AbortSignal, over: (bytes: number) => null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let done = false;
    const finish = (err: unknown, body?: Buffer): void => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      if (err === undefined && body !== undefined) resolve(body);
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onAbort = (): void => {
      res.destroy();
      finish(signal.reason);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      bytes += chunk.length;
      if (bytes <= limit) {
        chunks.push(chunk);
        return;
      }
      res.destroy();
      try {
        over(bytes);
        finish(undefined, Buffer.concat(chunks));
      } catch (err) {
        finish(err);
      }
    });
    res.once('end', () => finish(undefined, Buffer.concat(chunks)));
    res.once('error', (err) => finish(err));
    res.once('close', () => {
      if (!res.complete) finish(Object.assign(new Error('the S3 server closed the answer before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
  });
}
