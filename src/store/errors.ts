// Errors of the store unit, each with a stable code and the key/endpoint an operator needs.
import { TwinlayerError, type ErrorContext } from '../log/errors.js';

/** The S3 endpoint did not answer (refused, reset, timed out) within the retry budget. */
export class StoreUnreachableError extends TwinlayerError {
  constructor(message: string, context: ErrorContext & { endpoint: string; bucket: string }, cause?: unknown) {
    super('STORE_UNREACHABLE', message, context, { cause });
  }
}

/** The endpoint answers but the bucket does not exist. */
export class BucketMissingError extends TwinlayerError {
  constructor(message: string, context: ErrorContext & { endpoint: string; bucket: string }, cause?: unknown) {
    super('BUCKET_MISSING', message, context, { cause });
  }
}

/** A request failed with an answer that retrying will not change (403, 400, ...) or after all retries. */
export class StoreRequestError extends TwinlayerError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('STORE_REQUEST_FAILED', message, context, { cause });
  }
}

/** An object is larger than the caller allowed to read into memory. */
export class ObjectTooLargeError extends TwinlayerError {
  constructor(key: string, size: number, maxBytes: number) {
    super('OBJECT_TOO_LARGE', `object is ${size} bytes or more, more than the ${maxBytes} allowed`, { key, size, maxBytes });
  }
}

/** A key a BlobStore cannot represent (DirBlobStore: empty segments, `.`/`..`, NUL). */
export class InvalidKeyError extends TwinlayerError {
  constructor(key: string, reason: string) {
    super('KEY_INVALID', `invalid object key: ${reason}`, { key: JSON.stringify(key) });
  }
}

/** A downloaded blob's size or sha256 does not match its name, after every retry. */
export class BlobDigestMismatchError extends TwinlayerError {
  constructor(key: string, expected: { digest: string; size: number }, got: { digest: string; size: number }, attempts: number) {
    super('BLOB_DIGEST_MISMATCH', `blob content does not match its digest after ${attempts} attempt(s): expected ${expected.size} bytes sha256 ${expected.digest}, got ${got.size} bytes sha256 ${got.digest}`, {
      key,
      hint: 'the object under this key is corrupt or was replaced; it is never staged',
    });
  }
}

/** A commit record names a blob that is not in the bucket. */
export class BlobMissingError extends TwinlayerError {
  constructor(key: string) {
    super('BLOB_MISSING', 'blob not found in the bucket', { key });
  }
}

const invalidCodes = {
  head: 'HEAD_INVALID',
  record: 'RECORD_INVALID',
  spec: 'SPEC_INVALID',
  claim: 'CLAIM_INVALID',
  divergent: 'DIVERGENT_INVALID',
  release: 'RELEASE_INVALID',
} as const;

/** A head, record, spec, claim or divergent-tail record refused: not signed by a trusted key for its key and group,
 *  not parsing, or disagreeing with its key (read); or not valid (write). */
export class BucketObjectInvalidError extends TwinlayerError {
  constructor(what: keyof typeof invalidCodes, key: string, reason: string) {
    super(invalidCodes[what], `${what} refused: ${reason}`, { key });
  }
}
