// What a build hands the pusher: the changeset file, its digest and counts, and the paths left for the next one.
import type { ChunkedFile } from './chunk-list.js';
import type { ChunkSink } from './chunked-copy.js';

export type ChangesetKind = 'delta' | 'full';
export interface ChangesetCounts { files: number; deletions: number; bytes: number }

/** The chunks of the files a changeset ships in chunks. The chunk list (chunk-list.ts) is made from `files` once
 *  the sink has finished: then every chunk has a place in a pack. */
export interface BuiltChunks {
  /** In tar order. */
  files: ChunkedFile[];
  /** Where the build's new chunks went (finish() before the publish, or abandon()). */
  sink: ChunkSink;
  /** Removed once the commit is published or abandoned; the pusher writes the chunk list in it. */
  spoolDir: string;
}

export interface BuiltChangeset {
  kind: ChangesetKind;
  /** The gzip tar, written inside workDir; the caller deletes it after upload. */
  file: string;
  /** 64 lowercase hex, sha256 of the file's bytes. */
  digest: string;
  size: number;
  counts: ChangesetCounts;
  /** Relative paths left out because they changed while being read; they stay dirty in the tracker. */
  torn: string[];
  /** Present when files were shipped in chunks. */
  chunks?: BuiltChunks;
}
