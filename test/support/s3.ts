// An embedded S3 server on a temp dir for tests, plus the env and store a test needs to reach it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { S3RVER_CREDENTIALS, startS3Server } from '../../src/s3server/index.js';
import { S3BlobStore, type RetryPolicy } from '../../src/store/index.js';
import type { Logger } from '../../src/log/logger.js';
import type { Metrics } from '../../src/metrics/index.js';

export const TEST_REGION = 'us-east-1';
export const TEST_CREDENTIALS = S3RVER_CREDENTIALS;
/** Fast retries for tests: the fault tests finish in milliseconds, not seconds. */
export const TEST_RETRY: RetryPolicy = { attempts: 5, baseMs: 5, maxMs: 50 };

export interface TestS3 {
  endpoint: string;
  port: number;
  bucket: string;
  /** s3rver's data directory; the bucket's objects are under join(dir, bucket). */
  dir: string;
  bucketDir: string;
  close(): Promise<void>;
}

/** A bucket name no parallel test shares. */
export function uniqueBucketName(stem = 'tl'): string {
  return `${stem}-${randomBytes(5).toString('hex')}`;
}

/** Starts s3rver on 127.0.0.1 (any port) over a fresh temp dir with one fresh bucket; close() removes it all. */
export async function withS3(opts: { bucket?: string } = {}): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'twinlayer-s3-'));
  const bucket = opts.bucket ?? uniqueBucketName();
  try {
    const server = await startS3Server({ dir, buckets: [bucket] });
    return {
      endpoint: server.endpoint,
      port: server.port,
      bucket,
      dir,
      bucketDir: join(dir, bucket),
      async close() {
        try {
          await server.close();
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Environment for a child process (CLI, demo) to reach the test server. */
export function s3Env(s3: { endpoint: string; bucket: string }): Record<string, string> {
  return {
    TWINLAYER_ENDPOINT: s3.endpoint,
    TWINLAYER_BUCKET: s3.bucket,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_REGION: TEST_REGION,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    AWS_REGION: TEST_REGION,
  };
}

/** An S3BlobStore on the test server (or on a fault proxy in front of it); call destroy() when done. */
export function testS3Store(
  s3: { endpoint: string; bucket: string },
  opts: { retry?: RetryPolicy; requestTimeoutMs?: number; smallRequestTimeoutMs?: number; log?: Logger; bucket?: string; metrics?: Metrics } = {},
): S3BlobStore {
  return new S3BlobStore({
    bucket: opts.bucket ?? s3.bucket,
    region: TEST_REGION,
    endpoint: s3.endpoint,
    pathStyle: true,
    credentials: { ...TEST_CREDENTIALS },
    retry: opts.retry ?? TEST_RETRY,
    requestTimeoutMs: opts.requestTimeoutMs ?? 5_000,
    ...(opts.smallRequestTimeoutMs === undefined ? {} : { smallRequestTimeoutMs: opts.smallRequestTimeoutMs }),
    ...(opts.log === undefined ? {} : { log: opts.log }),
    metrics: opts.metrics,
  });
}
