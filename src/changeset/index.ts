// The changeset unit: reading an upper dir into an OCI-layer tar (pusher) and staging one into an upper dir
// (puller). See DESIGN.md "Changeset format" and THREATS.md "Changeset content".
export type { Limits } from './limits.js';
export { defaultLimits } from './limits.js';
export type { ChangesetKind, ChangesetCounts, BuiltChangeset, BuiltChunks } from './built-changeset.js';
export type { ChunkingOptions, ChunkSink } from './chunked-copy.js';
export type { ChunkList, ChunkListDeclared, ChunkedFile, ChunkPlace, ChunkRef, ListedFile, PackedChunk } from './chunk-list.js';
export { chunkListProblem, encodeChunkList, maxStoredChunkBytes, parseChunkList, placeChunks, summarize } from './chunk-list.js';
export { avgChunkBytes, Chunker, maxChunkBytes, minChunkBytes, type CutChunk } from './chunker.js';
export { UpperTracker } from './tracker.js';
export type { TrackedVolume } from './tracker.js';
export { treeOf, volumeKeyProblem, volumeTarPath, volumesDir } from './volume-paths.js';
export type { SerializedIndex } from './shipped-index.js';
export type { StageTarget, StageResult, StageOptions } from './stage.js';
export { stageChangeset } from './stage.js';
export type { DeclaredChangeset } from './declared.js';
export { bytesNeeded, declaredProblem, roomProblem } from './declared.js';
export { ChangesetNoRoomError, ChangesetRejectedError } from './errors.js';
export { relPathIsExcluded } from './paths.js';
export type { StageIntent } from './undo-log.js';
export type { RecoveryOutcome } from './staging-txn.js';
export { abandonStaging, recoverStaging, stagingLeftBehind } from './recover.js';
export { StagePendingError, StageUndoError } from './errors.js';
export { ChunkIndex, chunkIndexFile } from './chunk-index.js';
export type { StageChunks } from './stage.js';
export { coalesce, type ChunkLocation, type FetchRange, type PackEntry, type PackRange, type SupplyStats } from './chunk-supply.js';
export { volumesNamed } from './volumes-named.js';
export { writeOciLayer } from './oci-layer.js';
export type { OciLayer } from './oci-layer.js';
