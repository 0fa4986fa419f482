// The part of s3rver (3.7, no bundled types) that src/s3server uses.
declare module 's3rver' {
  import type { AddressInfo } from 'node:net';
  import type { IncomingMessage, Server } from 'node:http';

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

  /** s3rver's FilesystemStore (lib/stores/filesystem.js): the methods its controllers call to change objects. */
  interface S3rverStore {
    existsObject(bucket: string, key: string): Promise<boolean>;
    /** The file behind a key: resource `object`, `object.md5` or `metadata.json`. */
    getResourcePath(bucket: string, key: string, resource: string): string;
    /** Throws an error with code ENOENT when the object is missing; `etag` is the quoted MD5 hex. */
    getMetadata(bucket: string, key: string): Promise<{ etag: string }>;
    /** Resolves once the object's file is open (null when missing); `options` is a byte range. */
    getObject(bucket: string, key: string, options?: unknown): Promise<unknown>;
    /** `content` is the request (a stream) or a Buffer; it resolves once the body went through, not once on disk. */
    putObject(object: { bucket: string; key: string; content?: unknown }): Promise<{ size: number; md5: string }>;
    /** Writes the object's `.md5` and `metadata.json` files (from the S3Object's metadata). */
    putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
    copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, replacementMetadata?: unknown): Promise<unknown>;
    deleteObject(bucket: string, key: string): Promise<void>;
    putObjectMultipart(bucket: string, uploadId: string, parts: unknown): Promise<{ size: number; md5: string }>;
    putPart(bucket: string, uploadId: string, partNumber: number, content: unknown): Promise<{ size: number; md5: string }>;
    putSubresource(bucket: string, key: string | undefined, resource: unknown): Promise<void>;
  }

  class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    httpServer?: Server;
    /** Koa's middleware list; composed when run() starts the server. */
    middleware: Array<(ctx: S3rverContext, next: () => Promise<void>) => Promise<void>>;
  }

  interface S3rverContext {
    method: string;
    /** The request's path and query (Koa's). */
    path: string;
    query: Record<string, string | string[] | undefined>;
    set(field: string, value: string): void;
    status: number;
    body: unknown;
    req: IncomingMessage;
    /** Shared by every request through Koa's context prototype; a request may shadow it with its own. */
    store: S3rverStore;
    request: { headers: Record<string, string | string[] | undefined> };
    response: { get(field: string): string };
  }

  export type { S3rverContext, S3rverStore };
  export default S3rver;
}

declare module 's3rver/lib/models/error.js' {
  /** s3rver's error: its `code` picks the HTTP status (PreconditionFailed 412, NotImplemented 501) and the XML body. */
  class S3Error extends Error {
    constructor(code: string, message?: string, detail?: Record<string, string>);
    readonly code: string;
    readonly status: number;
  }
  export default S3Error;
}
