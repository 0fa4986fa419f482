// AbortMultipartUpload for the embedded S3 server, which s3rver lacks (DELETE ?uploadId answers 405): the upload's
// parts are removed and the server answers 204, as S3 and MinIO do; an upload it does not hold is 404 NoSuchUpload.
// s3rver lets an unsigned request through as anonymous; an abort must be signed (s3rver checks a signature V2 and
// only the key id of a V4 one: a development server), and name the key the upload was started for.
// The store aborts a multipart upload whose attempt failed before it starts the next one (s3-blob-store.ts).
import { lstat, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { S3rverContext } from 's3rver';

/** s3rver's upload ids: 16 random bytes in hex (controllers/object.js). */
const uploadIdRe = /^[0-9a-f]{32}$/;
const bucketRe = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Where s3rver's FilesystemStore keeps the parts of a bucket's uploads (getResourcePath(bucket, '', 'uploads')). */
function uploadsDir(root: string, bucket: string): string {
  return join(root, bucket, '._S3rver_uploads');
}

function decodedKey(path: string): string | null {
  try {
    return decodeURIComponent(path);
  } catch {
    return null;
  }
}

export function abortMultipart(root: string): (ctx: S3rverContext, next: () => Promise<void>) => Promise<void> {
  return async (ctx, next) => {
    const uploadId = ctx.query['uploadId'];
    if (ctx.method !== 'DELETE' || uploadId === undefined) return next();
    // s3rver authenticates the request first; past that, it refuses the route (MethodNotAllowed) and the abort is done here.
    try {
      await next();
      if (ctx.status !== 405) return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'MethodNotAllowed') throw err;
    }
    const [, bucket = '', ...keyParts] = ctx.path.split('/');
    const signed = ctx.request.headers['authorization'] !== undefined || ctx.query['X-Amz-Signature'] !== undefined;
    if (!signed) {
      ctx.status = 403;
      ctx.set('Content-Type', 'application/xml');
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>An abort of a multipart upload must be signed.</Message></Error>';
      return;
    }
    const dir = typeof uploadId === 'string' && uploadIdRe.test(uploadId) && bucketRe.test(bucket) ? join(uploadsDir(root, bucket), uploadId) : null;
    const st = dir === null ? null : await lstat(dir).catch(() => null);
    const startedFor = dir === null || st?.isDirectory() !== true ? null : await readFile(join(dir, 'key'), 'utf8').catch(() => null);
    if (dir === null || startedFor === null || startedFor !== decodedKey(keyParts.join('/'))) {
      ctx.status = 404;
      ctx.set('Content-Type', 'application/xml');
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>';
      return;
    }
    await rm(dir, { recursive: true, force: true });
    ctx.status = 204;
    ctx.body = null;
  };
}
