// Conditional writes for the embedded S3 server, which s3rver ignores: PutObject with `If-None-Match: *` (create
// only) or `If-Match: <etag>` (replace only that version) fails with 412 PreconditionFailed, as AWS S3, MinIO,
// Ceph RGW and R2 answer. Generation claims depend on it: exactly one host may create a claim.
//
// How: a middleware gives each write request its own view of s3rver's store whose object-changing methods run
// under a per-key mutex, so a check and the write it guards cannot interleave with another PUT or DELETE of the
// same key. The check runs where s3rver's controller calls store.putObject: after authentication and the bucket
// check, as on S3. Conditions on writes we do not check (copy, multipart, delete, tagging) are refused with
// 501 NotImplemented rather than ignored.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type { S3rverContext, S3rverStore } from 's3rver';
import S3Error from 's3rver/lib/models/error.js';

import { KeyedMutex } from '../store/keyed-mutex.js';

/** A conditional PUT's body is read whole before the check: far above a claim or a head, and memory-safe. */
export const MAX_CONDITIONAL_BODY_BYTES = 16 * 1024 * 1024;

interface WriteConditions {
  /** `If-None-Match: *`: the object must not exist. */
  absent: boolean;
  /** `If-Match`: the object must exist with one of these ETags (unquoted), or with any ETag for `*`. */
  match: string[] | null;
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function unquote(etag: string): string {
  const t = etag.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

function parseConditions(headers: Record<string, string | string[] | undefined>): WriteConditions | null {
  const noneMatch = headerText(headers['if-none-match']);
  const match = headerText(headers['if-match']);
  if (noneMatch === undefined && match === undefined) return null;
  if (noneMatch !== undefined && noneMatch.trim() !== '*') {
    // S3 honours only `*` on writes; an ETag list would be a condition we silently ignored.
    throw new S3Error('NotImplemented', 'A header you provided implies functionality that is not implemented', { Header: 'If-None-Match' });
  }
  return {
    absent: noneMatch !== undefined,
    match: match === undefined ? null : match.split(',').map(unquote).filter((t) => t !== ''),
  };
}

function preconditionFailed(condition: 'If-None-Match' | 'If-Match'): S3Error {
  return new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: condition });
}

function notImplemented(): S3Error {
  return new S3Error('NotImplemented', 'Conditional headers are implemented for PutObject only', { Header: 'If-None-Match/If-Match' });
}

function isMissing(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** s3rver's putObject resolves before its object file is surely open, but only after it wrote the metadata file. */
async function objectExists(store: S3rverStore, bucket: string, key: string): Promise<boolean> {
  return (await pathExists(store.getResourcePath(bucket, key, 'object'))) || (await pathExists(store.getResourcePath(bucket, key, 'metadata.json')));
}

/** The current ETag (unquoted MD5) from the MD5 file s3rver keeps; null when missing, '' when not known yet. */
async function currentEtag(store: S3rverStore, bucket: string, key: string): Promise<string | null> {
  try {
    return unquote((await store.getMetadata(bucket, key)).etag);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  return (await objectExists(store, bucket, key)) ? '' : null;
}

async function check(store: S3rverStore, bucket: string, key: string, cond: WriteConditions): Promise<void> {
  if (cond.match !== null) {
    const etag = await currentEtag(store, bucket, key);
    if (etag === null || !cond.match.some((t) => t === '*' || t === etag)) throw preconditionFailed('If-Match');
  }
  if (cond.absent && (await objectExists(store, bucket, key))) throw preconditionFailed('If-None-Match');
}

/** The request body, whole; an aborted upload throws here, before anything is written. */
async function readBody(req: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    bytes += b.length;
    if (bytes > MAX_CONDITIONAL_BODY_BYTES) {
      throw new S3Error('EntityTooLarge', `Conditional writes to the embedded server are limited to ${MAX_CONDITIONAL_BODY_BYTES} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/**
 * Settles with `write`, or rejects as soon as the client aborts the upload. s3rver's putObject never settles for
 * an aborted body (its stream pipe waits forever); without this the key's mutex would stay taken for good.
 */
function untilAborted<T>(req: IncomingMessage, write: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onClose = (): void => {
      if (!req.complete) reject(new Error('the client aborted the upload'));
    };
    req.once('close', onClose);
    if (req.destroyed) onClose();
    void write.then(resolve, reject).finally(() => req.off('close', onClose));
  });
}

/**
 * s3rver's putObject writes straight into the object's file (truncated when opened) and answers once the body went
 * through, before the file is flushed: a GET right after the 200 — or during the write — could read an empty or
 * partial object (a claim read back after a won create was refused as torn JSON under load). Here the body goes to
 * a temp file beside it (not listed: s3rver lists names ending in its object suffix), received without any lock: a
 * slow or stalled upload (a frozen client) holds no key, so neither reads (whole-reads.ts) nor other writes of the
 * key wait for it. Then `commitTemp`, under the key's lock, replaces the object's file in one rename and writes the
 * metadata, as s3rver's own putObject does.
 */
interface ReceivedBody {
  tmp: string;
  size: number;
  md5: string;
}

async function receiveToTemp(real: S3rverStore, object: { bucket: string; key: string; content?: unknown }): Promise<ReceivedBody> {
  const objectPath = real.getResourcePath(object.bucket, object.key, 'object');
  await mkdir(dirname(objectPath), { recursive: true });
  const tmp = `${objectPath}.tl-${randomBytes(6).toString('hex')}.tmp`;
  const md5 = createHash('md5');
  let size = 0;
  const content = object.content instanceof Readable ? object.content : Readable.from([Buffer.isBuffer(object.content) ? object.content : Buffer.alloc(0)], { objectMode: false });
  try {
    await pipeline(content, new Transform({
      transform(chunk: Buffer, _enc, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    }), createWriteStream(tmp));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { tmp, size, md5: md5.digest('hex') };
}

/** Under the key's lock: the received body becomes the object (one rename), then its metadata. */
async function commitTemp(real: S3rverStore, object: { bucket: string; key: string; metadata?: unknown }, body: ReceivedBody): Promise<{ size: number; md5: string }> {
  try {
    await rename(body.tmp, real.getResourcePath(object.bucket, object.key, 'object'));
  } catch (err) {
    await rm(body.tmp, { force: true });
    throw err;
  }
  await real.putMetadata(object.bucket, object.key, object.metadata, body.md5);
  return { size: body.size, md5: body.md5 };
}

function storeFor(real: S3rverStore, mutex: KeyedMutex, req: IncomingMessage, headers: Record<string, string | string[] | undefined>): S3rverStore {
  // Parsed where s3rver is about to write, after its authentication and bucket checks, as S3 orders its answers.
  const conditions = (): WriteConditions | null => parseConditions(headers);
  const lockKey = (bucket: string, key: string): string => `${bucket}/${key}`;
  const unconditional = <T>(write: () => Promise<T>): Promise<T> => (conditions() === null ? write() : Promise.reject(notImplemented()));
  const view = Object.create(real) as S3rverStore;
  return Object.assign(view, {
    async putObject(object: { bucket: string; key: string; content?: unknown; metadata?: unknown }) {
      const cond = conditions();
      // Received first, outside the lock: an aborted upload creates nothing, and a slow client holds no key while
      // it sends. A conditional body is bounded (readBody) before anything is written.
      const content = cond !== null && object.content instanceof Readable ? Readable.from([await readBody(object.content)], { objectMode: false }) : object.content;
      const body = await untilAborted(req, receiveToTemp(real, { ...object, content }));
      return mutex.run(lockKey(object.bucket, object.key), async () => {
        if (cond !== null) {
          try {
            await check(real, object.bucket, object.key, cond);
          } catch (err) {
            await rm(body.tmp, { force: true });
            throw err;
          }
        }
        return commitTemp(real, object, body);
      });
    },
    copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, replacementMetadata?: unknown) {
      return unconditional(() => mutex.run(lockKey(destBucket, destKey), () => real.copyObject(srcBucket, srcKey, destBucket, destKey, replacementMetadata)));
    },
    deleteObject(bucket: string, key: string) {
      return unconditional(() => mutex.run(lockKey(bucket, key), () => real.deleteObject(bucket, key)));
    },
    // Not serialized: a multipart upload's key is only known inside s3rver. twinlayer does not upload in parts.
    putObjectMultipart(bucket: string, uploadId: string, parts: unknown) {
      return unconditional(() => real.putObjectMultipart(bucket, uploadId, parts));
    },
    putPart(bucket: string, uploadId: string, partNumber: number, content: unknown) {
      return unconditional(() => real.putPart(bucket, uploadId, partNumber, content));
    },
    putSubresource(bucket: string, key: string | undefined, resource: unknown) {
      return unconditional(() => real.putSubresource(bucket, key, resource));
    },
  } satisfies Partial<S3rverStore>);
}

/**
 * The middleware (first in s3rver's list): every request that may change an object gets a store view that
 * serializes writes per key through `mutex` and enforces the request's conditional headers.
 */
export function conditionalWrites(mutex: KeyedMutex): (ctx: S3rverContext, next: () => Promise<void>) => Promise<void> {
  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD' && ctx.method !== 'OPTIONS') ctx.store = storeFor(ctx.store, mutex, ctx.req, ctx.request.headers);
    await next();
  };
}
