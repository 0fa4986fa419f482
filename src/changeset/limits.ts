// Bounds applied while reading an untrusted changeset. Every one is checked while streaming, as soon as the header
// that passes it is read, so neither memory, disk nor time grows past it (THREATS.md "Changeset content").
// The defaults are sized for what one container's writable layer holds (the services twinlayer is for keep
// configuration, leases, small databases and logs there), with room to spare; a changeset beyond them is refused
// whole and the container waits for a full checkpoint that fits.
export interface Limits {
  /** Most tar entries (PAX headers not counted). A full checkpoint carries every path of the upper dir: 250,000 is
   *  several times a large writable layer (a runtime `apt-get install` or `npm install` adds tens of thousands).
   *  Default 250,000. */
  maxEntries: number;
  /** Most uncompressed bytes of the whole tar stream (headers, bodies, padding). A writable layer that holds more
   *  than this belongs on a volume; reading it would take minutes. Default 16 GiB. */
  maxTotalBytes: number;
  /** Most uncompressed bytes per stored (gzip) byte, once past `expansionAllowanceBytes`. The pusher compresses at
   *  gzip level 1, which never exceeds about 230:1 (all zeros); deflate itself reaches 1032:1. 512 refuses a bomb
   *  at half of what it could expand to and never refuses what the pusher wrote. Default 512. */
  maxExpansionRatio: number;
  /** Longest entry path or link target, in UTF-8 bytes. Default 4096 (PATH_MAX); staging lowers it further so that
   *  the upper dir's own path plus the entry's fits PATH_MAX. */
  maxPathBytes: number;
  /** Largest PAX extended header body (path, link target, xattrs of one entry). Room for a 4 KiB path and link and
   *  three xattr values of the VFS maximum (64 KiB). Default 256 KiB. */
  maxPaxBytes: number;
  /** Most xattr bytes (names and values) of a whole changeset. Typical layers carry a capability on a few binaries
   *  and maybe an ACL or a security label per file: well under 100 bytes per entry. Default 64 MiB. */
  maxXattrBytes: number;
  /** Most memory for the index validation keeps of the paths a changeset changes or relies on (counted as the UTF-8
   *  bytes of each path plus `indexBytesPerPath`). With 250,000 entries, 64 MiB leaves each path about 140 bytes;
   *  typical paths are 30-100. The rest of validation keeps nothing per entry, so this bounds its memory.
   *  Default 64 MiB. */
  maxIndexBytes: number;
  /** Most chunks a commit's chunk list may name (chunk-list.ts), checked against the record before the list is
   *  fetched and again while it is parsed. 16 GiB (maxTotalBytes) in chunks of the 32 KiB minimum. Default 524,288. */
  maxChunks: number;
  /** Most bytes of a chunk list, stored and uncompressed (JSON, about 100 bytes a chunk). Default 64 MiB. */
  maxChunkListBytes: number;
  /** Largest chunk accepted. The chunker cuts at 512 KiB at most (chunker.ts); twice that leaves room for a later
   *  chunker without letting one chunk hold more than a bounded buffer. Default 1 MiB. */
  maxChunkBytes: number;
  /** Largest pack (chunks stored back to back, chunk-list.ts) a chunk list may place a chunk in: every offset plus
   *  stored length is held below it before anything is fetched. The pusher's packs are 16 MiB or so. Default 1 GiB. */
  maxPackBytes: number;
}

export const defaultLimits: Limits = Object.freeze({
  maxEntries: 250_000,
  maxTotalBytes: 16 * 1024 ** 3,
  maxExpansionRatio: 512,
  maxPathBytes: 4096,
  maxPaxBytes: 256 * 1024,
  maxXattrBytes: 64 * 1024 * 1024,
  maxIndexBytes: 64 * 1024 * 1024,
  maxChunks: 524_288,
  maxChunkListBytes: 64 * 1024 * 1024,
  maxChunkBytes: 1024 * 1024,
  maxPackBytes: 1024 ** 3,
});

/** Uncompressed bytes always allowed before `maxExpansionRatio` applies: a tiny blob of a few empty files expands
 *  more than its ratio suggests (the gzip and tar framing dominate). */
export const expansionAllowanceBytes = 1024 * 1024;
/** What the index charges per path beyond its bytes: a Map slot, the string's header and alignment, the table's
 *  spare capacity (measured in V8 / Node 20: 63 bytes for 9-byte paths, 125 for 95-byte paths; rounded up). */
export const indexBytesPerPath = 128;
/** Longest run of zero bytes accepted after the end-of-archive marker. Tools pad to their record size (GNU tar: 10 KiB). */
export const maxTrailingZeroBytes = 1024 * 1024;
/** Longest single path component (NAME_MAX). */
export const maxNameBytes = 255;
/** PATH_MAX including its NUL: a path handed to a system call has at most 4095 bytes. */
export const pathMaxBytes = 4096;
/** Longest xattr value the VFS accepts (XATTR_SIZE_MAX). A file system may accept less (ext4 without `ea_inode`:
 *  about 4 KiB for all of an inode's xattrs together): staging probes it before writing (see xattr-probe.ts). */
export const maxXattrValueBytes = 64 * 1024;
/** Entries whose xattrs take more than this (names, values and per-name overhead) are probed on the target file
 *  system before anything is written; smaller sets fit every Linux file system that has xattrs at all. */
export const xattrProbeFromBytes = 512;
/** mtimes staging sets exactly, in seconds: from 1901-12-13 (ext4's and XFS's earliest) to 2^34 (year 2514, beyond
 *  ext4's 2446 and XFS bigtime's 2486, so no real file's mtime is refused). Outside, utimes(2) through Node fails
 *  (EINVAL) or silently sets another time. */
export const minMtimeSec = -(2n ** 31n);
export const maxMtimeSec = 2n ** 34n;
