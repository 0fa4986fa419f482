// What a build hands the pusher: the changeset file, its digest and counts, and the paths left for the next one.
import type { ChunkList } from './chunk-list.js';

export type ChangesetKind = 'delta' | 'full';
export interface ChangesetCounts { files: number; deletions: number; bytes: number }

/** The chunks of the files a changeset ships in chunks (chunk-list.ts). */
export interface BuiltChunks {
  list: ChunkList;
  /** The stored list (gzip of JSON), written inside workDir; its sha256 and size. */
  file: string;
  digest: string;
  size: number;
  /** Chunks to upload unless the bucket holds them: digest -> spool file (inside spoolDir). Chunks of the list not
   *  named here were known to be in the bucket when the changeset was built. */
  spool: ReadonlyMap<string, string>;
  /** Removed, with the list file, once the commit is published or abandoned. */
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
