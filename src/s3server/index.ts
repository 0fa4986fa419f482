// The embedded S3 server (s3rver, file-backed) behind `twinlayer s3`, the tests and the demo.
// s3rver accepts one fixed key pair, exported here. It ignores conditional writes (If-None-Match/If-Match on
// PUT); conditional-writes.ts adds them, because generation claims need a create that exactly one writer wins.
// Its reads can mix two versions of an object being replaced; whole-reads.ts makes them read one.
import { mkdir } from 'node:fs/promises';

import S3rver from 's3rver';

import { KeyedMutex } from '../store/keyed-mutex.js';
import { abortMultipart } from './abort-multipart.js';
import { conditionalWrites } from './conditional-writes.js';
import { wholeReads } from './whole-reads.js';

/** The only credentials s3rver accepts. */
export const S3RVER_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface S3ServerOptions {
  /** Directory holding the buckets (one subdirectory each); created when missing. */
  dir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Buckets created at start (existing ones are kept). */
  buckets?: string[];
  /** Default true: no request log on stdout. */
  silent?: boolean;
}

export interface S3Server {
  /** http://host:port, for path-style clients. */
  endpoint: string;
  port: number;
  close(): Promise<void>;
}

const bucketRe = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export async function startS3Server(opts: S3ServerOptions): Promise<S3Server> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`Expected \`port\` to be an integer from 0 to 65535, got ${String(port)}`);
  for (const b of opts.buckets ?? []) {
    if (!bucketRe.test(b)) throw new TypeError(`Expected bucket names of 3-63 lowercase characters, got ${JSON.stringify(b)}`);
  }
  await mkdir(opts.dir, { recursive: true });
  const server = new S3rver({
    address: host,
    port,
    silent: opts.silent ?? true,
    directory: opts.dir,
    // Path-style only: the bucket is the first path segment, whatever the Host header says.
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  // s3rver opens an object's file before it looks at If-None-Match and never closes it on a 304: one leaked
  // descriptor per conditional GET, which kills a server polled every few ms within minutes. Answer 304 here,
  // after s3rver served the object, and close its stream.
  server.middleware.unshift(async (ctx, next) => {
    const noneMatch = ctx.request.headers['if-none-match'];
    if (ctx.method !== 'GET' || typeof noneMatch !== 'string') return next();
    delete ctx.request.headers['if-none-match'];
    await next();
    if (ctx.status === 200 && (noneMatch === '*' || ctx.response.get('ETag') === noneMatch)) {
      const body = ctx.body as { destroy?: () => void } | null;
      body?.destroy?.();
      ctx.body = null;
      ctx.status = 304;
    }
  });
  // First of all: every write request sees a store that serializes writes per key and honours its conditions, and
  // every read one that reads one version of an object under the same per-key lock.
  const perKey = new KeyedMutex();
  server.middleware.unshift(wholeReads(perKey));
  server.middleware.unshift(abortMultipart(opts.dir));
  server.middleware.unshift(conditionalWrites(perKey));
  const address = await server.run();
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://${urlHost}:${address.port}`,
    port: address.port,
    close() {
      closed ??= (async () => {
        const http = server.httpServer;
        const done = server.close();
        // Idle keep-alive sockets of clients would hold close() open; active requests are cut.
        http?.closeAllConnections();
        await done;
      })();
      return closed;
    },
  };
}
