// Bounds applied while reading an untrusted changeset; every one is checked while streaming, before memory or disk grows.
export interface Limits {
  /** Most tar entries (PAX headers not counted). Default 1,000,000. */
  maxEntries: number;
  /** Most uncompressed bytes of the whole tar stream (headers, bodies, padding). Stops gzip bombs. Default 64 GiB. */
  maxTotalBytes: number;
  /** Longest entry path or link target, in UTF-8 bytes. Default 4096 (PATH_MAX). */
  maxPathBytes: number;
  /** Largest PAX extended header body. Default 1 MiB. */
  maxPaxBytes: number;
}

export const defaultLimits: Limits = Object.freeze({
  maxEntries: 1_000_000,
  maxTotalBytes: 64 * 1024 ** 3,
  maxPathBytes: 4096,
  maxPaxBytes: 1024 * 1024,
});

/** Longest single path component (NAME_MAX). */
export const maxNameBytes = 255;
/** Longest xattr value Linux accepts. */
export const maxXattrValueBytes = 64 * 1024;
