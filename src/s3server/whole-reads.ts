// Reads of one object version for the embedded S3 server. s3rver's getObject stats the object's file for its
// length, reads its MD5 and metadata files, then opens the object's file: a PUT of the same key landing in
// between (our PUT replaces the file by a rename, conditional-writes.ts) gives the new bytes cut at the old length,
// or the old bytes under the new ETag. A head.json polled every 50 ms while the pusher rewrote it was read torn
// ("not JSON: Unterminated string") and refused. S3 never serves a mix of two versions: here the stat, the
// MD5, the metadata and the open run under the key's write mutex, so they see one version; the open file then
// keeps serving that version's bytes whatever is renamed over it.
import type { S3rverContext, S3rverStore } from 's3rver';

import type { KeyedMutex } from '../store/keyed-mutex.js';

function storeFor(real: S3rverStore, mutex: KeyedMutex): S3rverStore {
  const view = Object.create(real) as S3rverStore;
  return Object.assign(view, {
    getObject(bucket: string, key: string, options?: unknown) {
      return mutex.run(`${bucket}/${key}`, () => real.getObject(bucket, key, options));
    },
    getMetadata(bucket: string, key: string) {
      return mutex.run(`${bucket}/${key}`, () => real.getMetadata(bucket, key));
    },
  } satisfies Partial<S3rverStore>);
}

/** The middleware giving GET and HEAD requests a store whose object reads see one version (share `mutex` with
 *  conditionalWrites). */
export function wholeReads(mutex: KeyedMutex): (ctx: S3rverContext, next: () => Promise<void>) => Promise<void> {
  return async (ctx, next) => {
    if (ctx.method === 'GET' || ctx.method === 'HEAD') ctx.store = storeFor(ctx.store, mutex);
    await next();
  };
}
