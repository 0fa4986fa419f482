// The seam between twinlayer and an object store (Litestream's ReplicaClient). Keys are S3 keys; bodies are bytes.
export interface BlobStore {
  /** Writes the whole object; a file body is streamed from disk. */
  put(key: string, body: Buffer | { file: string }): Promise<void>;
  /** The object's bytes, null when missing; throws ObjectTooLargeError when larger than maxBytes. */
  getBuffer(key: string, maxBytes: number): Promise<Buffer | null>;
  /** Streams the object into `file` (written to a temp name and renamed); false when missing. */
  getToFile(key: string, file: string): Promise<boolean>;
  /** Conditional GET: `unchanged` when the object's ETag still equals `etag`. */
  getIfNoneMatch(
    key: string,
    etag: string | undefined,
    maxBytes: number,
  ): Promise<{ status: 'missing' } | { status: 'unchanged' } | { status: 'ok'; body: Buffer; etag: string }>;
  exists(key: string): Promise<boolean>;
  /** Every key starting with `prefix` and sorting after `startAfter`, in key order, paginated under the hood. */
  list(prefix: string, startAfter?: string): AsyncIterable<string>;
  /** Removes the object; a missing object is not an error. */
  delete(key: string): Promise<void>;
}

/** Exponential backoff with full jitter: attempt n waits random(0, min(maxMs, baseMs * 2^n)). */
export interface RetryPolicy {
  /** Total tries, the first included (>= 1). */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { attempts: 6, baseMs: 100, maxMs: 5_000 };
