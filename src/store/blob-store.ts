// The seam between twinlayer and an object store (Litestream's ReplicaClient). Keys are S3 keys; bodies are bytes.
export interface BlobStore {
  /** Writes the whole object; a file body is streamed from disk. An aborted `signal` ends the request in flight (and
   *  the retries) with the signal's reason. */
  put(key: string, body: Buffer | { file: string }, opts?: PutOptions): Promise<void>;
  /**
   * Creates the object only if the key does not exist (S3 `If-None-Match: *`), atomically against every other
   * writer of the key: true when this call created it, false when the key existed (HTTP 412).
   * When an attempt's answer was lost and a retry finds the key taken, the stored bytes decide: equal to `body`
   * counts as this call's own write. So give each writer's body something only it writes (host, time).
   */
  putIfAbsent(key: string, body: Buffer): Promise<boolean>;
  /**
   * Replaces the object only while its ETag is `etag` (S3 `If-Match`; the ETag as getIfNoneMatch returned it):
   * true when replaced, false when the object is missing or is another version. Lost answers as putIfAbsent.
   */
  putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean>;
  /** The object's bytes, null when missing; throws ObjectTooLargeError when larger than maxBytes. */
  getBuffer(key: string, maxBytes: number): Promise<Buffer | null>;
  /** Streams the object into `file` (written to a temp name and renamed); false when missing. With `maxBytes`, an
   *  object larger than that throws ObjectTooLargeError as soon as that is known (its announced length, or the first
   *  byte past it while streaming), never read further, and nothing is left under `file`. `opts.observe` sees the
   *  bytes as they arrive; `opts.signal` stops the request (not retried). */
  getToFile(key: string, file: string, maxBytes?: number, opts?: GetOptions): Promise<boolean>;
  /**
   * Streams bytes [start, start + length) of the object into `file` (temp name, renamed) with one ranged GET (S3
   * `Range: bytes=a-b`). `missing` when there is no such object; `short` when the object ends before the range does
   * (nothing is written), with its size when the store said it.
   */
  getRangeToFile(key: string, start: number, length: number, file: string): Promise<RangeRead>;
  /**
   * Bytes [start, start + length) of the object shown to `observe` as they arrive (never more than `length`), and
   * kept nowhere, with one ranged GET (retried whole: `observe.start()` before each attempt). The one ranged read
   * into memory too (readRange). `ok` with the object's size when the store said it; `missing` when there is no such
   * object; `short` when the object ends before the range does (nothing shown), with its size when the store said it.
   * With `opts.partial`, an object that ends inside the range shows what it has and is `ok`: `short` only when it
   * ends at or before `start`. `opts.signal` ends the request (and its retries) at once with its reason.
   */
  observeRange(key: string, start: number, length: number, observe: BodyObserver, opts?: RangeOptions): Promise<RangeObserved>;
  /** Conditional GET: `unchanged` when the object's ETag still equals `etag`. */
  getIfNoneMatch(
    key: string,
    etag: string | undefined,
    maxBytes: number,
  ): Promise<{ status: 'missing' } | { status: 'unchanged' } | { status: 'ok'; body: Buffer; etag: string }>;
  /** A HEAD; an aborted `signal` ends it as it ends a put. */
  exists(key: string, opts?: PutOptions): Promise<boolean>;
  /** Every key starting with `prefix` and sorting after `startAfter`, in key order, paginated under the hood. */
  list(prefix: string, startAfter?: string): AsyncIterable<string>;
  /** Removes the object; a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Every object starting with `prefix` (after `startAfter`), in key order, with its size and the time the store
   *  last wrote it (GC). */
  listObjects(prefix: string, startAfter?: string): AsyncIterable<ListedObject>;
  /** Removes the objects (missing ones are not an error), in as few requests as the store allows (S3
   *  DeleteObjects: up to 1000 a request). Throws naming the keys that could not be deleted. */
  deleteMany(keys: readonly string[], opts?: DeleteManyOptions): Promise<void>;
}

/** Options of a request a caller may stop (put, exists). */
export interface PutOptions {
  signal?: AbortSignal | undefined;
  /** The sha256 (64 lowercase hex) of a Buffer body, when the caller has it already (a pack is named by it): an S3
   *  store sends it as x-amz-content-sha256, so its request signer does not hash the body again, and the server
   *  refuses a body that does not match it. */
  sha256?: string | undefined;
}

export interface DeleteManyOptions {
  /** Awaited right before each request, every retry included. A TwinlayerError it throws ends the deletion with that
   *  error at once; any other is taken for the request's own failure (and retried when such would be). GC checks
   *  there that its host still owns the newest generation: a retry sent after another host took over could delete
   *  what the new primary names again (a retried request can come many seconds after the first). */
  beforeRequest?: () => Promise<void>;
}

/** Sees an object's bytes as getToFile streams them, in order, before they are written: the caller hashes and
 *  validates them on the way instead of reading the file again. */
export interface BodyObserver {
  /** Before an attempt's first byte: a retried request starts again from byte 0, what was seen before is void. */
  start(): void;
  /** The next bytes, the observer's to keep (a store never reuses them); the download waits for the promise (so the
   *  observer's pace bounds the download's). */
  chunk(bytes: Buffer): Promise<void> | undefined;
}

export interface RangeOptions {
  /** The range may run past the object's end: what the object has of it is `ok`. */
  partial?: boolean;
  /** Stops the request; an aborted request is not retried, and throws the signal's reason. */
  signal?: AbortSignal | undefined;
}

export interface GetOptions {
  observe?: BodyObserver;
  /** Stops the request and the body's stream; an aborted request is not retried. */
  signal?: AbortSignal;
}

/** Passes each chunk of `source` to `observe` (awaited) before handing it on: a pipeline stage. */
export function observed(observe: BodyObserver): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (source) {
    for await (const chunk of source) {
      await observe.chunk(chunk);
      yield chunk;
    }
  };
}

/** An object as a listing shows it. */
export interface ListedObject {
  key: string;
  size: number;
  /** Milliseconds since the epoch, the store's clock. */
  lastModified: number;
}

/** A range is at least one byte, within what a JS number counts exactly. */
export function checkRange(start: number, length: number): void {
  if (!Number.isSafeInteger(start) || start < 0) throw new TypeError(`Expected \`start\` to be a non-negative safe integer, got ${String(start)}`);
  if (!Number.isSafeInteger(length) || length < 1 || !Number.isSafeInteger(start + length)) throw new TypeError(`Expected \`length\` to be a positive safe integer, got ${String(length)}`);
}

export type RangeRead = { status: 'ok' } | { status: 'missing' } | { status: 'short'; objectSize: number | null };

export type RangeObserved = { status: 'ok'; objectSize: number | null } | { status: 'missing' } | { status: 'short'; objectSize: number | null };

export type RangeBytes = { status: 'ok'; body: Buffer; objectSize: number | null } | { status: 'missing' } | { status: 'short'; objectSize: number | null };

/**
 * Bytes [start, start + length) of the object, into memory (never more than `length`), with one ranged GET (retried
 * whole): observeRange's with an observer that keeps them. `ok` with fewer than `length` bytes when the object ends
 * inside the range, and the object's size when the store said it; `short` when the object ends at or before
 * `start`; `missing` when there is none. `signal` ends the request (and its retries) at once with its reason.
 */
export async function readRange(store: Pick<BlobStore, 'observeRange'>, key: string, start: number, length: number, signal?: AbortSignal): Promise<RangeBytes> {
  let parts: Buffer[] = [];
  const keep: BodyObserver = {
    start: () => {
      parts = [];
    },
    chunk: (bytes) => void parts.push(bytes),
  };
  const got = await store.observeRange(key, start, length, keep, { partial: true, signal });
  return got.status === 'ok' ? { status: 'ok', body: Buffer.concat(parts), objectSize: got.objectSize } : got;
}

/** Exponential backoff with full jitter: attempt n waits random(0, min(maxMs, baseMs * 2^n)). */
export interface RetryPolicy {
  /** Total tries, the first included (>= 1). */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { attempts: 6, baseMs: 100, maxMs: 5_000 };
