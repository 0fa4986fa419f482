// The S3 implementation of BlobStore: the only file that talks to the AWS SDK. Retries are ours (the SDK's are
// off) so that every request, a streamed upload included, gets the same bounded backoff with full jitter.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getEndpointFromInstructions } from '@smithy/core/endpoints';

import { TwinlayerError } from '../log/errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { BucketRequestKind, Metrics } from '../metrics/index.js';
import { checkRange, defaultRetryPolicy, observed, type BlobStore, type BodyObserver, type DeleteManyOptions, type GetOptions, type ListedObject, type PutOptions, type RangeObserved, type RangeOptions, type RangeRead, type RetryPolicy } from './blob-store.js';
import { BucketMissingError, ObjectTooLargeError, StoreRequestError, StoreUnreachableError } from './errors.js';
import { checkRetryPolicy, withRetries } from './retry.js';
import { parseListPage } from './s3-list-page.js';
import { SmallGetter } from './s3-small-get.js';
import { withAttemptTimeout } from './attempt-timeout.js';

export interface S3BlobStoreOptions {
  bucket: string;
  region: string;
  /** Custom endpoint (MinIO, s3rver); unset means AWS S3. */
  endpoint?: string | undefined;
  /** Path-style addressing (MinIO, s3rver). */
  pathStyle: boolean;
  /** Unset: the SDK's default chain (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, instance role...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Default { attempts: 6, baseMs: 100, maxMs: 5000 }. */
  retry?: RetryPolicy;
  /** A request whose socket stays idle this long (no answer, a stalled body) fails and is retried. Default 30000. */
  requestTimeoutMs?: number;
  /** Whole-attempt bound of the small requests: GETs of small objects (heads, records, specs, blobs of at most 16
   *  KiB), conditional PUTs of at most 16 KiB (claims, specs), HEADs and DELETEs; a stalled answer is retried. Plain PUTs
   *  are left to the socket timeout (put()). Default 2000. */
  smallRequestTimeoutMs?: number;
  log?: Logger;
  /** Where each request (by kind), the bytes moved and the requests that failed for good are counted. */
  metrics?: Metrics | undefined;
  /** A file at least this large goes up as a multipart upload, its parts in parallel; a smaller one as one
   *  PutObject (at most 5 GiB). Default 64 MiB. */
  multipartFromBytes?: number;
  /** Each part of a multipart upload (S3: at least 5 MiB, at most 10,000 parts, so 16 MiB parts carry up to 156 GiB).
   *  Default 16 MiB. */
  partBytes?: number;
  /** Parts uploaded at once, each held in memory while it goes. Default 4. */
  partConcurrency?: number;
}

const MIB = 1024 * 1024;
/** getToFile of at most this many bytes (a small change's blob) takes the lean GET: read whole within
 *  smallRequestTimeoutMs (2 s by default), then written. 16 KiB: 0.5 s over a 256 kbit/s link, so a slow link still
 *  gets it in time; a larger blob keeps the SDK's GET and its socket timeout. */
const SMALL_GET_TO_FILE_BYTES = 16 * 1024;
/** Keys a listing page asks for (S3's most). */
const LIST_PAGE_KEYS = 1000;
/** A page of 1000 keys of at most 1024 bytes each, with their entities and fields, stays well below this. */
const MAX_LIST_PAGE_BYTES = 8 * MIB;
/** S3's smallest part (all but the last). */
const MIN_PART_BYTES = 5 * MIB;
/** A conditional PUT (a claim, a spec) of a body up to this size is a small request, each attempt bounded by
 *  smallRequestTimeoutMs: an attempt given up on that lands later fails its own condition, and its retry tells our
 *  write from another's by the bytes stored. 16 KiB goes in 0.5 s over a 256 kbit/s uplink; a larger body keeps the
 *  socket timeout alone, which a slow link sending it does not trip. Plain PUTs are never bounded (put()). */
const SMALL_PUT_BYTES = 16 * 1024;

type Metadata = { httpStatusCode?: number };
const networkCodes = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'ERR_STREAM_PREMATURE_CLOSE']);
const throttleNames = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'RequestTimeout', 'TooManyRequestsException']);
/** The host's clock too far from the server's: the signer has learned the server's time from the answer (the SDK's
 *  signer, or s3-small-get.ts), so the next attempt is signed right. */
const clockSkewNames = new Set(['RequestTimeTooSkewed', 'RequestExpired', 'RequestInTheFuture']);

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const meta = (err as { $metadata?: Metadata }).$metadata;
  const status = meta?.httpStatusCode;
  // The SDK reports transport failures with an empty $metadata; only a real HTTP status counts.
  return typeof status === 'number' && status > 0 ? status : undefined;
}

function nameOf(err: unknown): string {
  return err instanceof Error ? err.name : '';
}

function codeOf(err: unknown): string {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

const localFsCodes = new Set(['ENOENT', 'EACCES', 'EPERM', 'ENOSPC', 'EROFS', 'EISDIR', 'ENOTDIR', 'EEXIST', 'EMFILE', 'ENFILE', 'EDQUOT', 'EXDEV']);

/** A local file problem (the upload source is gone, the download dir is full): not the store's fault. */
function isLocalFsError(err: unknown): boolean {
  return localFsCodes.has(codeOf(err));
}

/** No HTTP answer at all: the connection failed, was reset, or timed out. */
function isTransportError(err: unknown): boolean {
  if (err instanceof TwinlayerError || isLocalFsError(err)) return false;
  if (statusOf(err) !== undefined) return false;
  if (networkCodes.has(codeOf(err)) || nameOf(err) === 'TimeoutError') return true;
  // Programming errors are not the network's fault; anything else without an answer (a torn body the SDK
  // could not parse, an odd socket error) is treated as transport trouble.
  return err instanceof Error && !(err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError);
}

/** Transport errors, 5xx, 429, throttling and clock-skew answers are retried; other 4xx and our own errors are not. */
export function isRetryableS3Error(err: unknown): boolean {
  if (err instanceof TwinlayerError) return false;
  const status = statusOf(err);
  if (status === undefined) return isTransportError(err);
  return status >= 500 || status === 429 || throttleNames.has(nameOf(err)) || clockSkewNames.has(nameOf(err));
}

function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404 || nameOf(err) === 'NoSuchKey' || nameOf(err) === 'NotFound';
}

/** The condition of a conditional write did not hold (412); not an error to retry. */
function isPreconditionFailed(err: unknown): boolean {
  return statusOf(err) === 412 || nameOf(err) === 'PreconditionFailed';
}

/** AWS answers 409 ConditionalRequestConflict while another conditional write of the key is under way: retry. */
function isRetryableConditional(err: unknown): boolean {
  return isRetryableS3Error(err) || (statusOf(err) === 409 && nameOf(err) === 'ConditionalRequestConflict');
}

function isNoSuchBucket(err: unknown): boolean {
  return nameOf(err) === 'NoSuchBucket';
}

/** A short stable description of an SDK error for messages and logs. */
function describe(err: unknown): string {
  const status = statusOf(err);
  const code = codeOf(err);
  const msg = err instanceof Error ? err.message : String(err);
  return [status === undefined ? '' : `HTTP ${status}`, nameOf(err), code, msg].filter((s) => s !== '').join(' ');
}

/** A body stream that counts bytes and fails once more than `limit` pass. */
function byteLimiter(limit: number, key: string): Transform & { bytes: number } {
  let bytes = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      t.bytes = bytes;
      if (bytes > limit) cb(new ObjectTooLargeError(key, bytes, limit));
      else cb(null, chunk);
    },
  }) as Transform & { bytes: number };
  t.bytes = 0;
  return t;
}

/** Why the caller stopped a request, as an Error. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason));
}

function bodyStream(body: unknown, key: string): Readable {
  if (body instanceof Readable) return body;
  throw new StoreRequestError('the S3 client returned a body that is not a Node stream', { key });
}

export class S3BlobStore implements BlobStore {
  readonly bucket: string;
  readonly endpoint: string;
  readonly #client: S3Client;
  readonly #small: SmallGetter;
  readonly #retry: RetryPolicy;
  readonly #log: Logger;
  readonly #smallRequestTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #metrics: Metrics | undefined;
  readonly #multipartFromBytes: number;
  readonly #partBytes: number;
  readonly #partConcurrency: number;

  constructor(opts: S3BlobStoreOptions) {
    if (typeof opts.bucket !== 'string' || opts.bucket === '') throw new TypeError(`Expected \`bucket\` to be a non-empty string, got ${JSON.stringify(opts.bucket)}`);
    this.bucket = opts.bucket;
    this.endpoint = opts.endpoint ?? `https://s3.${opts.region}.amazonaws.com`;
    this.#retry = checkRetryPolicy(opts.retry ?? defaultRetryPolicy);
    this.#log = opts.log ?? silentLogger;
    this.#metrics = opts.metrics;
    const timeout = opts.requestTimeoutMs ?? 30_000;
    if (!Number.isInteger(timeout) || timeout < 1) throw new TypeError(`Expected \`requestTimeoutMs\` to be a positive integer, got ${String(timeout)}`);
    this.#requestTimeoutMs = timeout;
    // s3rver (and a struggling server) can leave a GET racing a PUT of the same key unanswered until its socket
    // times out; a head poll must not wait that long when a retry answers at once.
    this.#smallRequestTimeoutMs = opts.smallRequestTimeoutMs ?? 2_000;
    if (!Number.isInteger(this.#smallRequestTimeoutMs) || this.#smallRequestTimeoutMs < 1) {
      throw new TypeError(`Expected \`smallRequestTimeoutMs\` to be a positive integer, got ${String(this.#smallRequestTimeoutMs)}`);
    }
    const config: S3ClientConfig = {
      region: opts.region,
      forcePathStyle: opts.pathStyle,
      maxAttempts: 1,
      requestHandler: { connectionTimeout: timeout, socketTimeout: timeout },
      // Without a logger the SDK writes some warnings to the console as bare text ("An error was encountered in a
      // non-retryable streaming request.", once per failed upload), outside the structured log; each such error
      // also reaches this store, which reports it with its context.
      logger: sdkLogger(this.#log),
    };
    if (opts.endpoint !== undefined) {
      config.endpoint = opts.endpoint;
      // Servers other than AWS (s3rver, older MinIO) reject or mangle the SDK's default CRC trailers.
      config.requestChecksumCalculation = 'WHEN_REQUIRED';
      config.responseChecksumValidation = 'WHEN_REQUIRED';
    }
    if (opts.credentials !== undefined) config.credentials = { ...opts.credentials };
    this.#partBytes = opts.partBytes ?? 16 * MIB;
    this.#multipartFromBytes = opts.multipartFromBytes ?? 64 * MIB;
    this.#partConcurrency = opts.partConcurrency ?? 4;
    if (!Number.isSafeInteger(this.#partBytes) || this.#partBytes < MIN_PART_BYTES) throw new TypeError(`Expected \`partBytes\` to be an integer of at least ${MIN_PART_BYTES} (S3's smallest part), got ${String(this.#partBytes)}`);
    if (!Number.isSafeInteger(this.#multipartFromBytes) || this.#multipartFromBytes <= this.#partBytes) throw new TypeError(`Expected \`multipartFromBytes\` to be an integer above \`partBytes\` (${this.#partBytes}), got ${String(this.#multipartFromBytes)}`);
    if (!Number.isSafeInteger(this.#partConcurrency) || this.#partConcurrency < 1) throw new TypeError(`Expected \`partConcurrency\` to be a positive integer, got ${String(this.#partConcurrency)}`);
    this.#client = new S3Client(config);
    const client = this.#client;
    const bucket = this.bucket;
    this.#small = new SmallGetter({
      // Addressed as the SDK addresses a GetObject of this bucket: its endpoint rules decide path or virtual-host
      // style (an IP endpoint, a bucket name with dots), and honour AWS_ENDPOINT_URL and the region's partition.
      resolveBase: async () => (await getEndpointFromInstructions({ Bucket: bucket, Key: 'k' }, GetObjectCommand, client.config)).url,
      region: opts.region,
      // The client's own provider: the same chain, cache and refresh as every SDK request.
      credentials: () => client.config.credentials(),
      clockOffsetMs: () => client.config.systemClockOffset ?? 0,
      learnClockOffsetMs: (ms) => {
        client.config.systemClockOffset = ms;
      },
    });
  }

  /** HeadBucket with a short timeout and no retry: tells "unreachable" from "no such bucket" at start. */
  async checkReachable(timeoutMs = 3_000): Promise<void> {
    const where = { endpoint: this.endpoint, bucket: this.bucket };
    try {
      this.#count('HEAD');
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404 || isNoSuchBucket(err)) {
        throw new BucketMissingError(`bucket ${this.bucket} does not exist at ${this.endpoint}`, { ...where, hint: 'create it (minio/ has a bootstrap script) or fix the bucket setting' }, err);
      }
      if (status === 403) {
        throw new StoreRequestError(`access to bucket ${this.bucket} at ${this.endpoint} denied`, { ...where, hint: 'check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket policy' }, err);
      }
      if ((err as { name?: unknown }).name === 'CredentialsProviderError') {
        throw new StoreRequestError(`no S3 credentials found for bucket ${this.bucket} at ${this.endpoint}`, { ...where, hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance role)' }, err);
      }
      if (status === undefined) {
        throw new StoreUnreachableError(`S3 endpoint ${this.endpoint} unreachable (bucket ${this.bucket}) within ${timeoutMs} ms: ${describe(err)}`, { ...where, hint: 'check the endpoint setting and that the server is up' }, err);
      }
      // A 5xx or 429 (SlowDown, InternalError: a HEAD carries no body to name them) says nothing about the setup: the
      // server is there but not serving now. Found by the chaos soak: an agent restarted during a burst of 503s
      // refused to start (exit 2) instead of coming up from its own record.
      if (status >= 500 || status === 429) {
        throw new StoreUnreachableError(`S3 endpoint ${this.endpoint} unavailable (bucket ${this.bucket}): HTTP ${status} ${describe(err)}`, { ...where, hint: 'the server answers but does not serve now; it should pass' }, err);
      }
      throw new StoreRequestError(`checking bucket ${this.bucket} at ${this.endpoint} failed: ${describe(err)}`, where, err);
    }
  }

  destroy(): void {
    this.#client.destroy();
    this.#small.destroy();
  }

  /** One logical request: retried per the policy; the final error names endpoint, bucket and key. */
  async #request<T>(op: string, key: string, attempt: () => Promise<T>, isRetryable: (err: unknown) => boolean = isRetryableS3Error, signal?: AbortSignal): Promise<T> {
    let tries = 0;
    try {
      return await withRetries(
        this.#retry,
        () => {
          tries++;
          return attempt();
        },
        isRetryable,
        (err, n, delayMs) => this.#log.debug('s3 request retried', { op, key, attempt: n, delayMs, error: describe(err) }),
        signal,
      );
    } catch (err) {
      // Stopped by its caller: no failure of the bucket's.
      if (signal?.aborted === true) throw abortReason(signal);
      const final = this.#finalError(op, key, err, tries);
      // Our own refusals (an object too large) and local file errors are not the bucket's failures.
      if (final !== err) this.#metrics?.failure('bucket');
      throw final;
    }
  }

  /** Runs one attempt of a small request within smallRequestTimeoutMs, the caller's `signal` (if any) stopping it
   *  too: a stalled answer is retried after that, not after the SDK's socket inactivity timeout. */
  #bounded<T>(send: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withAttemptTimeout(this.#smallRequestTimeoutMs, (bounded) => send(signal === undefined ? bounded : AbortSignal.any([signal, bounded])));
  }

  /** Every attempt is a request the bucket answers (and bills), a retried one included. */
  #count(kind: BucketRequestKind): void {
    this.#metrics?.bucketRequest(kind);
  }

  #finalError(op: string, key: string, err: unknown, tries: number): unknown {
    if (err instanceof TwinlayerError || isLocalFsError(err)) return err;
    const ctx = { endpoint: this.endpoint, bucket: this.bucket, key, op, attempts: tries };
    if (isNoSuchBucket(err)) return new BucketMissingError(`bucket ${this.bucket} does not exist at ${this.endpoint}`, ctx, err);
    if (statusOf(err) === undefined) return new StoreUnreachableError(`S3 ${op} failed after ${tries} attempt(s), endpoint ${this.endpoint} unreachable: ${describe(err)}`, ctx, err);
    return new StoreRequestError(`S3 ${op} failed after ${tries} attempt(s): ${describe(err)}`, ctx, err);
  }

  async put(key: string, body: Buffer | { file: string }, opts: PutOptions = {}): Promise<void> {
    const { signal } = opts;
    const abortable = signal === undefined ? {} : { abortSignal: signal };
    // A caller's bad digest is said as such, not as an unreachable endpoint (#request's errors are the bucket's).
    if (opts.sha256 !== undefined && !SHA256_HEX.test(opts.sha256)) throw new TypeError(`put ${key}: Expected \`sha256\` to be 64 lowercase hex, got ${JSON.stringify(opts.sha256.slice(0, 80))}`);
    await this.#request('put', key, async () => {
      signal?.throwIfAborted();
      if (Buffer.isBuffer(body)) {
        this.#count('PUT');
        const put = new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length });
        if (opts.sha256 !== undefined) withContentSha256(put, opts.sha256);
        // Not bounded by smallRequestTimeoutMs, unlike a conditional PUT: an attempt given up on may still be carried
        // out later, and an unconditional one would then land over whatever was written meanwhile (a journal record
        // at a seq read back as free and reused, an older head over a newer one). Left to the socket timeout, as before.
        await this.#client.send(put, abortable);
        this.#metrics?.bucketBytes('up', body.length);
        return;
      }
      // A fresh stream per attempt: a retried upload starts from the first byte.
      const size = (await stat(body.file)).size;
      if (size >= this.#multipartFromBytes) return this.#putMultipart(key, body.file, size, signal);
      const stream = createReadStream(body.file);
      try {
        this.#count('PUT');
        await this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: stream, ContentLength: size }), abortable);
        this.#metrics?.bucketBytes('up', size);
      } finally {
        stream.destroy();
      }
    }, (err) => signal?.aborted !== true && isRetryableS3Error(err), signal);
  }

  /**
   * One attempt of a large file's upload as a multipart upload (@aws-sdk/lib-storage): `partConcurrency` parts of
   * `partBytes` in flight, read from the file as they go, so memory is bounded whatever the size. A failed attempt
   * aborts its upload (no parts left to bill) and fails with the part's error, which decides the retry; the retry
   * starts a new upload from the first byte. The object appears whole at CompleteMultipartUpload or not at all.
   */
  async #putMultipart(key: string, file: string, size: number, signal?: AbortSignal): Promise<void> {
    const stream = createReadStream(file, { highWaterMark: MIB });
    // lib-storage goes on sending the other parts after one failed, to the end of the file, before it throws: the
    // first failure aborts the whole attempt at once instead (its uploads share this signal). Every request it sends
    // is counted here, a failed one too.
    const stop = new AbortController();
    // The caller's abort ends the upload like a failed part (and aborts it in the bucket).
    const onAbort = (): void => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let firstFailure: { err: unknown } | null = null;
    const inFlight = new Set<Promise<unknown>>();
    const send = (command: Parameters<S3Client['send']>[0], options?: { abortSignal?: AbortSignal }): Promise<unknown> => {
      this.#count('PUT');
      // The parts in flight end with the first failure too (lib-storage passes them no signal of its own).
      const sent = this.#client.send(command, { ...options, abortSignal: options?.abortSignal ?? stop.signal }).catch((err: unknown) => {
        firstFailure ??= { err };
        stop.abort();
        throw err;
      });
      const settled = sent.then(() => undefined, () => undefined).finally(() => inFlight.delete(settled));
      inFlight.add(settled);
      return sent;
    };
    const client = new Proxy(this.#client, { get: (target, prop, receiver) => (prop === 'send' ? send : Reflect.get(target, prop, receiver) as unknown) });
    const upload = new Upload({
      client,
      params: { Bucket: this.bucket, Key: key, Body: stream, ContentLength: size },
      partSize: this.#partBytes,
      queueSize: this.#partConcurrency,
      // Aborted below instead: lib-storage's own abort throws its failure in place of the part's error.
      leavePartsOnError: true,
      abortController: stop,
    });
    try {
      await upload.done();
      this.#metrics?.bucketBytes('up', size);
    } catch (err) {
      // lib-storage gives up at the abort, before its other requests end: a part still going could land after the
      // abort and be kept (S3 says a part in progress may succeed). Each ends soon: its signal is aborted.
      await Promise.allSettled([...inFlight]);
      if (upload.uploadId !== undefined) await this.#abortUpload(key, upload.uploadId);
      // The request's own error decides the retry, not lib-storage's "Upload aborted." that ended the others.
      if (signal?.aborted === true) throw abortReason(signal);
      throw firstFailure === null ? err : (firstFailure as { err: unknown }).err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.destroy();
    }
  }

  /** Best effort: an upload left behind costs storage until the bucket's lifecycle rule for incomplete multipart
   *  uploads removes it, and is logged. */
  async #abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      this.#count('DELETE');
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), { abortSignal: AbortSignal.timeout(this.#smallRequestTimeoutMs) });
    } catch (err) {
      this.#log.warn('a failed multipart upload could not be aborted; its parts stay until the bucket removes incomplete uploads', { key, uploadId, error: describe(err) });
    }
  }

  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    return this.#conditionalPut('put-if-absent', key, body, { IfNoneMatch: '*' });
  }

  async putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean> {
    if (typeof etag !== 'string' || etag === '') throw new TypeError(`Expected \`etag\` to be a non-empty string, got ${JSON.stringify(etag)}`);
    return this.#conditionalPut('put-if-match', key, body, { IfMatch: etag });
  }

  /**
   * A conditional PUT: 412 (and 404, AWS's answer to If-Match on a missing key) means "condition failed" and is
   * not retried. Once an attempt has failed without a clear answer, its write may have happened; if a retry then
   * fails the condition, the stored bytes tell whether that write was ours. An attempt cut short by
   * smallRequestTimeoutMs is such an attempt: the server may have carried it out and only its answer stalled. (One
   * carried out later still, after the retry, fails its own condition: the retry's write or another's changed the
   * object, so it replaces nothing.)
   */
  async #conditionalPut(op: string, key: string, body: Buffer, condition: { IfNoneMatch: '*' } | { IfMatch: string }): Promise<boolean> {
    let mayHaveWritten = false;
    return this.#request(
      op,
      key,
      async () => {
        try {
          this.#count('PUT');
          const put = new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ...condition });
          if (body.length <= SMALL_PUT_BYTES) await this.#bounded((s) => this.#client.send(put, { abortSignal: s }));
          else await this.#client.send(put);
          this.#metrics?.bucketBytes('up', body.length);
          return true;
        } catch (err) {
          const failed = isPreconditionFailed(err) || ('IfMatch' in condition && isNotFound(err) && !isNoSuchBucket(err));
          if (!failed) {
            mayHaveWritten = true;
            throw err;
          }
          if (!mayHaveWritten) return false;
          this.#log.debug('conditional put failed its condition after an unanswered attempt; comparing the stored object', { op, key });
          return this.#holds(key, body);
        }
      },
      isRetryableConditional,
    );
  }

  /** Whether the object under `key` is exactly `body` (a larger object is not). */
  async #holds(key: string, body: Buffer): Promise<boolean> {
    try {
      const current = await this.getIfNoneMatch(key, undefined, body.length);
      return current.status === 'ok' && current.body.equals(body);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) return false;
      throw err;
    }
  }

  async getBuffer(key: string, maxBytes: number): Promise<Buffer | null> {
    const r = await this.getIfNoneMatch(key, undefined, maxBytes);
    return r.status === 'ok' ? r.body : null;
  }

  async getToFile(key: string, file: string, maxBytes = Number.MAX_SAFE_INTEGER, opts: GetOptions = {}): Promise<boolean> {
    if (maxBytes <= SMALL_GET_TO_FILE_BYTES) return this.#smallGetToFile(key, file, maxBytes, opts);
    const { signal } = opts;
    return this.#request('get', key, async () => {
      signal?.throwIfAborted();
      let out;
      try {
        this.#count('GET');
        out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), signal === undefined ? {} : { abortSignal: signal });
      } catch (err) {
        if (isNotFound(err) && !isNoSuchBucket(err)) return false;
        throw err;
      }
      const stream = bodyStream(out.Body, key);
      if (out.ContentLength !== undefined && out.ContentLength > maxBytes) {
        stream.destroy();
        throw new ObjectTooLargeError(key, out.ContentLength, maxBytes);
      }
      // Cut off at the first byte past maxBytes, whatever the server announced.
      await this.#bodyToFile(stream, key, file, maxBytes, out.ContentLength, opts);
      return true;
    }, (err) => signal?.aborted !== true && isRetryableS3Error(err));
  }

  /** getToFile of an object known to be small (a 4 KiB change's blob): one lean GET (as getIfNoneMatch), the body
   *  read whole and bounded by smallRequestTimeoutMs per attempt, then shown to the observer and written beside
   *  `file` and renamed, as #bodyToFile does. The SDK's GetObject spent some 3 ms of CPU on its middleware before the
   *  first byte of a blob on the way of every small change to the twin. */
  async #smallGetToFile(key: string, file: string, maxBytes: number, opts: GetOptions): Promise<boolean> {
    const { signal } = opts;
    return this.#request('get', key, async () => {
      signal?.throwIfAborted();
      this.#count('GET');
      const got = await withAttemptTimeout(this.#smallRequestTimeoutMs, (timeout) => this.#small.get(key, undefined, maxBytes, signal === undefined ? timeout : AbortSignal.any([timeout, signal]), (size) => {
        throw new ObjectTooLargeError(key, size, maxBytes);
      }));
      if (got.status === 'missing') return false;
      if (got.status !== 'ok') throw new StoreRequestError('the S3 server answered 304 to a GET without If-None-Match', { key, endpoint: this.endpoint });
      const { body, contentLength } = got;
      if (contentLength !== undefined && body.length !== contentLength) {
        throw Object.assign(new Error(`short body: ${body.length} of ${contentLength} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      }
      await this.#bodyToFile(Readable.from([body]), key, file, maxBytes, body.length, opts);
      return true;
    }, (err) => signal?.aborted !== true && isRetryableS3Error(err));
  }

  async getRangeToFile(key: string, start: number, length: number, file: string): Promise<RangeRead> {
    const got = await this.#range(key, start, length, {}, (stream) => this.#bodyToFile(stream, key, file, length, length));
    return got.status === 'ok' ? { status: 'ok' } : got;
  }

  async observeRange(key: string, start: number, length: number, observe: BodyObserver, opts: RangeOptions = {}): Promise<RangeObserved> {
    return this.#range(key, start, length, opts, async (stream, expected) => {
      const counter = byteLimiter(expected, key);
      observe.start();
      await pipeline(stream, counter, observed(observe), async (source: AsyncIterable<Buffer>) => {
        for await (const _ of source) {
          // observed: nothing kept
        }
      });
      if (counter.bytes !== expected) throw Object.assign(new Error(`short body: ${counter.bytes} of ${expected} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      this.#metrics?.bucketBytes('down', counter.bytes);
    });
  }

  /** One ranged GET per attempt; `body` takes the body of a complete answer, `expected` bytes (the range's, or with
   *  `opts.partial` what the object has of it). An aborted request is not the bucket's failure: never retried, its
   *  reason thrown as it is. */
  async #range(key: string, start: number, length: number, opts: RangeOptions, body: (stream: Readable, expected: number) => Promise<void>): Promise<RangeObserved> {
    checkRange(start, length);
    const { signal } = opts;
    const retryable = (err: unknown): boolean => signal?.aborted !== true && isRetryableS3Error(err);
    try {
      return await this.#request('get-range', key, async (): Promise<RangeObserved> => {
        signal?.throwIfAborted();
        const got = await this.#openRange(key, start, length, signal);
        if (got.status !== 'open') return got;
        if (opts.partial !== true && got.end !== start + length - 1) {
          got.stream.destroy();
          return { status: 'short', objectSize: got.objectSize };
        }
        try {
          await body(got.stream, got.end - start + 1);
        } finally {
          got.stream.destroy();
        }
        return { status: 'ok', objectSize: got.objectSize };
      }, retryable, signal);
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason;
      throw err;
    }
  }

  /** One ranged GET: its body from `start` to `end` (the last byte the server sends, at most the range's), or why
   *  there is none. */
  async #openRange(key: string, start: number, length: number, signal?: AbortSignal): Promise<
    { status: 'open'; stream: Readable; end: number; objectSize: number | null } | { status: 'missing' } | { status: 'short'; objectSize: null }
  > {
    let out;
    try {
      this.#count('GET');
      out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${start + length - 1}` }), signal === undefined ? {} : { abortSignal: signal });
    } catch (err) {
      if (isNotFound(err) && !isNoSuchBucket(err)) return { status: 'missing' };
      // 416: the range starts at or past the object's end.
      if (statusOf(err) === 416 || nameOf(err) === 'InvalidRange') return { status: 'short', objectSize: null };
      throw err;
    }
    const stream = bodyStream(out.Body, key);
    // A server that ignores Range answers 200 with the whole object; one whose object ends early answers less.
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(out.ContentRange ?? '');
    const end = Number(range?.[2]);
    const objectSize = range?.[3] === undefined || range[3] === '*' ? null : Number(range[3]);
    // Each bound checked: an end before the start or past the object it names would be read as a negative or a
    // made-up length, and an answer shorter than the range asked must end where the object it names ends.
    const short = end < start + length - 1;
    const bad = range === null || !Number.isSafeInteger(end) || (objectSize !== null && !Number.isSafeInteger(objectSize))
      || Number(range[1]) !== start || end > start + length - 1 || end < start
      || (objectSize !== null && (end >= objectSize || (short && end !== objectSize - 1)));
    if (bad) {
      stream.destroy();
      throw new StoreRequestError(`the S3 server did not answer the range ${start}+${length} (Content-Range ${JSON.stringify(out.ContentRange ?? null)})`, { key, endpoint: this.endpoint });
    }
    return { status: 'open', stream, end, objectSize };
  }

  /** Streams a GET's body into `file`, written beside it and renamed (a half download never appears under `file`):
   *  cut off past `limit` bytes, and a body other than `expected` bytes (when known) is a premature close. */
  async #bodyToFile(stream: Readable, key: string, file: string, limit: number, expected: number | undefined, opts: GetOptions = {}): Promise<void> {
    const tmp = `${file}.part-${randomBytes(6).toString('hex')}`;
    try {
      const counter = byteLimiter(limit, key);
      const signal = opts.signal === undefined ? {} : { signal: opts.signal };
      if (opts.observe === undefined) {
        await pipeline(stream, counter, createWriteStream(tmp), signal);
      } else {
        opts.observe.start();
        await pipeline(stream, counter, observed(opts.observe), createWriteStream(tmp), signal);
      }
      if (expected !== undefined && counter.bytes !== expected) {
        throw Object.assign(new Error(`short body: ${counter.bytes} of ${expected} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      }
      await rename(tmp, file);
      this.#metrics?.bucketBytes('down', counter.bytes);
    } catch (err) {
      stream.destroy();
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Small objects (heads, records, specs): each attempt, body included, is bounded by smallRequestTimeoutMs. One
   *  lean signed GET (s3-small-get.ts) instead of the SDK's GetObject: the standby sends one every poll. */
  async getIfNoneMatch(
    key: string,
    etag: string | undefined,
    maxBytes: number,
  ): Promise<{ status: 'missing' } | { status: 'unchanged' } | { status: 'ok'; body: Buffer; etag: string }> {
    return this.#request('get', key, async () => {
      this.#count('GET');
      const got = await withAttemptTimeout(this.#smallRequestTimeoutMs, (signal) => this.#small.get(key, etag, maxBytes, signal, (size) => {
        throw new ObjectTooLargeError(key, size, maxBytes);
      }));
      if (got.status !== 'ok') return got;
      const { body, contentLength } = got;
      if (contentLength !== undefined && body.length !== contentLength) {
        throw Object.assign(new Error(`short body: ${body.length} of ${contentLength} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      }
      if (got.etag === undefined) throw new StoreRequestError('the S3 server answered without an ETag', { key, endpoint: this.endpoint });
      this.#metrics?.bucketBytes('down', body.length);
      return { status: 'ok' as const, body, etag: got.etag };
    });
  }

  async exists(key: string, opts: PutOptions = {}): Promise<boolean> {
    const { signal } = opts;
    return this.#request('head', key, async () => {
      signal?.throwIfAborted();
      try {
        this.#count('HEAD');
        // No body either way: a small request whatever the object's size.
        await this.#bounded((s) => this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: s }), signal);
        return true;
      } catch (err) {
        if (isNotFound(err) && !isNoSuchBucket(err)) return false;
        throw err;
      }
    }, (err) => signal?.aborted !== true && isRetryableS3Error(err), signal);
  }

  /**
   * ListObjects (v1) paginated by Marker = the last key of the previous page. v2 continuation tokens would do the
   * same on AWS and MinIO, but s3rver encrypts them with DES, which OpenSSL 3 (Node 18+) refuses: it answers 500.
   */
  async *list(prefix: string, startAfter?: string): AsyncIterable<string> {
    for await (const o of this.listObjects(prefix, startAfter)) yield o.key;
  }

  async delete(key: string): Promise<void> {
    await this.#request('delete', key, async () => {
      this.#count('DELETE');
      // A small request: a stalled one is retried after smallRequestTimeoutMs, not after the SDK's 30 s of socket
      // inactivity (a primary restarted in a bucket outage waited 30 s for one DELETE of its release marker).
      await this.#bounded((signal) => this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal }));
    });
  }

  /** The pages of list(), with each object's size and LastModified: lean signed ListObjects pages (s3-small-get.ts),
   *  each read by s3-list-page.ts, which refuses a page that is not what was asked for. */
  async *listObjects(prefix: string, startAfter?: string): AsyncIterable<ListedObject> {
    let marker = startAfter;
    const where = { endpoint: this.endpoint, bucket: this.bucket };
    // Bounded by the bucket's size: every page moves the marker strictly forward (s3-list-page.ts checks) or ends it.
    for (;;) {
      const page = await this.#request('list', prefix, async () => {
        this.#count('LIST');
        // A whole page within the request timeout (the SDK bounded each socket read; 1000 keys are some hundreds of KB).
        const xml = await withAttemptTimeout(this.#requestTimeoutMs, (signal) => this.#small.listPage(prefix, marker, LIST_PAGE_KEYS, MAX_LIST_PAGE_BYTES, signal, (size) => {
          throw new ObjectTooLargeError(prefix, size, MAX_LIST_PAGE_BYTES);
        }));
        return parseListPage(xml.toString('utf8'), prefix, marker, Date.now(), where);
      });
      for (const o of page.objects) yield o;
      const last = page.objects[page.objects.length - 1];
      if (!page.isTruncated || last === undefined) return;
      marker = last.key;
    }
  }

  /** DeleteObjects, 1000 keys a request (the S3 limit), quiet mode: the answer lists only the keys that failed. */
  async deleteMany(keys: readonly string[], opts: DeleteManyOptions = {}): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const failed = await this.#request('delete-many', batch[0] ?? '', async () => {
        await opts.beforeRequest?.();
        this.#count('DELETE');
        const out = await this.#client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
        return out.Errors ?? [];
      });
      if (failed.length > 0) {
        const first = failed[0];
        throw new StoreRequestError(`deleting ${failed.length} of ${batch.length} objects from bucket ${this.bucket} failed, first ${JSON.stringify(first?.Key)}: ${first?.Code ?? '?'} ${first?.Message ?? ''}`, {
          bucket: this.bucket,
          key: first?.Key ?? '',
          keys: failed.slice(0, 5).map((e) => e.Key ?? ''),
        });
      }
    }
  }
}

/** The AWS SDK's warnings and errors as debug lines of the store's structured log. Its info, debug and trace calls
 *  are dropped: info carries every command's input and output (bodies included) on every request. */
function sdkLogger(log: Logger): NonNullable<S3ClientConfig['logger']> {
  const line = (level: string) => (...content: unknown[]): void => log.debug('aws sdk', { sdkLevel: level, content: content.map((c) => (typeof c === 'string' ? c : describeSdkContent(c))) });
  const drop = (): void => undefined;
  return { trace: drop, debug: drop, info: drop, warn: line('warn'), error: line('error') };
}

function describeSdkContent(c: unknown): string {
  if (c instanceof Error) return `${c.name}: ${c.message}`;
  try {
    return JSON.stringify(c)?.slice(0, 500) ?? String(c);
  } catch {
    return String(c);
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Sets x-amz-content-sha256 on the request before it is signed: SigV4's signer takes a payload hash it finds there
 *  instead of hashing the body itself (@smithy/signature-v4 getPayloadHash), one pass over a pack's bytes fewer. */
function withContentSha256(command: PutObjectCommand, sha256: string): void {
  command.middlewareStack.add((next) => async (args) => {
    // The build step's request is the SDK's HttpRequest (headers a plain record); typed unknown at this step.
    const request = args.request as { headers?: Record<string, string> };
    if (request.headers !== undefined) request.headers['x-amz-content-sha256'] = sha256;
    return next(args);
  }, { step: 'build', name: 'twinlayerContentSha256' });
}
