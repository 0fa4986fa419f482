// The store unit: bucket layout, commit records, head pointer, blob transfer with digest check.
export { asDigest, asGeneration, asSeq, isDigest, MAX_RECORD_BYTES, MAX_SPEC_BYTES, type Digest, type Generation, type Seq } from './types.js';
export { defaultRetryPolicy, readRange, type BlobStore, type BodyObserver, type GetOptions, type RangeBytes, type RangeObserved, type RangeOptions, type RangeRead, type RetryPolicy } from './blob-store.js';
export { S3BlobStore, isRetryableS3Error, type S3BlobStoreOptions } from './s3-blob-store.js';
export { DirBlobStore } from './dir-blob-store.js';
export { PackStore, type PackStoreOptions, type PackUploadStats } from './pack-store.js';
export {
  claimSchema,
  commitRecordSchema,
  divergentRecordSchema,
  headSchema,
  releaseSchema,
  type Claim,
  type CommitChunks,
  type CommitCounts,
  type CommitRecord,
  type DivergentRecord,
  type Head,
  type Release,
} from './records.js';
export { formatSeq, KeyLayout, type DivergentKeyParts } from './keys.js';
export {
  blindPutBelowBytes,
  Bucket,
  MAX_LISTED_GENERATIONS,
  MAX_LISTED_SPECS,
  MAX_LISTED_TAILS,
  MAX_LISTED_KEYS,
  MAX_KEYS_PAST_HEAD,
  MAX_UNSIGNED_GENERATIONS,
  REFUSED_GENERATION_SKIP,
  type BlobTap,
  type BoundedListing,
  type BucketOptions,
  type ClaimOutcome,
  type DivergentItem,
  type DownloadOptions,
  type GenerationFound,
  type HeadRead,
  type JournalItem,
  type ListRecordsOptions,
  type SignatureStatus,
} from './bucket.js';
export { canonicalJson, signedBytes, SIGNED_KINDS, type SignedContext, type SignedKind } from './canonical.js';
export { Signatures, signatureSchema, type ObjectPlace, type Opened, type SignaturePolicyView, type SignaturesOptions } from './signatures.js';
export {
  formatPublicKeyLine,
  keyIdOf,
  publicKeyLineRe,
  readSigningKeyFile,
  SigningKey,
  SigningKeyError,
  TrustedKey,
  writeNewSigningKey,
} from './signing-keys.js';
export type { Refusal, RefusalsView } from './refusals.js';
export {
  defaultHeadRetry,
  headRetryDelay,
  JournalWriter,
  recoverHead,
  type HeadRetryPolicy,
  type HeadStatus,
  type JournalWriterOptions,
  type PublishInput,
} from './journal.js';
export {
  BlobDigestMismatchError,
  BlobMissingError,
  BucketMissingError,
  BucketObjectInvalidError,
  InvalidKeyError,
  ObjectTooLargeError,
  StoreRequestError,
  StoreUnreachableError,
} from './errors.js';
export { defaultFirstGcDelayMs, defaultGraceMs, defaultRetentionMs, GcLoop, GcStoppedError, runGc, type GcOptions, type GcReport } from './gc.js';
export { collectGc, GcCache } from './gc-collect.js';
export { gapPassedBy, headClearsGap } from './gc-retired.js';
export { gcKinds, planGc, retainedRecords, type GcDeletion, type GcDivergent, type GcGeneration, type GcInput, type GcKind, type GcObject, type GcPlan, type GcRecord } from './gc-plan.js';
export type { DeleteManyOptions, ListedObject, PutOptions } from './blob-store.js';
export { commitChain, type ChainItem } from './commit-chain.js';
export {
  DEFAULT_IMAGE_RANGE_BYTES, DEFAULT_MAX_LAYER_BYTES, agreesWithIsize, declaredSize, ImageNoRoomError, layerByteCap, ImageObjectRefusedError, ImageObjects, MAX_IMAGE_CONFIG_BYTES,
  type FetchLayerOptions, type LayerProbe,
} from './image-objects.js';
