// What an edit of a large file must cost: the chunks the pusher's chunker cuts from the new content that the old
// content did not have. Content-defined boundaries resynchronize after an edit within one chunk most of the time,
// but not always: with normalized chunking a chunk's cut depends on where it started, so a shifted cut can carry on
// for several chunks (`npm run bench:chunking -- --only=edits` gives the spread). A test that bounds an edit's cost
// by a fixed number of chunks fails now and then on random data; bounded by the chunks that are new, it is exact.
import { open } from 'node:fs/promises';
import { Chunker, maxStoredChunkBytes } from '../../src/changeset/index.js';

/** The chunks of the file at `path` as the pusher cuts them: digest -> size. */
export async function chunksOf(path: string): Promise<Map<string, number>> {
  const chunker = new Chunker();
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      await chunker.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return new Map((await chunker.end()).map((c) => [c.digest, c.size]));
}

export interface NewChunks {
  /** Chunks of `now` that `before` lacks. */
  count: number;
  /** Their bytes, and the most they may take stored (gzip framing on data that does not compress). */
  bytes: number;
  maxStored: number;
  sizes: number[];
}

export function newChunks(before: ReadonlyMap<string, number>, now: ReadonlyMap<string, number>): NewChunks {
  const sizes = [...now].filter(([d]) => !before.has(d)).map(([, size]) => size);
  return {
    count: sizes.length,
    bytes: sizes.reduce((a, b) => a + b, 0),
    maxStored: sizes.reduce((a, b) => a + maxStoredChunkBytes(b), 0),
    sizes,
  };
}
