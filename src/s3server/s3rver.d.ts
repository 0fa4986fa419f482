// The part of s3rver (3.7, no bundled types) that src/s3server uses.
declare module 's3rver' {
  import type { AddressInfo } from 'node:net';

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    serviceEndpoint?: string;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }

  class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    httpServer?: import('node:http').Server;
    /** Koa's middleware list; composed when run() starts the server. */
    middleware: Array<(ctx: S3rverContext, next: () => Promise<void>) => Promise<void>>;
  }

  interface S3rverContext {
    method: string;
    status: number;
    body: unknown;
    request: { headers: Record<string, string | string[] | undefined> };
    response: { get(field: string): string };
  }

  export default S3rver;
}
