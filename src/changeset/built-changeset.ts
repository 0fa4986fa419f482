// What a build hands the pusher: the changeset file, its digest and counts, and the paths left for the next one.
export type ChangesetKind = 'delta' | 'full';
export interface ChangesetCounts { files: number; deletions: number; bytes: number }

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
}
