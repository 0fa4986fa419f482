// Content-defined chunking: FastCDC (Xia et al., "The Design of Fast Content-Defined Chunking for Data
// Deduplication Based Storage Systems", IEEE TPDS 2020) with normalized chunking (level 2) and cut-point skipping.
// Written here rather than taken from npm: the one candidate, @dstanesc/wasm-chunking-fastcdc-node, is a single 2024
// release of a WASM binding whose API takes the whole input as one buffer (a 206 MB file in memory), and `fastcdc`
// is not on npm. Boundaries must never change across hosts or versions (a chunk's key is its digest, and a
// standby reuses chunks it holds), so everything that decides them is fixed here: the sizes, the masks, and the
// gear table below; test/unit/changeset/chunker.test.ts pins them with fixed vectors.
//
// Differences from the paper, both deliberate: the fingerprint is 32 bits (JavaScript has no fast 64-bit integer),
// so the masks take the high bits of the word, where each bit depends on the most bytes (13 to 32); and it is fed
// byte by byte (no two-byte unrolling), which gives the same cut points as a whole-buffer pass.
import { createHash } from 'node:crypto';

/** Chunk sizes, in bytes. The average is chosen for the targets: an append re-ships one tail chunk (about
 *  the average) and a 4 KiB edit one or two chunks, while a 206 MB file's chunk list stays near 1,600 entries. */
export const minChunkBytes = 32 * 1024;
export const avgChunkBytes = 128 * 1024;
export const maxChunkBytes = 512 * 1024;

/** log2(avg) + 2 and log2(avg) - 2 bits (normalization level 2), in the high bits of the 32-bit fingerprint. */
const maskS = highBits(19);
const maskL = highBits(15);

function highBits(n: number): number {
  return (0xffffffff << (32 - n)) | 0;
}

/** gear[i] = the first 4 bytes (big-endian) of sha256("twinlayer fastcdc gear " + i); fixed, never regenerated. */
export const gear: Uint32Array = Uint32Array.from([
  0x553d8fb5, 0xb878ff88, 0x95f95ac0, 0x1850ac69, 0x7081f905, 0x3ea57882, 0xbe5d8ab9, 0x581523a5,
  0x5c509e50, 0x30431e3a, 0xb4b7e445, 0x25079484, 0x927ec78d, 0x1cd00d73, 0x327b975c, 0x4ced72b6,
  0x2a04d628, 0x0bae2e57, 0x0bc68720, 0xab1eace6, 0xd1979852, 0x750f8467, 0x71a2fe7d, 0x2e100dcc,
  0x5433310f, 0x5b44e8e7, 0x6c0b67d7, 0x3273f68b, 0x1c91f182, 0x64a7256e, 0xa5a958b0, 0x796a6bb8,
  0x53b8bd1f, 0x0db6cf5d, 0x2be99bed, 0xe6a1a65a, 0x7e1d2a01, 0x70aaa779, 0xbef4c789, 0xcee8275f,
  0x12550f2b, 0x66a8931a, 0x4b12bbd1, 0xcd8c71bf, 0xa7ecb7af, 0xea64e921, 0xa8f45181, 0x3ed6f184,
  0x23023678, 0x73a955e0, 0x2e89056b, 0x0bf8fb7e, 0xcde13049, 0x30e5193c, 0x7abf8c9d, 0xce6bd6d5,
  0xb81c63d0, 0x877440c1, 0x80e255f6, 0xf767e464, 0xe9c58ee4, 0x8dcc3ded, 0x405b5f09, 0xa0c1138b,
  0x0687cad8, 0xe1cf6702, 0xd96a3f00, 0x36671c4a, 0x32ec1c57, 0x000e8d9d, 0x1bf2dad7, 0x54cb9e36,
  0xfd98d7cc, 0x06de2fb9, 0x3f21ebc4, 0xe932b11f, 0x4fde2509, 0x627f44e0, 0x2507bb08, 0xba37e6bc,
  0xb269dff2, 0x15376db0, 0x2532c974, 0x595a6928, 0xd77cc9bb, 0x14b68dc2, 0x1393b311, 0xdef345c8,
  0xeac48569, 0x4ad27e0d, 0x5112ca87, 0x9196f7ce, 0x99b5dc1e, 0x1790126a, 0xa06675e6, 0x686b58ae,
  0x49e8218b, 0x4eccc696, 0x9985c383, 0x91f1e033, 0x9b61d5a8, 0x69e3776a, 0xc720350c, 0x847371ae,
  0x258334ed, 0xc87df47e, 0x4e0d7db5, 0x6b115294, 0xb89b8def, 0xa336b95e, 0x080e97cc, 0xe7021627,
  0x5051f787, 0xc90a0544, 0x836fa4a1, 0x8ada7304, 0x0f368bfa, 0x51db4559, 0x1282180b, 0xb04f38da,
  0xa605f28e, 0xc943ab81, 0x63a2242a, 0x9e403139, 0xe9e21221, 0x59abc4d8, 0xc14143f5, 0x2c4a1605,
  0x6234ab78, 0x9bf2af91, 0xa4d5f9eb, 0x51685b36, 0xf0ff62ca, 0x2c78e398, 0x48a0eda2, 0xdc55ff74,
  0x17032075, 0x27ad6967, 0xa4895d88, 0x6bfb79a2, 0x266bf3c7, 0xd69daf31, 0xe17c845c, 0xf100ee05,
  0x2719028c, 0x9e378f48, 0x4fe52d3a, 0x283cf517, 0x4b6e5a96, 0xa1621bc9, 0x50caccd8, 0x65e82133,
  0xe657e01b, 0xf3ecfcc4, 0xc8cbda7c, 0xfc3373f4, 0x8e8f1730, 0x14a79536, 0xa8bc7a64, 0x7d5e4727,
  0x484bef2c, 0x5184099a, 0x31824783, 0x54d38489, 0x136dcb6c, 0x1e51ff1b, 0x1759822b, 0x40f2e05a,
  0xb66ff4b2, 0x470dd12a, 0xe7cdeaea, 0x0050f7a0, 0x5b348645, 0x6325f371, 0x2a699899, 0x259b481d,
  0x10f1f112, 0x6a5bd11f, 0x24aae8ee, 0xe32da48f, 0x3092c380, 0x8df6ad4c, 0x36969b57, 0x17014640,
  0x795384be, 0xcb8afa29, 0x44287ace, 0x3118c2fc, 0xc86aa198, 0x9a7cfabd, 0x314c6c70, 0xa9934637,
  0x0d322a83, 0x2d2d60b4, 0x30968014, 0x5ea84fd3, 0x7fac4221, 0xd30b07ab, 0x2ed05543, 0x94a84a67,
  0xd25fdf8e, 0x5029c113, 0x3fdfbdde, 0x6d17d2a0, 0xb9b78eb8, 0xd2d4d841, 0xa7bb6a93, 0x261cbd6d,
  0x63e96575, 0x01172d7c, 0x8c1ed316, 0xb4f32e7f, 0x94a7b4a4, 0x7c82e953, 0xda5d1cec, 0xdbb88a36,
  0x49105224, 0xa0b9b1df, 0x4ce0adfd, 0xdb47b3ff, 0x930d7ed9, 0xcf280e43, 0x7d2893f6, 0xd7c86f57,
  0xd11e32ed, 0x4b0e71b1, 0xb1b32a18, 0x09d9cd24, 0x6d24dc22, 0x26f594aa, 0xce8314f1, 0x038199b0,
  0x941f20eb, 0x5023c1aa, 0x3ac1741a, 0x2b042264, 0x8e882553, 0x63634c6b, 0x1f907f1d, 0x6b320da9,
  0xeb66ad67, 0x32a444d2, 0x253ae8c6, 0x7226c582, 0x9c1d1775, 0x6ffd73b3, 0xca84dc2d, 0xb2677e67,
  0x1929710c, 0xe214507b, 0xeb5ccbed, 0xd70f3f82, 0x25fe2c79, 0xe50d7110, 0xba7e4c3d, 0x0c3bdd8f,
]);

export interface CutChunk {
  /** sha256 of the chunk's bytes, 64 lowercase hex. */
  digest: string;
  size: number;
}

/**
 * Cuts a byte stream into chunks as it is fed. `onChunk` gets each chunk's bytes (possibly in several parts, valid
 * only during the call) with its digest once the chunk is complete. The last chunk is what
 * is left at `end()`.
 */
export class Chunker {
  #len = 0;
  #hash = 0;
  #sha = createHash('sha256');
  #parts: Buffer[] = [];
  readonly #onChunk: (chunk: CutChunk, parts: readonly Buffer[]) => Promise<void> | void;
  readonly chunks: CutChunk[] = [];

  constructor(onChunk: (chunk: CutChunk, parts: readonly Buffer[]) => Promise<void> | void = () => undefined) {
    this.#onChunk = onChunk;
  }

  /** Feeds the next bytes; `buf` may be reused by the caller once the promise resolves. */
  async update(buf: Buffer): Promise<void> {
    let start = 0;
    while (start < buf.length) {
      const cut = this.#scan(buf, start);
      const end = cut < 0 ? buf.length : cut;
      const part = buf.subarray(start, end);
      this.#sha.update(part);
      // A part the chunk goes on past outlives this call: the caller may reuse `buf` for its next read.
      this.#parts.push(cut < 0 ? Buffer.from(part) : part);
      start = end;
      if (cut >= 0) await this.#emit();
    }
  }

  /** Emits the last chunk (if any bytes are left) and returns every chunk cut. */
  async end(): Promise<CutChunk[]> {
    if (this.#len > 0) await this.#emit();
    return this.chunks;
  }

  /** The index in `buf` just after the next cut point from `start`, or -1 when the chunk goes on past `buf`. Two loops,
   *  as in the paper: up to the average size with the stricter mask, then with the looser one up to the maximum (one
   *  loop choosing the mask per byte cuts at the same points, at about half the speed). */
  #scan(buf: Buffer, start: number): number {
    let len = this.#len;
    let h = this.#hash;
    const n = buf.length;
    let i = start;
    // Cut-point skipping: the first minChunkBytes of a chunk are never hashed.
    if (len < minChunkBytes) {
      const skip = Math.min(minChunkBytes - len, n - i);
      i += skip;
      len += skip;
    }
    const g = gear;
    // The chunk's length after byte i is i - base.
    const base = i - len;
    if (len < avgChunkBytes) {
      const stop = Math.min(n, base + avgChunkBytes);
      while (i < stop) {
        h = ((h << 1) + (g[buf[i] as number] as number)) | 0;
        i++;
        if ((h & maskS) === 0) return this.#cut(i, base, h);
      }
    }
    if (i - base >= avgChunkBytes) {
      const stop = Math.min(n, base + maxChunkBytes);
      while (i < stop) {
        h = ((h << 1) + (g[buf[i] as number] as number)) | 0;
        i++;
        if ((h & maskL) === 0) return this.#cut(i, base, h);
      }
      if (i - base >= maxChunkBytes) return this.#cut(i, base, h);
    }
    this.#len = i - base;
    this.#hash = h;
    return -1;
  }

  #cut(i: number, base: number, h: number): number {
    this.#len = i - base;
    this.#hash = h;
    return i;
  }

  async #emit(): Promise<void> {
    const chunk = { digest: this.#sha.digest('hex'), size: this.#len };
    const parts = this.#parts;
    this.#sha = createHash('sha256');
    this.#parts = [];
    this.#len = 0;
    this.#hash = 0;
    this.chunks.push(chunk);
    await this.#onChunk(chunk, parts);
  }
}
